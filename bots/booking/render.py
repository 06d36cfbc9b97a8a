# ruff: noqa: RUF001, RUF002  (Russian texts: Cyrillic letters and dashes are intended)
"""Pure rendering of the booking bot: dates, prices, bookings and schedules as Russian text, and
parsing of what a master types (a lunch break, a phone number). No I/O: unit-tested directly."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from switchboard.booking.v1 import booking_pb2 as pb

__all__ = [
    "MAX_CLIENT_NAME",
    "MAX_MESSAGE",
    "MAX_REASON",
    "booking_lines",
    "client_name",
    "count_by_day",
    "day_label",
    "days_between",
    "duration_minutes",
    "fit_message",
    "format_date",
    "format_hhmm",
    "format_local_start",
    "format_price",
    "instant",
    "local_day",
    "local_hhmm",
    "lunch_label",
    "parse_hhmm",
    "parse_lunch",
    "schedule_line",
    "schedule_text",
    "service_label",
    "slot_summary",
    "valid_phone",
    "zone",
]

log = logging.getLogger("switchboard.bots.booking")

Text = Callable[..., str]

#: Contract limits (booking.proto): CancelBookingRequest.reason, CreateManualBookingRequest.client_name.
MAX_REASON = 500
MAX_CLIENT_NAME = 100
#: Telegram's limit of a message's text (characters).
MAX_MESSAGE = 4096

_WEEKDAYS = ("Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс")
_CURRENCIES = {"RUB": "₽", "EUR": "€", "USD": "$"}
# The same pattern as CreateManualBookingRequest.client_phone.
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{4,22}$")
_HHMM = r"([01]?[0-9]|2[0-4])[:.]([0-5][0-9])"
_LUNCH = re.compile(rf"^\s*{_HHMM}\s*[-–—]\s*{_HHMM}\s*$")


def zone(name: str) -> ZoneInfo:
    """The shop's time zone as the server names it; UTC if unknown here (logged)."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r: showing times in UTC", name)
        return ZoneInfo("UTC")


def instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def format_date(day: date) -> str:
    """``25.11.2026``"""
    return day.strftime("%d.%m.%Y")


def day_label(day: date, *, year: bool = False) -> str:
    """``Ср 25.11`` (``Ср 25.11.2026`` with `year`)."""
    return f"{_WEEKDAYS[day.weekday()]} {day.strftime('%d.%m.%Y' if year else '%d.%m')}"


def format_local_start(local_start: str) -> str:
    """``"2026-11-25 14:00"`` (Booking.local_start) -> ``"25.11.2026 14:00"``."""
    try:
        parsed = datetime.strptime(local_start, "%Y-%m-%d %H:%M")
    except ValueError:
        return local_start
    return parsed.strftime("%d.%m.%Y %H:%M")


def local_hhmm(seconds: int, tz: ZoneInfo) -> str:
    return instant(seconds).astimezone(tz).strftime("%H:%M")


def format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_hhmm(text: str) -> int:
    """``"13:30"`` / ``"13.30"`` / ``"24:00"`` -> minutes after midnight; ValueError otherwise."""
    match = re.fullmatch(_HHMM, text.strip())
    if match is None:
        raise ValueError(f"not a time: {text!r}")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > 24 * 60:
        raise ValueError(f"not a time: {text!r}")
    return minutes


def parse_lunch(text: str) -> tuple[int, int] | None:
    """``"13:30-14:15"`` -> (810, 855); None when it is not a range with start < end."""
    match = _LUNCH.match(text)
    if match is None:
        return None
    start = int(match.group(1)) * 60 + int(match.group(2))
    end = int(match.group(3)) * 60 + int(match.group(4))
    if start >= 24 * 60 or end > 24 * 60 or start >= end:
        return None
    return start, end


def valid_phone(text: str) -> bool:
    return bool(_PHONE.match(text.strip()))


def format_price(minor_units: int, currency_code: str) -> str:
    """``150000, "RUB"`` -> ``"1 500 ₽"``; kopecks shown only when there are some."""
    whole, cents = divmod(abs(minor_units), 100)
    number = f"{whole:,}".replace(",", " ")
    if cents:
        number += f",{cents:02d}"
    if minor_units < 0:
        number = "-" + number
    return f"{number} {_CURRENCIES.get(currency_code, currency_code)}".strip()


def service_label(service: pb.ServiceOption) -> str:
    """``Стрижка · 60 мин · 1 500 ₽``"""
    price = format_price(service.price_minor_units, service.currency_code)
    return f"{service.name} · {service.duration_minutes} мин · {price}"


def client_name(booking: pb.Booking) -> str:
    """The client's name, "—" when unknown (a user the bot created has no name yet)."""
    return booking.client_name.strip() or "—"


