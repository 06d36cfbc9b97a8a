# ruff: noqa: RUF001  (Russian texts: the en dash is intended)
"""The booking bot's handlers: the client's flow and the master's tools.

Client: «Записаться» -> master -> service -> date (the next 14 days with free slots) -> free
slot -> confirm (CreateBooking with a request_id fixed per confirmation screen); «Моя запись»
-> the active booking, cancel it. The client's screens carry their whole state in the buttons.

Master (GetBookingProfile reports a master profile): «Сегодня» / «Неделя» (ListBookings, view
MASTER, every page), cancel a booking (the bot asks for the reason as a text message),
«Выходной» (SetDayOff / DeleteDayOff), «Обед» (SetLunchBreak), «Ручная запись» (service -> date
-> slot -> name -> phone -> confirm). A client asking for a master's tool is refused politely;
the server refuses MasterService calls to non-masters too (PERMISSION_DENIED).

Every call acts as the Telegram user (the runtime's ``platform``); server refusals raised here
become short Russian messages through the runtime (:data:`bots.booking.messages.REASONS`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc.aio
from aiogram import BaseMiddleware, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    TelegramObject,
)
from google.protobuf import timestamp_pb2
from switchboard.booking.v1 import booking_pb2 as pb
from switchboard.booking.v1 import booking_pb2_grpc as pb_grpc

from bots.booking.callbacks import (
    BookingCancel,
    ClientConfirm,
    ClientDate,
    ClientMaster,
    ClientService,
    ClientSlot,
    DayOffToggle,
    LunchChoice,
    ManualConfirm,
    ManualDate,
    ManualService,
    ManualSlot,
    MasterCancel,
    MasterDay,
    Menu,
    booking_request_id,
    day_code,
    expand_uuid,
    fits_service_id,
    new_nonce,
    parse_day,
)
from bots.booking.keyboards import (
    LUNCH_CLEAR,
    LUNCH_TYPE,
    cancel_ask_keyboard,
    choices,
    confirm_keyboard,
    dates_keyboard,
    day_schedule_keyboard,
    days_off_keyboard,
    lunch_keyboard,
    main_menu,
    masters_keyboard,
    my_booking_keyboard,
    services_keyboard,
    slots_keyboard,
    week_keyboard,
)
from bots.booking.messages import BUTTONS, REASONS
from bots.booking.render import (
    MAX_CLIENT_NAME,
    MAX_REASON,
    booking_lines,
    count_by_day,
    day_label,
    days_between,
    fit_message,
    format_date,
    format_hhmm,
    lunch_label,
    parse_lunch,
    schedule_text,
    slot_summary,
    valid_phone,
    zone,
)
from bots.runtime.middlewares import Texts
from bots.runtime.platform import Platform
from client import error_details

__all__ = ["BOOKING_DAYS", "BOT_NAME", "MasterInput", "router"]

log = logging.getLogger("switchboard.bots.booking")

BOT_NAME = "booking"
#: How many days ahead the client (and the master's manual booking) may pick a date.
BOOKING_DAYS = 14
#: Days the master's «Неделя» shows, starting today.
WEEK_DAYS = 7
_PAGE_SIZE = 100
_MAX_PAGES = 20
#: Refusals after which the client is shown the dates again (the slot went away meanwhile).
_SLOT_REASONS = frozenset({"SLOT_TAKEN", "SLOT_UNAVAILABLE", "SLOT_IN_PAST"})

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | None


class MasterInput(StatesGroup):
    """What the bot waits for a master to type."""

    cancel_reason = State()
    lunch = State()
    manual_name = State()
    manual_phone = State()
    manual_confirm = State()


class _RefusalMiddleware(BaseMiddleware):
    """A refusal by the bot itself (:class:`_Refused`) answered like a server refusal."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        except _Refused as refused:
            texts = data.get("t")
            if isinstance(texts, Texts) and isinstance(event, Message | CallbackQuery):
                await _refuse(event, texts, refused.key)
            return None


