# ruff: noqa: RUF001, RUF002  (Russian texts: Cyrillic letters and dashes are intended)
"""Keyboards of the booking bot: the persistent reply menu and the inline screens."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date
from zoneinfo import ZoneInfo

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from switchboard.booking.v1 import booking_pb2 as pb

from bots.booking.callbacks import (
    BookingCancel,
    DayOffToggle,
    LunchChoice,
    MasterCancel,
    MasterDay,
    Menu,
    day_code,
    short_uuid,
)
from bots.booking.messages import BUTTONS
from bots.booking.render import day_label, format_hhmm, local_hhmm, service_label

__all__ = [
    "LUNCH_CLEAR",
    "LUNCH_PRESETS",
    "LUNCH_TYPE",
    "button",
    "cancel_ask_keyboard",
    "choices",
    "confirm_keyboard",
    "dates_keyboard",
    "day_schedule_keyboard",
    "days_off_keyboard",
    "lunch_keyboard",
    "main_menu",
    "masters_keyboard",
    "my_booking_keyboard",
    "services_keyboard",
    "slots_keyboard",
    "week_keyboard",
]

Text = Callable[..., str]

#: Lunch breaks offered as buttons (minutes of the day).
LUNCH_PRESETS: tuple[tuple[int, int], ...] = (
    (12 * 60, 13 * 60),
    (13 * 60, 14 * 60),
    (14 * 60, 15 * 60),
    (15 * 60, 16 * 60),
)
LUNCH_CLEAR = LunchChoice(start=0, end=0)
LUNCH_TYPE = LunchChoice(start=1, end=1)


def main_menu(is_master: bool) -> ReplyKeyboardMarkup:
    """The persistent reply keyboard: the client's actions, plus the master's for a master."""
    rows: list[list[str]] = []
    if is_master:
        rows += [
            [BUTTONS["today"], BUTTONS["week"]],
            [BUTTONS["day_off"], BUTTONS["lunch"]],
            [BUTTONS["manual"]],
        ]
    rows += [[BUTTONS["book"], BUTTONS["my"]], [BUTTONS["help"]]]
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=label) for label in row] for row in rows],
        resize_keyboard=True,
        is_persistent=True,
    )


def button(text: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data)


def choices(
    items: Iterable[tuple[str, str]], *, per_row: int = 1, footer: Sequence[tuple[str, str]] = ()
) -> InlineKeyboardMarkup:
    """(label, callback data) buttons, `per_row` per row, then one footer row."""
    rows: list[list[InlineKeyboardButton]] = []
    for label, data in items:
        if not rows or len(rows[-1]) >= per_row:
            rows.append([])
        rows[-1].append(button(label, data))
    if footer:
        rows.append([button(label, data) for label, data in footer])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def masters_keyboard(
    masters: Sequence[pb.Master], make: Callable[[str], str]
) -> InlineKeyboardMarkup:
    return choices((m.display_name, make(short_uuid(m.id))) for m in masters)


def services_keyboard(
    services: Sequence[pb.ServiceOption], make: Callable[[str], str], back: tuple[str, str]
) -> InlineKeyboardMarkup:
    return choices(((service_label(s), make(s.id)) for s in services), footer=[back])


def dates_keyboard(
    days: Sequence[date], make: Callable[[date], str], back: tuple[str, str]
) -> InlineKeyboardMarkup:
    return choices(((day_label(d), make(d)) for d in days), per_row=3, footer=[back])


def slots_keyboard(
    slots: Sequence[pb.Slot], make: Callable[[pb.Slot], str], back: tuple[str, str]
) -> InlineKeyboardMarkup:
    return choices(((s.local_time, make(s)) for s in slots), per_row=4, footer=[back])


def confirm_keyboard(
    t: Text, confirm: str, back: str, *, back_label: str | None = None
) -> InlineKeyboardMarkup:
    return choices(
        [(t("button.confirm"), confirm)], footer=[(back_label or t("button.back"), back)]
    )


def my_booking_keyboard(t: Text, booking: pb.Booking) -> InlineKeyboardMarkup:
    data = BookingCancel(b=short_uuid(booking.id), sure=0).pack()
    return choices([(t("button.cancel_booking"), data)])


def cancel_ask_keyboard(t: Text, booking: pb.Booking) -> InlineKeyboardMarkup:
    yes = BookingCancel(b=short_uuid(booking.id), sure=1).pack()
    return choices(
        [(t("button.yes_cancel"), yes), (t("button.no_keep"), Menu(action="my").pack())],
        per_row=2,
    )


def day_schedule_keyboard(
    t: Text,
    bookings: Sequence[pb.Booking],
    day: date,
    tz: ZoneInfo,
    *,
    previous: date,
    following: date,
    now_seconds: int,
) -> InlineKeyboardMarkup:
    """A cancel button per active, not yet started booking; then previous/next day."""
    items = [
        (
            t(
                "schedule.cancel_button",
                start=local_hhmm(b.start_time.seconds, tz),
                client=b.client_name.strip(),
            ).strip(),
            MasterCancel(b=short_uuid(b.id)).pack(),
        )
        for b in bookings
        if b.status == pb.BOOKING_STATUS_ACTIVE and b.start_time.seconds > now_seconds
    ]
    nav = [
        (t("button.prev_day", date=day_label(previous)), MasterDay(d=day_code(previous)).pack()),
        (t("button.next_day", date=day_label(following)), MasterDay(d=day_code(following)).pack()),
    ]
    return choices(items, footer=nav)


def week_keyboard(days: Sequence[date], counts: Mapping[date, int]) -> InlineKeyboardMarkup:
    """One button per day of the week ("Ср 25.11 (2)"), opening that day's schedule."""
    return choices(
        ((f"{day_label(d)} ({counts.get(d, 0)})", MasterDay(d=day_code(d)).pack()) for d in days),
        per_row=2,
    )


def days_off_keyboard(days: Sequence[date], off: Collection[date]) -> InlineKeyboardMarkup:
    """Working days toggle to days off and back (days off marked 🚫)."""
    return choices(
        (
            (f"🚫 {day_label(d)}", DayOffToggle(d=day_code(d), off=0).pack())
            if d in off
            else (day_label(d), DayOffToggle(d=day_code(d), off=1).pack())
            for d in days
        ),
        per_row=3,
    )


def lunch_keyboard(t: Text) -> InlineKeyboardMarkup:
    presets = [
        (f"{format_hhmm(a)}–{format_hhmm(b)}", LunchChoice(start=a, end=b).pack())
        for a, b in LUNCH_PRESETS
    ]
    return choices(
        presets,
        per_row=2,
        footer=[
            (t("button.lunch_clear"), LUNCH_CLEAR.pack()),
            (t("button.lunch_other"), LUNCH_TYPE.pack()),
        ],
    )