def duration_minutes(booking: pb.Booking) -> int:
    return max(0, (booking.end_time.seconds - booking.start_time.seconds) // 60)


def lunch_label(master: pb.Master) -> str | None:
    """``13:00–14:00``, or None without a lunch break."""
    if not master.HasField("lunch") or not master.lunch.start_time:
        return None
    return f"{master.lunch.start_time}–{master.lunch.end_time}"


def booking_lines(t: Text, booking: pb.Booking, *, for_master: bool = False) -> str:
    """A booking's details, one per line (the client's or the master's view)."""
    lines = []
    if for_master:
        lines.append(t("booking.client", client=client_name(booking)))
        if booking.client_phone:
            lines.append(t("booking.phone", phone=booking.client_phone))
    else:
        lines.append(t("booking.master", master=booking.master_display_name))
    lines.append(
        t("booking.service", service=booking.service_name, duration=duration_minutes(booking))
    )
    lines.append(t("booking.when", when=format_local_start(booking.local_start)))
    lines.append(
        t("booking.price", price=format_price(booking.price_minor_units, booking.currency_code))
    )
    if booking.status == pb.BOOKING_STATUS_CANCELLED:
        by = {
            pb.BOOKING_ACTOR_CLIENT: t("booking.cancelled_by_client"),
            pb.BOOKING_ACTOR_MASTER: t("booking.cancelled_by_master"),
        }.get(booking.cancelled_by, "")
        reason = (
            t("booking.cancel_reason", reason=booking.cancel_reason)
            if booking.cancel_reason
            else ""
        )
        lines.append(t("booking.cancelled", by=by, reason=reason))
    return "\n".join(lines)


def slot_summary(
    t: Text,
    *,
    master: str | None,
    service: pb.ServiceOption,
    when: str,
    client: str | None = None,
    phone: str | None = None,
) -> str:
    """What is about to be booked (the confirmation screens)."""
    lines = []
    if client is not None:
        lines.append(t("booking.client", client=client))
    if phone is not None:
        lines.append(t("booking.phone", phone=phone))
    if master is not None:
        lines.append(t("booking.master", master=master))
    lines.append(t("booking.service", service=service.name, duration=service.duration_minutes))
    lines.append(t("booking.when", when=when))
    lines.append(
        t("booking.price", price=format_price(service.price_minor_units, service.currency_code))
    )
    return "\n".join(lines)


def schedule_line(t: Text, booking: pb.Booking, tz: ZoneInfo) -> str:
    """``14:00–15:00 Иван · Стрижка`` (the phone for manual bookings; a cancelled mark)."""
    start = local_hhmm(booking.start_time.seconds, tz)
    end = local_hhmm(booking.end_time.seconds, tz)
    client = client_name(booking)
    if booking.client_phone:
        line = t(
            "schedule.line_phone",
            start=start,
            end=end,
            client=client,
            phone=booking.client_phone,
            service=booking.service_name,
        )
    else:
        line = t(
            "schedule.line",
            start=start,
            end=end,
            client=client,
            service=booking.service_name,
        )
    if booking.status == pb.BOOKING_STATUS_CANCELLED:
        line += t("schedule.cancelled_mark")
    return line


def local_day(booking: pb.Booking, tz: ZoneInfo) -> date:
    return instant(booking.start_time.seconds).astimezone(tz).date()


def schedule_text(
    t: Text, title: str, bookings: Sequence[pb.Booking], tz: ZoneInfo, *, by_day: bool = False
) -> str:
    """A title and one line per booking (grouped under day headings with `by_day`)."""
    if not bookings:
        return f"{title}\n{t('schedule.empty')}"
    lines = [title]
    current: date | None = None
    for booking in bookings:
        if by_day:
            day = local_day(booking, tz)
            if day != current:
                current = day
                lines.append("")
                lines.append(day_label(day))
        lines.append(schedule_line(t, booking, tz))
    return "\n".join(lines)


def days_between(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]


def count_by_day(bookings: Iterable[pb.Booking], tz: ZoneInfo) -> dict[date, int]:
    counts: dict[date, int] = {}
    for booking in bookings:
        day = local_day(booking, tz)
        counts[day] = counts.get(day, 0) + 1
    return counts


def fit_message(text: str, *, more: str = "…", limit: int = MAX_MESSAGE) -> str:
    """`text` cut at a line boundary to fit one Telegram message, `more` appended when cut."""
    if len(text) <= limit:
        return text
    room = limit - len(more) - 1
    cut = text.rfind("\n", 0, room)
    return text[: cut if cut > 0 else room] + "\n" + more