def router() -> Router:
    r = Router(name=BOT_NAME)
    r.message.middleware(_RefusalMiddleware())
    r.callback_query.middleware(_RefusalMiddleware())
    # Commands and menu buttons first: they work in any state (and abandon a pending input).
    menu: list[tuple[Callable[..., Any], str, str]] = [
        (start, "start", ""),
        (help_, "help", BUTTONS["help"]),
        (book, "book", BUTTONS["book"]),
        (my_booking, "my", BUTTONS["my"]),
        (today, "today", BUTTONS["today"]),
        (week, "week", BUTTONS["week"]),
        (day_off, "dayoff", BUTTONS["day_off"]),
        (lunch, "lunch", BUTTONS["lunch"]),
        (manual, "manual", BUTTONS["manual"]),
    ]
    for handler, command, label in menu:
        if command == "start":
            r.message.register(handler, CommandStart())
        else:
            r.message.register(handler, Command(command))
        if label:
            r.message.register(handler, F.text == label)
    # What a master types when asked.
    r.message.register(cancel_reason, MasterInput.cancel_reason, F.text)
    r.message.register(lunch_typed, MasterInput.lunch, F.text)
    r.message.register(manual_name, MasterInput.manual_name, F.text)
    r.message.register(manual_phone, MasterInput.manual_phone, F.text)
    r.message.register(unknown)
    # Inline buttons.
    r.callback_query.register(on_menu, Menu.filter())
    r.callback_query.register(on_client_master, ClientMaster.filter())
    r.callback_query.register(on_client_service, ClientService.filter())
    r.callback_query.register(on_client_date, ClientDate.filter())
    r.callback_query.register(on_client_slot, ClientSlot.filter())
    r.callback_query.register(on_client_confirm, ClientConfirm.filter())
    r.callback_query.register(on_booking_cancel, BookingCancel.filter())
    r.callback_query.register(on_master_day, MasterDay.filter())
    r.callback_query.register(on_master_cancel, MasterCancel.filter())
    r.callback_query.register(on_day_off, DayOffToggle.filter())
    r.callback_query.register(on_lunch, LunchChoice.filter())
    r.callback_query.register(on_manual_service, ManualService.filter())
    r.callback_query.register(on_manual_date, ManualDate.filter())
    r.callback_query.register(on_manual_slot, ManualSlot.filter())
    r.callback_query.register(on_manual_confirm, ManualConfirm.filter())
    r.callback_query.register(stale)
    return r


# -- server access --------------------------------------------------------------------------------


