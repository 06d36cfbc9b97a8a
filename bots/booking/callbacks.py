"""Inline-button callback data of the booking bot, and its compact value codecs.

Telegram gives a button at most 64 bytes of callback data, so every value is packed small:
UUIDs as 22 base64url characters, local dates as ``YYYYMMDD``, instants as whole minutes since
the Unix epoch (UTC). The client's flow carries its whole state in the buttons (master,
service, slot), so it survives a bot restart and any number of bot replicas; only the master's
text inputs (a cancel reason, a manual booking's name and phone) use the per-chat FSM state.

Malformed or foreign data never reaches a handler: :meth:`CallbackData.unpack` raises (the
fields are validated), the filter does not match, and the catch-all answers "stale button".
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

__all__ = [
    "BookingCancel",
    "ClientConfirm",
    "ClientDate",
    "ClientMaster",
    "ClientService",
    "ClientSlot",
    "DayOffToggle",
    "LunchChoice",
    "ManualConfirm",
    "ManualDate",
    "ManualService",
    "ManualSlot",
    "MasterCancel",
    "MasterDay",
    "Menu",
    "booking_request_id",
    "day_code",
    "expand_uuid",
    "fits_service_id",
    "from_minutes",
    "new_nonce",
    "parse_day",
    "short_uuid",
    "to_minutes",
]

_SHORT_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
ShortId = Annotated[str, Field(pattern=_SHORT_ID.pattern)]
_SERVICE_ID = r"^[A-Za-z0-9_.-]{1,20}$"
ServiceId = Annotated[str, Field(pattern=_SERVICE_ID)]
DayCode = Annotated[str, Field(pattern=r"^[0-9]{8}$")]
Minutes = Annotated[int, Field(ge=0, le=10**9)]
Nonce = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8}$")]
MinuteOfDay = Annotated[int, Field(ge=0, le=1440)]

# Request ids of bookings made through the bot: uuid5(namespace, what the button says).
_REQUEST_NAMESPACE = uuid.UUID("6f1c7f0e-5b9a-4f1e-9a55-2f0d8f3b7c21")


def short_uuid(value: str | uuid.UUID) -> str:
    """A UUID as 22 base64url characters (no padding)."""
    raw = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    return base64.urlsafe_b64encode(raw.bytes).decode("ascii").rstrip("=")


def expand_uuid(short: str) -> str:
    """The canonical UUID string of :func:`short_uuid`'s output; ValueError otherwise."""
    if not _SHORT_ID.match(short):
        raise ValueError("a short UUID has 22 base64url characters")
    try:
        raw = base64.urlsafe_b64decode(short + "==")
        return str(uuid.UUID(bytes=raw))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a base64url UUID") from exc


def fits_service_id(service_id: str) -> bool:
    """Whether a service id fits in the buttons (the shop's ids are short codes like
    "haircut_beard"; a longer one is not offered rather than overflowing 64 bytes)."""
    return re.match(_SERVICE_ID, service_id) is not None


def day_code(day: date) -> str:
    return day.strftime("%Y%m%d")


def parse_day(code: str) -> date:
    """``"20261125"`` -> date; ValueError on anything else."""
    if len(code) != 8 or not code.isdigit():
        raise ValueError(f"not a YYYYMMDD date: {code!r}")
    return date(int(code[:4]), int(code[4:6]), int(code[6:]))


def to_minutes(instant: datetime) -> int:
    """An aware instant as whole minutes since the Unix epoch (slots start on minutes)."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime")
    return int(instant.timestamp()) // 60


def from_minutes(minutes: int) -> datetime:
    return datetime.fromtimestamp(minutes * 60, tz=UTC)


def new_nonce() -> str:
    """8 random base64url characters: one per confirmation screen."""
    return secrets.token_urlsafe(6)


def booking_request_id(telegram_user_id: int, *parts: object) -> str:
    """The CreateBooking request_id of one confirmation screen: the same button pressed twice
    (a double tap, a retry) gives the same id, so the server books once."""
    name = ":".join([str(telegram_user_id), *(str(p) for p in parts)])
    return str(uuid.uuid5(_REQUEST_NAMESPACE, name))


# -- the main menu (inline shortcuts) -------------------------------------------------------------


class Menu(CallbackData, prefix="mn"):
    """``action``: "book" (start booking), "my" (my booking), "manual" (a master's manual
    booking), "close" (abandon the screen)."""

    action: Annotated[str, Field(pattern=r"^(book|my|manual|close)$")]


# -- client: master -> service -> date -> slot -> confirm ------------------------------------------


class ClientMaster(CallbackData, prefix="cm"):
    m: ShortId


class ClientService(CallbackData, prefix="cs"):
    m: ShortId
    s: ServiceId


class ClientDate(CallbackData, prefix="cd"):
    m: ShortId
    s: ServiceId
    d: DayCode


class ClientSlot(CallbackData, prefix="ct"):
    m: ShortId
    s: ServiceId
    t: Minutes


class ClientConfirm(CallbackData, prefix="ck"):
    m: ShortId
    s: ServiceId
    t: Minutes
    n: Nonce


class BookingCancel(CallbackData, prefix="cx"):
    """The client cancels their booking: ``sure`` 0 asks, 1 cancels."""

    b: ShortId
    sure: Annotated[int, Field(ge=0, le=1)]


# -- master ---------------------------------------------------------------------------------------


class MasterDay(CallbackData, prefix="md"):
    """The master's schedule of one local date."""

    d: DayCode


class MasterCancel(CallbackData, prefix="mx"):
    """The master starts cancelling a booking (the bot then asks for the reason)."""

    b: ShortId


class DayOffToggle(CallbackData, prefix="do"):
    """``off`` 1 makes the date a day off, 0 a working day again."""

    d: DayCode
    off: Annotated[int, Field(ge=0, le=1)]


class LunchChoice(CallbackData, prefix="lu"):
    """A lunch break ``start``..``end`` (minutes of the day); ``start == end == 0`` clears it;
    ``start == end == 1`` asks the master to type one."""

    start: MinuteOfDay
    end: MinuteOfDay


class ManualService(CallbackData, prefix="ms"):
    s: ServiceId


class ManualDate(CallbackData, prefix="mt"):
    s: ServiceId
    d: DayCode


class ManualSlot(CallbackData, prefix="mm"):
    s: ServiceId
    t: Minutes


class ManualConfirm(CallbackData, prefix="mk"):
    """Confirms the manual booking prepared in the FSM state; ``n`` must match its nonce."""

    n: Nonce