class Stubs:
    """The booking services, acting as the update's user (over the runtime's shared channel)."""

    def __init__(self, platform: Platform) -> None:
        self.booking = pb_grpc.BookingServiceStub(platform.channel)
        self.master = pb_grpc.MasterServiceStub(platform.channel)

    async def profile(self) -> pb.GetBookingProfileResponse:
        return await self.booking.GetBookingProfile(pb.GetBookingProfileRequest())

    async def services(self) -> list[pb.ServiceOption]:
        listed = await self.booking.ListServices(pb.ListServicesRequest(page_size=200))
        usable = []
        for service in listed.services:
            if fits_service_id(service.id):
                usable.append(service)
            else:
                log.warning("service id %r does not fit in a button: not offered", service.id)
        return usable

    async def service(self, service_id: str) -> pb.ServiceOption:
        for service in await self.services():
            if service.id == service_id:
                return service
        raise _Refused("reason.service_not_found")

    async def master_name(self, master_id: str) -> str:
        got = await self.booking.GetMaster(pb.GetMasterRequest(master_id=master_id))
        return got.master.display_name

    async def free_days(self, master_id: str, service_id: str) -> list[date]:
        """Local dates of the next BOOKING_DAYS days (today included) with a free slot."""
        utc_today = datetime.now(UTC).date()
        # The shop's "today" is within a day of UTC's; its time zone comes with the answer.
        got = await self.booking.GetAvailability(
            pb.GetAvailabilityRequest(
                master_id=master_id,
                start_date=(utc_today - timedelta(days=1)).isoformat(),
                end_date=(utc_today + timedelta(days=BOOKING_DAYS)).isoformat(),
                service_id=service_id,
            )
        )
        today = datetime.now(zone(got.time_zone)).date()
        last = today + timedelta(days=BOOKING_DAYS - 1)
        days = []
        for day in got.days:
            parsed = _iso_date(day.date)
            if day.slots and parsed is not None and today <= parsed <= last:
                days.append(parsed)
        return days

    async def day_slots(self, master_id: str, service_id: str, day: date) -> list[pb.Slot]:
        got = await self.booking.GetAvailability(
            pb.GetAvailabilityRequest(
                master_id=master_id, start_date=day.isoformat(), service_id=service_id
            )
        )
        return [slot for d in got.days for slot in d.slots]

    async def find_slot(
        self, master_id: str, service_id: str, minutes: int
    ) -> tuple[date, pb.Slot] | None:
        """The free slot starting at `minutes` (and its local date), if it is still free."""
        utc_day = datetime.fromtimestamp(minutes * 60, tz=UTC).date()
        got = await self.booking.GetAvailability(
            pb.GetAvailabilityRequest(
                master_id=master_id,
                start_date=(utc_day - timedelta(days=1)).isoformat(),
                end_date=(utc_day + timedelta(days=1)).isoformat(),
                service_id=service_id,
            )
        )
        for day in got.days:
            for slot in day.slots:
                if slot.start_time.seconds // 60 == minutes:
                    parsed = _iso_date(day.date)
                    if parsed is not None:
                        return parsed, slot
        return None

    async def bookings(
        self, view: pb.BookingView.ValueType, first: date, last: date
    ) -> list[pb.Booking]:
        """Every booking of the range (all pages)."""
        found: list[pb.Booking] = []
        token = ""
        for _ in range(_MAX_PAGES):
            page = await self.booking.ListBookings(
                pb.ListBookingsRequest(
                    view=view,
                    start_date=first.isoformat(),
                    end_date=last.isoformat(),
                    page_size=_PAGE_SIZE,
                    page_token=token,
                )
            )
            found.extend(page.bookings)
            token = page.next_page_token
            if not token:
                break
        return found

    async def days_off(self, first: date) -> set[date]:
        found: set[date] = set()
        token = ""
        for _ in range(_MAX_PAGES):
            page = await self.master.ListDaysOff(
                pb.ListDaysOffRequest(start_date=first.isoformat(), page_size=200, page_token=token)
            )
            found.update(d for d in (_iso_date(x.date) for x in page.days_off) if d is not None)
            token = page.next_page_token
            if not token:
                break
        return found


class _Refused(Exception):
    """Refused by the bot itself (a message key), like a server refusal."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _iso_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _reason(exc: grpc.aio.AioRpcError) -> str:
    return error_details(exc).reason


def _timestamp(minutes: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=minutes * 60)


# -- answering --------------------------------------------------------------------------------------


async def _show(
    query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    """Replaces the pressed screen (or sends a new message when it cannot be edited)."""
    message = query.message
    if isinstance(message, Message):
        try:
            await message.edit_text(fit_message(text), reply_markup=markup)
            return
        except TelegramBadRequest as exc:
            if "not modified" in str(exc).lower():  # the same button pressed twice
                return
            log.info("could not edit a message, sending a new one: %s", exc)
    await _send(query, text, markup)


async def _send(query: CallbackQuery, text: str, markup: Markup = None) -> None:
    if isinstance(query.message, Message):
        await query.message.answer(fit_message(text), reply_markup=markup)
    elif query.bot is not None:
        await query.bot.send_message(query.from_user.id, fit_message(text), reply_markup=markup)


async def _answer(message: Message, screen: tuple[str, Markup]) -> None:
    """Answers a command with a screen (its text and keyboard)."""
    text, markup = screen
    await message.answer(text, reply_markup=markup)


async def _alert(query: CallbackQuery, text: str) -> None:
    await query.answer(text, show_alert=True)


async def _refuse(event: Message | CallbackQuery, t: Texts, key: str) -> None:
    if isinstance(event, Message):
        await event.answer(t(key))
    else:
        await _alert(event, t(key))


async def _master(
    stubs: Stubs, t: Texts, event: Message | CallbackQuery
) -> pb.GetBookingProfileResponse | None:
    """The caller's profile when they are a master; otherwise a polite refusal and None."""
    profile = await stubs.profile()
    if profile.HasField("master"):
        return profile
    if isinstance(event, Message):
        await event.answer(t("master_only"), reply_markup=main_menu(False))
    else:
        await _alert(event, t("master_only"))
    return None


# -- start, help, fallbacks ------------------------------------------------------------------------


async def start(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    profile = await Stubs(platform).profile()
    if profile.HasField("master"):
        text = t("start.master", name=profile.master.display_name)
    else:
        text = t("start.client")
    await message.answer(text, reply_markup=main_menu(profile.HasField("master")))


async def help_(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    profile = await Stubs(platform).profile()
    is_master = profile.HasField("master")
    text = t("help.client") + ("\n\n" + t("help.master") if is_master else "")
    await message.answer(text, reply_markup=main_menu(is_master))


async def unknown(message: Message, t: Texts) -> None:
    await message.answer(t("unknown"))


async def stale(query: CallbackQuery, t: Texts) -> None:
    await _alert(query, t("stale"))


async def _day(query: CallbackQuery, t: Texts, code: str) -> date | None:
    """The local date of a button's day code; None (the button refused as stale) when it is
    malformed."""
    try:
        return parse_day(code)
    except ValueError:
        await stale(query, t)
        return None


async def _master_day(
    query: CallbackQuery, platform: Platform, t: Texts, code: str
) -> tuple[Stubs, pb.GetBookingProfileResponse, date] | None:
    """A master's button about one date: the stubs, the master's profile and the date; None
    when the day code is stale or the caller is no master (they have been told)."""
    day = await _day(query, t, code)
    if day is None:
        return None
    stubs = Stubs(platform)
    profile = await _master(stubs, t, query)
    if profile is None:
        return None
    return stubs, profile, day


async def on_menu(
    query: CallbackQuery, callback_data: Menu, platform: Platform, t: Texts, state: FSMContext
) -> None:
    stubs = Stubs(platform)
    if callback_data.action == "book":
        await state.clear()
        await _show(query, *await _masters_screen(stubs, t))
    elif callback_data.action == "my":
        await _show(query, *await _my_screen(stubs, t))
    elif callback_data.action == "manual":
        await state.clear()
        if await _master(stubs, t, query) is None:
            return
        await _show(query, *await _manual_services_screen(stubs, t))
    else:
        await state.clear()
        await _show(query, t("book.aborted"))
    await query.answer()


# -- client: booking ---------------------------------------------------------------------------------


async def book(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    await _answer(message, await _masters_screen(Stubs(platform), t))


async def _masters_screen(stubs: Stubs, t: Texts) -> tuple[str, InlineKeyboardMarkup | None]:
    profile = await stubs.profile()
    if profile.HasField("active_booking"):
        booking = profile.active_booking
        return t("book.already", booking=booking_lines(t, booking)), my_booking_keyboard(t, booking)
    listed = await stubs.booking.ListMasters(pb.ListMastersRequest(page_size=200))
    if not listed.masters:
        return t("book.no_masters"), None
    return t("book.choose_master"), masters_keyboard(
        listed.masters, lambda m: ClientMaster(m=m).pack()
    )


async def on_client_master(
    query: CallbackQuery, callback_data: ClientMaster, platform: Platform, t: Texts
) -> None:
    stubs = Stubs(platform)
    m = callback_data.m
    name = await stubs.master_name(expand_uuid(m))
    services = await stubs.services()
    back = (t("button.back"), Menu(action="book").pack())
    if not services:
        await _show(query, t("book.no_services"), choices([], footer=[back]))
    else:
        await _show(
            query,
            t("book.choose_service", master=name),
            services_keyboard(services, lambda s: ClientService(m=m, s=s).pack(), back),
        )
    await query.answer()


async def _dates_screen(
    stubs: Stubs, t: Texts, m: str, service_id: str
) -> tuple[str, InlineKeyboardMarkup]:
    master_id = expand_uuid(m)
    name = await stubs.master_name(master_id)
    service = await stubs.service(service_id)
    days = await stubs.free_days(master_id, service_id)
    back = (t("button.back"), ClientMaster(m=m).pack())
    if not days:
        return t("book.no_dates", master=name, days=BOOKING_DAYS), choices([], footer=[back])
    return (
        t("book.choose_date", master=name, service=service.name),
        dates_keyboard(days, lambda d: ClientDate(m=m, s=service_id, d=day_code(d)).pack(), back),
    )


async def on_client_service(
    query: CallbackQuery, callback_data: ClientService, platform: Platform, t: Texts
) -> None:
    await _show(query, *await _dates_screen(Stubs(platform), t, callback_data.m, callback_data.s))
    await query.answer()


async def on_client_date(
    query: CallbackQuery, callback_data: ClientDate, platform: Platform, t: Texts
) -> None:
    m, s = callback_data.m, callback_data.s
    day = await _day(query, t, callback_data.d)
    if day is None:
        return
    stubs = Stubs(platform)
    master_id = expand_uuid(m)
    slots = await stubs.day_slots(master_id, s, day)
    back = (t("button.back"), ClientService(m=m, s=s).pack())
    if not slots:
        await _show(query, t("book.no_slots", date=day_label(day)), choices([], footer=[back]))
    else:
        name = await stubs.master_name(master_id)
        service = await stubs.service(s)
        await _show(
            query,
            t("book.choose_slot", master=name, service=service.name, date=day_label(day)),
            slots_keyboard(
                slots,
                lambda slot: ClientSlot(m=m, s=s, t=slot.start_time.seconds // 60).pack(),
                back,
            ),
        )
    await query.answer()


async def on_client_slot(
    query: CallbackQuery, callback_data: ClientSlot, platform: Platform, t: Texts
) -> None:
    m, s, minutes = callback_data.m, callback_data.s, callback_data.t
    stubs = Stubs(platform)
    master_id = expand_uuid(m)
    found = await stubs.find_slot(master_id, s, minutes)
    if found is None:
        await _show(query, *await _dates_screen(stubs, t, m, s))
        await _alert(query, t("book.slot_gone"))
        return
    day, slot = found
    name = await stubs.master_name(master_id)
    service = await stubs.service(s)
    summary = slot_summary(
        t, master=name, service=service, when=f"{format_date(day)} {slot.local_time}"
    )
    confirm = ClientConfirm(m=m, s=s, t=minutes, n=new_nonce()).pack()
    back = ClientDate(m=m, s=s, d=day_code(day)).pack()
    await _show(query, t("book.confirm", booking=summary), confirm_keyboard(t, confirm, back))
    await query.answer()


async def on_client_confirm(
    query: CallbackQuery, callback_data: ClientConfirm, platform: Platform, t: Texts
) -> None:
    cb = callback_data
    stubs = Stubs(platform)
    # Fixed per confirmation screen: a double tap (or a retry) books once.
    request_id = booking_request_id(query.from_user.id, cb.m, cb.s, cb.t, cb.n)
    try:
        created = await stubs.booking.CreateBooking(
            pb.CreateBookingRequest(
                master_id=expand_uuid(cb.m),
                service_id=cb.s,
                start_time=_timestamp(cb.t),
                request_id=request_id,
            )
        )
    except grpc.aio.AioRpcError as exc:
        reason = _reason(exc)
        if reason not in _SLOT_REASONS:
            raise
        await _show(query, *await _dates_screen(stubs, t, cb.m, cb.s))
        await _alert(query, t(REASONS[reason]))
        return
    await _show(query, t("book.done", booking=booking_lines(t, created.booking)))
    await query.answer()


# -- client: my booking ------------------------------------------------------------------------------


async def my_booking(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    await _answer(message, await _my_screen(Stubs(platform), t))


async def _my_screen(stubs: Stubs, t: Texts) -> tuple[str, InlineKeyboardMarkup | None]:
    profile = await stubs.profile()
    if not profile.HasField("active_booking"):
        return t("my.none"), choices([(t("button.book"), Menu(action="book").pack())])
    booking = profile.active_booking
    return t("my.booking", booking=booking_lines(t, booking)), my_booking_keyboard(t, booking)


async def on_booking_cancel(
    query: CallbackQuery, callback_data: BookingCancel, platform: Platform, t: Texts
) -> None:
    stubs = Stubs(platform)
    booking_id = expand_uuid(callback_data.b)
    if not callback_data.sure:
        got = await stubs.booking.GetBooking(pb.GetBookingRequest(booking_id=booking_id))
        await _show(
            query,
            t("my.cancel_ask", booking=booking_lines(t, got.booking)),
            cancel_ask_keyboard(t, got.booking),
        )
    else:
        done = await stubs.booking.CancelBooking(pb.CancelBookingRequest(booking_id=booking_id))
        await _show(query, t("my.cancelled", booking=booking_lines(t, done.booking)))
    await query.answer()


# -- master: schedule --------------------------------------------------------------------------------


async def today(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    stubs = Stubs(platform)
    profile = await _master(stubs, t, message)
    if profile is None:
        return
    day = datetime.now(zone(profile.time_zone)).date()
    await _answer(message, await _day_screen(stubs, t, day, profile.time_zone))


async def _day_screen(
    stubs: Stubs, t: Texts, day: date, time_zone: str
) -> tuple[str, InlineKeyboardMarkup]:
    tz = zone(time_zone)
    bookings = await stubs.bookings(pb.BOOKING_VIEW_MASTER, day, day)
    title = t("schedule.day", date=day_label(day, year=True))
    markup = day_schedule_keyboard(
        t,
        bookings,
        day,
        tz,
        previous=day - timedelta(days=1),
        following=day + timedelta(days=1),
        now_seconds=int(time.time()),
    )
    return schedule_text(t, title, bookings, tz), markup


async def week(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    stubs = Stubs(platform)
    profile = await _master(stubs, t, message)
    if profile is None:
        return
    tz = zone(profile.time_zone)
    first = datetime.now(tz).date()
    days = days_between(first, WEEK_DAYS)
    bookings = await stubs.bookings(pb.BOOKING_VIEW_MASTER, first, days[-1])
    title = t("schedule.week", start=day_label(first), end=day_label(days[-1]))
    text = schedule_text(t, title, bookings, tz, by_day=True)
    await message.answer(
        fit_message(text, more=t("schedule.more")),
        reply_markup=week_keyboard(days, count_by_day(bookings, tz)),
    )


async def on_master_day(
    query: CallbackQuery, callback_data: MasterDay, platform: Platform, t: Texts
) -> None:
    found = await _master_day(query, platform, t, callback_data.d)
    if found is None:
        return
    stubs, profile, day = found
    await _show(query, *await _day_screen(stubs, t, day, profile.time_zone))
    await query.answer()


async def on_master_cancel(
    query: CallbackQuery,
    callback_data: MasterCancel,
    platform: Platform,
    t: Texts,
    state: FSMContext,
) -> None:
    booking_id = expand_uuid(callback_data.b)
    got = await Stubs(platform).booking.GetBooking(pb.GetBookingRequest(booking_id=booking_id))
    if got.booking.status != pb.BOOKING_STATUS_ACTIVE:
        await _alert(query, t("reason.booking_not_active"))
        return
    await state.set_state(MasterInput.cancel_reason)
    await state.set_data({"booking_id": booking_id})
    await _send(
        query, t("master.cancel_ask", booking=booking_lines(t, got.booking, for_master=True))
    )
    await query.answer()


async def cancel_reason(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    reason = (message.text or "").strip()
    if not reason:
        await message.answer(t("master.reason_empty"))
        return
    if len(reason) > MAX_REASON:
        await message.answer(t("master.reason_long", max=MAX_REASON))
        return
    booking_id = str((await state.get_data()).get("booking_id", ""))
    await state.clear()
    done = await Stubs(platform).booking.CancelBooking(
        pb.CancelBookingRequest(booking_id=booking_id, reason=reason)
    )
    booking = done.booking
    key = (
        "master.cancelled"
        if booking.source == pb.BOOKING_SOURCE_CLIENT
        else "master.cancelled_manual"
    )
    await message.answer(
        t(key, booking=booking_lines(t, booking, for_master=True)), reply_markup=main_menu(True)
    )


# -- master: days off ----------------------------------------------------------------------------------


def _worked(profile: pb.GetBookingProfileResponse, day: date) -> bool:
    return any(wh.iso_weekday == day.isoweekday() for wh in profile.master.working_hours)


async def _days_off_screen(
    stubs: Stubs, profile: pb.GetBookingProfileResponse
) -> InlineKeyboardMarkup:
    first = datetime.now(zone(profile.time_zone)).date()
    off = await stubs.days_off(first)
    days = [d for d in days_between(first, BOOKING_DAYS) if _worked(profile, d) or d in off]
    return days_off_keyboard(days, off)


async def day_off(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    stubs = Stubs(platform)
    profile = await _master(stubs, t, message)
    if profile is None:
        return
    await message.answer(t("dayoff.title"), reply_markup=await _days_off_screen(stubs, profile))


async def on_day_off(
    query: CallbackQuery, callback_data: DayOffToggle, platform: Platform, t: Texts
) -> None:
    found = await _master_day(query, platform, t, callback_data.d)
    if found is None:
        return
    stubs, profile, day = found
    label = day_label(day, year=True)
    if callback_data.off:
        try:
            await stubs.master.SetDayOff(pb.SetDayOffRequest(date=day.isoformat()))
        except grpc.aio.AioRpcError as exc:
            details = error_details(exc)
            if details.reason != "DAY_HAS_BOOKINGS":
                raise
            count = details.metadata.get("count", "?")
            await _alert(query, t("dayoff.has_bookings", date=label, count=count))
            return
        result = t("dayoff.set", date=label)
    else:
        await stubs.master.DeleteDayOff(pb.DeleteDayOffRequest(date=day.isoformat()))
        result = t("dayoff.deleted", date=label)
    await _show(query, f"{result}\n\n{t('dayoff.title')}", await _days_off_screen(stubs, profile))
    await query.answer(result)


# -- master: lunch -----------------------------------------------------------------------------------


async def lunch(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    profile = await _master(Stubs(platform), t, message)
    if profile is None:
        return
    current = lunch_label(profile.master)
    text = t("lunch.current", lunch=current) if current else t("lunch.none")
    await message.answer(text, reply_markup=lunch_keyboard(t))


async def _set_lunch(stubs: Stubs, t: Texts, start: int, end: int) -> str:
    if (start, end) == (LUNCH_CLEAR.start, LUNCH_CLEAR.end):
        await stubs.master.SetLunchBreak(pb.SetLunchBreakRequest(clear=True))
        return t("lunch.cleared")
    done = await stubs.master.SetLunchBreak(
        pb.SetLunchBreakRequest(
            lunch=pb.LocalTimeRange(start_time=format_hhmm(start), end_time=format_hhmm(end))
        )
    )
    shown = lunch_label(done.master) or f"{format_hhmm(start)}–{format_hhmm(end)}"
    return t("lunch.set", lunch=shown)


async def on_lunch(
    query: CallbackQuery,
    callback_data: LunchChoice,
    platform: Platform,
    t: Texts,
    state: FSMContext,
) -> None:
    start, end = callback_data.start, callback_data.end
    if (start, end) == (LUNCH_TYPE.start, LUNCH_TYPE.end):
        await state.set_state(MasterInput.lunch)
        await _send(query, t("lunch.ask"))
        await query.answer()
        return
    if (start, end) != (LUNCH_CLEAR.start, LUNCH_CLEAR.end) and not start < end <= 24 * 60:
        await stale(query, t)
        return
    await _show(query, await _set_lunch(Stubs(platform), t, start, end))
    await query.answer()


async def lunch_typed(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    parsed = parse_lunch(message.text or "")
    if parsed is None:
        await message.answer(t("lunch.bad"))
        return
    await state.clear()
    text = await _set_lunch(Stubs(platform), t, *parsed)
    await message.answer(text, reply_markup=main_menu(True))


# -- master: manual booking --------------------------------------------------------------------------


async def _manual_services_screen(stubs: Stubs, t: Texts) -> tuple[str, InlineKeyboardMarkup]:
    services = await stubs.services()
    return t("manual.choose_service"), services_keyboard(
        services,
        lambda s: ManualService(s=s).pack(),
        (t("button.cancel_flow"), Menu(action="close").pack()),
    )


async def manual(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    await state.clear()
    stubs = Stubs(platform)
    if await _master(stubs, t, message) is None:
        return
    await _answer(message, await _manual_services_screen(stubs, t))


async def on_manual_service(
    query: CallbackQuery, callback_data: ManualService, platform: Platform, t: Texts
) -> None:
    stubs = Stubs(platform)
    profile = await _master(stubs, t, query)
    if profile is None:
        return
    s = callback_data.s
    service = await stubs.service(s)
    days = await stubs.free_days(profile.master.id, s)
    back = (t("button.back"), Menu(action="manual").pack())
    if not days:
        await _show(query, t("manual.no_dates", days=BOOKING_DAYS), choices([], footer=[back]))
    else:
        await _show(
            query,
            t("manual.choose_date", service=service.name),
            dates_keyboard(days, lambda d: ManualDate(s=s, d=day_code(d)).pack(), back),
        )
    await query.answer()


async def on_manual_date(
    query: CallbackQuery, callback_data: ManualDate, platform: Platform, t: Texts
) -> None:
    found = await _master_day(query, platform, t, callback_data.d)
    if found is None:
        return
    stubs, profile, day = found
    s = callback_data.s
    service = await stubs.service(s)
    slots = await stubs.day_slots(profile.master.id, s, day)
    back = (t("button.back"), ManualService(s=s).pack())
    if not slots:
        await _show(query, t("book.no_slots", date=day_label(day)), choices([], footer=[back]))
    else:
        await _show(
            query,
            t("manual.choose_slot", service=service.name, date=day_label(day)),
            slots_keyboard(
                slots, lambda slot: ManualSlot(s=s, t=slot.start_time.seconds // 60).pack(), back
            ),
        )
    await query.answer()


async def on_manual_slot(
    query: CallbackQuery,
    callback_data: ManualSlot,
    platform: Platform,
    t: Texts,
    state: FSMContext,
) -> None:
    stubs = Stubs(platform)
    profile = await _master(stubs, t, query)
    if profile is None:
        return
    s, minutes = callback_data.s, callback_data.t
    found = await stubs.find_slot(profile.master.id, s, minutes)
    if found is None:
        await _alert(query, t("book.slot_gone"))
        return
    day, slot = found
    service = await stubs.service(s)
    when = f"{format_date(day)} {slot.local_time}"
    await state.set_state(MasterInput.manual_name)
    await state.set_data({"service_id": s, "minutes": minutes, "when": when})
    await _show(query, t("manual.ask_name", service=service.name, when=when))
    await query.answer()


async def manual_name(message: Message, t: Texts, state: FSMContext) -> None:
    name = " ".join((message.text or "").split())
    if not 0 < len(name) <= MAX_CLIENT_NAME:
        await message.answer(t("manual.bad_name", max=MAX_CLIENT_NAME))
        return
    await state.update_data(name=name)
    await state.set_state(MasterInput.manual_phone)
    await message.answer(t("manual.ask_phone"))


async def manual_phone(message: Message, platform: Platform, t: Texts, state: FSMContext) -> None:
    phone = (message.text or "").strip()
    if not valid_phone(phone):
        await message.answer(t("manual.bad_phone"))
        return
    data = await state.get_data()
    service = await Stubs(platform).service(str(data.get("service_id", "")))
    nonce = new_nonce()
    # One request id per confirmation screen: pressing «Подтвердить» twice books once.
    await state.update_data(phone=phone, nonce=nonce, request_id=str(uuid.uuid4()))
    await state.set_state(MasterInput.manual_confirm)
    summary = slot_summary(
        t,
        master=None,
        service=service,
        when=str(data.get("when", "")),
        client=str(data.get("name", "")),
        phone=phone,
    )
    await message.answer(
        t("manual.confirm", booking=summary),
        reply_markup=confirm_keyboard(
            t,
            ManualConfirm(n=nonce).pack(),
            Menu(action="close").pack(),
            back_label=t("button.cancel_flow"),
        ),
    )


async def on_manual_confirm(
    query: CallbackQuery,
    callback_data: ManualConfirm,
    platform: Platform,
    t: Texts,
    state: FSMContext,
) -> None:
    data = await state.get_data()
    if data.get("nonce") != callback_data.n or "request_id" not in data:
        await _alert(query, t("manual.expired"))
        return
    if data.get("manual_done"):
        await query.answer()  # a second tap after the booking was made: nothing more to do
        return
    created = await Stubs(platform).master.CreateManualBooking(
        pb.CreateManualBookingRequest(
            service_id=str(data["service_id"]),
            start_time=_timestamp(int(data["minutes"])),
            client_name=str(data["name"]),
            client_phone=str(data["phone"]),
            request_id=str(data["request_id"]),
        )
    )
    # The client's name and phone are forgotten at once; the nonce stays so a second tap is
    # recognised (a tap racing this one sends the same request_id: the server books once).
    await state.set_data(
        {"nonce": callback_data.n, "request_id": data["request_id"], "manual_done": True}
    )
    await state.set_state(None)
    await _show(query, t("manual.done", booking=booking_lines(t, created.booking, for_master=True)))
    await query.answer()
