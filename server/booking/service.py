"""Booking use cases: masters and the menu, availability, bookings, a master's schedule.

Every write is one transaction that also holds its audit event and its outbox notices, so a
booking, its record and its notifications commit (or vanish) together. The invariants are the
database's (see server/booking/repository.py); this layer checks the schedule inside the
transaction (model.slot_refusal / schedule_refusal) and maps refusals to the contract's reasons.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import Counter, Histogram

from server.booking import model
from server.booking.model import (
    DEFAULT_LUNCH,
    DEFAULT_WORKING_HOURS,
    DOMAIN,
    Actor,
    Booking,
    BookingSource,
    BookingStatus,
    DayOff,
    DaySlots,
    Master,
    MinuteRange,
    ServiceOption,
    SlotRefusal,
    WorkingHours,
)
from server.booking.repository import (
    ActiveBookingExists,
    BookingRepository,
    BookingTx,
    MasterExists,
    RequestReplayed,
    SlotTaken,
    StoredBooking,
)
from server.kernel import paging
from server.kernel.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.kernel.principal import Principal, UserPrincipal
from server.notifications.model import Channel, Notice, ToUserViaBot

log = logging.getLogger(__name__)
D = DOMAIN

# Where notices to booking participants go: their private chat with the booking bot.
BOT = "booking"
NOTICE_LANGUAGE = "ru"

ATTEMPTS = Counter(
    "booking_attempts_total",
    "CreateBooking and CreateManualBooking results: created, replayed (a retried request_id"
    " answered with its first booking), or refused with the reason.",
    ["result", "reason"],
)
CANCELLATIONS = Counter("booking_cancellations_total", "Cancelled bookings, by who.", ["by"])
AVAILABILITY_SECONDS = Histogram(
    "booking_availability_seconds",
    "GetAvailability time (queries and slot computation), refused calls included.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
COMPLETED = Counter("booking_completed_total", "Bookings marked completed by the periodic sweep.")

# How long GetAvailability trusts its in-process copy of the menu (UpdateServiceOption on this
# replica refreshes it at once; bookings always read the menu from PostgreSQL).
MENU_TTL_S = 5.0

# The largest page a list call returns, whatever page_size asks.
MAX_PAGE_SIZE = 200

_P = TypeVar("_P")  # a keyset position
_R = TypeVar("_R")  # a listed row

Outbox = Callable[[asyncpg.Connection, Notice], Awaitable[bool]]
# Drops the still-pending notices whose dedup key starts with a prefix (in the transaction).
WithdrawPrefix = Callable[[asyncpg.Connection, str], Awaitable[int]]


@dataclass(frozen=True)
class BookingConfig:
    time_zone: str = "Europe/Moscow"
    slot_minutes: int = 60
    reminder_offsets_minutes: tuple[int, ...] = (1440, 120)
    max_range_days: int = 62
    completion_interval_s: float = 60.0

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- errors ---------------------------------------------------------------------------------


def _master_not_found() -> NotFound:
    return NotFound("MASTER_NOT_FOUND", "no active master with that id", domain=D)


def _service_not_found() -> NotFound:
    return NotFound("SERVICE_NOT_FOUND", "no active service option with that id", domain=D)


def _booking_not_found() -> NotFound:
    return NotFound("BOOKING_NOT_FOUND", "no such booking", domain=D)


def _not_your_booking() -> PermissionDenied:
    return PermissionDenied(
        "NOT_YOUR_BOOKING", "the booking is neither yours nor one of your clients'", domain=D
    )


def _not_a_master() -> PermissionDenied:
    return PermissionDenied("NOT_A_MASTER", "this needs an active master profile", domain=D)


class _NotYourBooking(Exception):
    """Inside a transaction: the booking is neither the caller's nor their client's (rolled
    back, then audited and refused as NOT_YOUR_BOOKING)."""


class _NoMasterProfile(Exception):
    """Inside a transaction: the caller has no active master profile (rolled back, then
    audited and refused as NOT_A_MASTER)."""


def _key_reused() -> FailedPrecondition:
    return FailedPrecondition(
        "IDEMPOTENCY_KEY_REUSED", "this request_id was used for another request", domain=D
    )


def _slot_taken() -> AlreadyExists:
    return AlreadyExists("SLOT_TAKEN", "another booking of the master overlaps", domain=D)


def _invalid(field: str, description: str, reason: str = "INVALID_FIELDS") -> InvalidArgument:
    return InvalidArgument(
        reason,
        f"{field} {description}",
        violations=[FieldViolation(field, description)],
        domain=D,
    )


def _time_range(message: str) -> InvalidArgument:
    return InvalidArgument("INVALID_TIME_RANGE", message, domain=D)


_UNAVAILABLE_TEXT = {
    SlotRefusal.DAY_OFF: "the master takes that day off",
    SlotRefusal.NOT_WORKING: "the master does not work that day",
    SlotRefusal.OFF_GRID: "not a slot start: pick one from GetAvailability",
    SlotRefusal.OUTSIDE_HOURS: "outside the master's working hours",
    SlotRefusal.LUNCH: "overlaps the master's lunch break",
}


def _refusal_error(refusal: SlotRefusal) -> DomainError:
    if refusal is SlotRefusal.PAST:
        return FailedPrecondition("SLOT_IN_PAST", "the start time has passed", domain=D)
    if refusal is SlotRefusal.BUSY:
        return _slot_taken()
    return FailedPrecondition(
        "SLOT_UNAVAILABLE",
        _UNAVAILABLE_TEXT[refusal],
        domain=D,
        metadata={"why": refusal.value},
    )


def _race_refusal(exc: Exception) -> DomainError:
    """A create call's refusal after a lost race that no retry of the request won."""
    return _slot_taken() if isinstance(exc, SlotTaken) else _key_reused()


@dataclass(frozen=True)
class _Ask:
    """What a create call asks for: a retry of its request_id is answered with the first
    booking only when that booking matches it."""

    user_id: UUID
    request_id: UUID | None
    master_id: UUID | None  # None: any master
    service_id: str
    start: datetime
    source: BookingSource

    def replay(self, prior: StoredBooking) -> Booking:
        """A retried request: the first result when the parameters match, else a refusal."""
        booking = prior.booking
        if (
            booking.source is not self.source
            or booking.service_id != self.service_id
            or booking.start != self.start
            or (self.master_id is not None and booking.master_id != self.master_id)
        ):
            raise _key_reused()
        return booking


async def _counted(creating: Awaitable[tuple[Booking, bool]]) -> Booking:
    """Awaits a create call and counts its result: created, replayed, or refused (a reason)."""
    try:
        booking, replayed = await creating
    except DomainError as exc:
        ATTEMPTS.labels("refused", exc.reason).inc()
        raise
    ATTEMPTS.labels("replayed" if replayed else "created", "").inc()
    return booking


def _notice(
    user_id: UUID,
    template: str,
    params: dict[str, str],
    *,
    dedup_key: str,
    not_before: datetime | None = None,
) -> Notice:
    """A notice to a booking participant: in their private chat with the booking bot."""
    return Notice(
        recipient=ToUserViaBot(user_id, bot=BOT, default_language=NOTICE_LANGUAGE),
        channel=Channel.TELEGRAM,
        template=template,
        params=params,
        dedup_key=dedup_key,
        not_before=not_before,
    )


def _about(booking: Booking, when: str, *, to: Actor) -> dict[str, str]:
    """What a notice to one side of the booking names: the other side, the service, when."""
    if to is Actor.CLIENT:
        return {
            "master": booking.master_display_name,
            "service": booking.service_name,
            "when": when,
        }
    return {"client": booking.client_name, "service": booking.service_name, "when": when}


def _page_size(requested: int) -> int:
    return min(paging.page_size(requested), MAX_PAGE_SIZE)


def _after(page_token: str, position: Callable[[dict[str, Any]], _P]) -> _P | None:
    """The keyset position a page token carries (None: the first page); INVALID_PAGE_TOKEN
    when it is malformed or its cursor does not read as one."""
    cursor = paging.decode(page_token)
    if cursor is None:
        return None
    try:
        return position(cursor)
    except (KeyError, ValueError, TypeError):
        raise paging.invalid_token(domain=D) from None


def _page(
    rows: list[_R], size: int, cursor: Callable[[_R], dict[str, Any]]
) -> tuple[list[_R], str]:
    """The first `size` of the rows (fetched `size + 1`) and the token of the next page (empty
    on the last one): the cursor of the page's last row."""
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, paging.encode(cursor(rows[-1]))


def _user(principal: Principal) -> UserPrincipal:
    if principal.user is None:
        raise Unauthenticated("UNAUTHENTICATED", "a user is required", domain=D)
    return principal.user


def _parse_date(value: str, field: str) -> date:
    try:
        return model.parse_date(value)
    except ValueError:
        raise _invalid(field, "is not a valid date (YYYY-MM-DD)") from None


def _minute_range(start: str, end: str, field: str) -> MinuteRange:
    if not start or not end:
        raise _invalid(field, "needs both start_time and end_time")
    try:
        first, last = model.parse_hhmm(start), model.parse_hhmm(end)
    except ValueError:
        raise _invalid(field, "is not HH:MM") from None
    if first >= last:
        raise _time_range(f"{field}: the end must be after the start")
    return MinuteRange(first, last)


# --- the service ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MasterChange:
    """UpdateMaster's input: the fields named in update_mask."""

    display_name: str | None = None
    working_hours: tuple[WorkingHours, ...] | None = None
    lunch: MinuteRange | None = None
    clear_lunch: bool = False
    active: bool | None = None


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """UpdateServiceOption's input: the fields named in update_mask."""

    name: str | None = None
    duration_minutes: int | None = None
    price_minor_units: int | None = None
    active: bool | None = None


class BookingService:
    def __init__(
        self,
        repo: BookingRepository,
        config: BookingConfig,
        *,
        outbox: Outbox,
        withdraw_prefix: WithdrawPrefix,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._repo = repo
        self._config = config
        self._tz = config.tz
        self._step = timedelta(minutes=config.slot_minutes)
        self._outbox = outbox
        self._withdraw_prefix = withdraw_prefix
        self._clock = clock
        self._menu: dict[str, ServiceOption] = {}
        self._menu_time = -MENU_TTL_S
        self._menu_generation = 0  # bumped by every invalidation
        self._menu_lock = asyncio.Lock()

    @property
    def time_zone(self) -> str:
        return self._config.time_zone

    def local_start(self, booking: Booking) -> str:
        return model.format_local(booking.start, self._tz)

    def _today(self) -> date:
        return model.local_date(self._clock(), self._tz)

    # --- the access policy's "booking.master" role ------------------------------------------

    async def is_master(self, user: UserPrincipal) -> bool:
        return await self._repo.is_active_master(user.user_id)

    async def _deny(
        self, principal: Principal, target: str, request_id: str, error: DomainError
    ) -> DomainError:
        """Audit an authorization refusal (committed on its own) and return the error."""
        await self._repo.audit(
            actor=principal.label(),
            action="access.denied",
            target=target,
            request_id=request_id,
            attributes={"reason": error.reason},
        )
        return error

    async def _own_master(self, principal: Principal, method: str, request_id: str) -> Master:
        user = _user(principal)
        master = await self._repo.master_of_user(user.user_id)
        if master is None or not master.active:
            raise await self._deny(principal, method, request_id, _not_a_master())
        return master

    # --- masters and services ------------------------------------------------------------

    async def list_masters(
        self, page_size: int, page_token: str, *, active_only: bool = True
    ) -> tuple[list[Master], str]:
        size = _page_size(page_size)
        after = _after(page_token, lambda c: (str(c["n"]), UUID(str(c["i"]))))
        masters = await self._repo.list_masters(after, size + 1, active_only=active_only)
        return _page(masters, size, lambda m: {"n": m.display_name, "i": str(m.id)})

    async def get_master(self, master_id: UUID) -> Master:
        master = await self._repo.get_master(master_id)
        if master is None or not master.active:
            raise _master_not_found()
        return master

    async def list_services(
        self, page_size: int, page_token: str
    ) -> tuple[list[ServiceOption], str]:
        size = _page_size(page_size)
        after = _after(page_token, lambda c: (int(c["p"]), str(c["i"])))
        services = await self._repo.list_services(after, size + 1, active_only=True)
        return _page(services, size, lambda s: {"p": s.position, "i": s.id})

    async def _active_service(self, service_id: str) -> ServiceOption:
        service = await self._repo.get_service(service_id) if service_id else None
        if service is None or not service.active:
            raise _service_not_found()
        return service

    async def _menu_service(self, service_id: str) -> ServiceOption:
        """An active service option from the cached menu (availability's hot path). When the
        copy expires, one caller reloads it; the others wait for that reload (double-checked
        under the lock) instead of each querying the menu."""
        if time.monotonic() - self._menu_time > MENU_TTL_S:
            async with self._menu_lock:
                started = time.monotonic()
                if started - self._menu_time > MENU_TTL_S:
                    generation = self._menu_generation
                    services = await self._repo.list_services(None, 1000, active_only=False)
                    self._menu = {s.id: s for s in services}
                    # Invalidated while loading: this copy may predate the change.
                    self._menu_time = (
                        started if generation == self._menu_generation else -MENU_TTL_S
                    )
        service = self._menu.get(service_id)
        if service is None or not service.active:
            raise _service_not_found()
        return service

    # --- availability --------------------------------------------------------------------

    async def availability(
        self, master_id: UUID, start_date: str, end_date: str, service_id: str
    ) -> list[DaySlots]:
        started = time.perf_counter()
        try:
            return await self._availability(master_id, start_date, end_date, service_id)
        finally:  # refusals too: a slow refusal is as slow for the caller
            AVAILABILITY_SECONDS.observe(time.perf_counter() - started)

    async def _availability(
        self, master_id: UUID, start_date: str, end_date: str, service_id: str
    ) -> list[DaySlots]:
        first = _parse_date(start_date, "start_date")
        last = _parse_date(end_date, "end_date") if end_date else first
        if last < first:
            raise _time_range("end_date is before start_date")
        if (last - first).days + 1 > self._config.max_range_days:
            raise _time_range(f"at most {self._config.max_range_days} days at once")
        duration = (await self._menu_service(service_id)).duration if service_id else self._step
        bounds = model.range_bounds(first, last, self._tz)
        master, days_off, busy = await self._repo.schedule(
            master_id, first, last, bounds.start, bounds.end
        )
        if master is None or not master.active:
            raise _master_not_found()
        days = model.free_slots_range(
            first=first,
            last=last,
            tz=self._tz,
            master=master,
            days_off=days_off,
            busy=busy,
            duration=duration,
            step=self._step,
            now=self._clock(),
        )
        return list(days)

    # --- bookings: create ----------------------------------------------------------------

    def _notices_for_new(self, booking: Booking, master_user_id: UUID) -> list[Notice]:
        assert booking.client_user_id is not None
        when = model.format_when(booking.start, self._tz)
        to_client = _about(booking, when, to=Actor.CLIENT)
        notices = [
            _notice(
                booking.client_user_id,
                "booking.confirmed",
                to_client,
                dedup_key=f"booking:{booking.id}:confirmed",
            ),
            _notice(
                master_user_id,
                "booking.created",
                _about(booking, when, to=Actor.MASTER),
                dedup_key=f"booking:{booking.id}:created",
            ),
        ]
        now = self._clock()
        for minutes in self._config.reminder_offsets_minutes:
            due = booking.start - timedelta(minutes=minutes)
            if due <= now:
                continue
            notices.append(
                _notice(
                    booking.client_user_id,
                    "booking.reminder",
                    to_client,
                    dedup_key=self.reminder_key(booking.id, minutes),
                    not_before=due,
                )
            )
        return notices

    @staticmethod
    def reminder_prefix(booking_id: UUID) -> str:
        return f"booking:{booking_id}:reminder:"

    @classmethod
    def reminder_key(cls, booking_id: UUID, minutes: int) -> str:
        return f"{cls.reminder_prefix(booking_id)}{minutes}"

    async def _prior(self, tx: BookingTx, ask: _Ask) -> Booking | None:
        """The first booking of a retried request_id (or a refusal when the retry asks for
        something else); None for a new request."""
        if ask.request_id is None:
            return None
        prior = await tx.booking_by_request(ask.user_id, ask.request_id)
        return None if prior is None else ask.replay(prior)

    async def _raced(self, ask: _Ask) -> Booking | None:
        """After a refused insert: a racing retry of the same request may have won, and its
        booking is the answer then (None: it did not)."""
        if ask.request_id is None:
            return None
        async with self._repo.transaction() as tx:
            return await self._prior(tx, ask)

    async def _insert(
        self,
        tx: BookingTx,
        principal: Principal,
        call_id: str,
        *,
        action: str,
        ask: _Ask,
        master_id: UUID,
        service: ServiceOption,
        client_user_id: UUID | None,
        client_name: str | None,
        client_phone: str | None,
    ) -> StoredBooking:
        """Inserts the booking asked for and audits it (in the caller's transaction)."""
        booking_id = await tx.insert_booking(
            master_id=master_id,
            service=service,
            start=ask.start,
            end=ask.start + service.duration,
            source=ask.source,
            client_user_id=client_user_id,
            client_name=client_name,
            client_phone=client_phone,
            created_by=ask.user_id,
            request_id=ask.request_id,
        )
        stored = await tx.get_booking(booking_id)
        assert stored is not None
        await tx.audit(
            actor=principal.label(),
            action=action,
            target=f"booking:{booking_id}",
            request_id=call_id,
            attributes={
                "master_id": str(master_id),
                "service_id": service.id,
                "start_time": stored.booking.start.isoformat(),
            },
        )
        return stored

    async def create_booking(
        self,
        principal: Principal,
        *,
        master_id: UUID,
        service_id: str,
        start: datetime,
        request_id: UUID | None,
        call_id: str,
    ) -> Booking:
        user = _user(principal)
        ask = _Ask(user.user_id, request_id, master_id, service_id, start, BookingSource.CLIENT)
        return await _counted(self._create_booking(principal, master_id, ask, call_id))

    async def _create_booking(
        self, principal: Principal, master_id: UUID, ask: _Ask, call_id: str
    ) -> tuple[Booking, bool]:
        """The booking, and whether it is a replay (an earlier call with this request_id)."""
        start = ask.start
        service = await self._active_service(ask.service_id)
        day = model.local_date(start, self._tz)
        bounds = model.local_day_bounds(day, self._tz)
        try:
            async with self._repo.transaction() as tx:
                if (replay := await self._prior(tx, ask)) is not None:
                    return replay, True
                master = await tx.lock_master(master_id, exclusive=False)
                if master is None or not master.active:
                    raise _master_not_found()
                days_off = await tx.days_off_between(master_id, day, day)
                busy = await tx.busy_between(master_id, bounds.start, bounds.end)
                refusal = model.slot_refusal(
                    tz=self._tz,
                    master=master,
                    day_off=day in days_off,
                    busy=busy,
                    duration=service.duration,
                    step=self._step,
                    now=self._clock(),
                    start=start,
                )
                if refusal is SlotRefusal.BUSY:
                    raise SlotTaken  # maybe by a racing retry of this request: see below
                if refusal is not None:
                    raise _refusal_error(refusal)
                await tx.complete_past_of_client(ask.user_id)
                stored = await self._insert(
                    tx,
                    principal,
                    call_id,
                    action="booking.created",
                    ask=ask,
                    master_id=master_id,
                    service=service,
                    client_user_id=ask.user_id,
                    client_name=None,
                    client_phone=None,
                )
                booking = stored.booking
                for notice in self._notices_for_new(booking, stored.master_user_id):
                    await self._outbox(tx.conn, notice)
                return booking, False
        except (SlotTaken, ActiveBookingExists, RequestReplayed) as exc:
            if (replay := await self._raced(ask)) is not None:
                return replay, True
            if isinstance(exc, ActiveBookingExists):
                active = await self._repo.active_booking_of(ask.user_id)
                raise FailedPrecondition(
                    "ACTIVE_BOOKING_EXISTS",
                    "you already have an active booking; cancel it first",
                    domain=D,
                    metadata={"booking_id": str(active.booking.id)} if active else {},
                ) from None
            raise _race_refusal(exc) from None

    async def create_manual_booking(
        self,
        principal: Principal,
        *,
        service_id: str,
        start: datetime,
        client_name: str,
        client_phone: str,
        request_id: UUID | None,
        call_id: str,
    ) -> Booking:
        async def create() -> tuple[Booking, bool]:
            # The caller is read inside: a call without a user is counted as refused too.
            user = _user(principal)
            # Any master matches: a manual booking is the caller's own.
            ask = _Ask(user.user_id, request_id, None, service_id, start, BookingSource.MANUAL)
            return await self._create_manual(principal, ask, client_name, client_phone, call_id)

        return await _counted(create())

    async def _create_manual(
        self,
        principal: Principal,
        ask: _Ask,
        client_name: str,
        client_phone: str,
        call_id: str,
    ) -> tuple[Booking, bool]:
        """The booking, and whether it is a replay (an earlier call with this request_id)."""
        start = ask.start
        name = client_name.strip()
        if not name:
            raise _invalid("client_name", "must not be blank")
        try:
            async with self._repo.transaction() as tx:
                # The caller's own master profile, read once and held FOR SHARE (a schedule
                # edit waits for this booking, and this booking for a running edit).
                master = await tx.lock_master_of_user(ask.user_id, exclusive=False)
                if master is None or not master.active:
                    raise _NoMasterProfile
                service = await tx.get_service(ask.service_id) if ask.service_id else None
                if service is None or not service.active:
                    raise _service_not_found()
                if (replay := await self._prior(tx, ask)) is not None:
                    return replay, True
                end = start + service.duration
                day = model.local_date(start, self._tz)
                days_off = await tx.days_off_between(master.id, day, day)
                refusal = model.schedule_refusal(
                    tz=self._tz, master=master, days_off=days_off, start=start, end=end
                )
                if refusal is None and start <= self._clock():
                    refusal = SlotRefusal.PAST
                if refusal is not None:
                    raise _refusal_error(refusal)
                stored = await self._insert(
                    tx,
                    principal,
                    call_id,
                    action="booking.manual_created",
                    ask=ask,
                    master_id=master.id,
                    service=service,
                    client_user_id=None,
                    client_name=name,
                    client_phone=client_phone.strip(),
                )
                return stored.booking, False
        except _NoMasterProfile:
            raise await self._deny(
                principal,
                "/switchboard.booking.v1.MasterService/CreateManualBooking",
                call_id,
                _not_a_master(),
            ) from None
        except (SlotTaken, RequestReplayed, ActiveBookingExists) as exc:
            if (replay := await self._raced(ask)) is not None:
                return replay, True
            raise _race_refusal(exc) from None

    # --- bookings: read ------------------------------------------------------------------

    @staticmethod
    def _side(user: UserPrincipal, stored: StoredBooking) -> Actor | None:
        """The caller's side of the booking: its client, its master (an active master profile
        only: a deactivated master sees nothing), or None (not theirs)."""
        if stored.booking.client_user_id == user.user_id:
            return Actor.CLIENT
        if stored.master_user_id == user.user_id and stored.master_active:
            return Actor.MASTER
        return None

    async def get_booking(self, principal: Principal, booking_id: UUID, call_id: str) -> Booking:
        user = _user(principal)
        stored = await self._repo.get_booking(booking_id)
        if stored is None:
            raise _booking_not_found()
        if self._side(user, stored) is None:
            raise await self._deny(principal, f"booking:{booking_id}", call_id, _not_your_booking())
        # A client's view carries no phone: client bookings have none (a CHECK), and only
        # manual bookings, which only their master sees, do.
        return stored.booking

    async def list_bookings(
        self,
        principal: Principal,
        *,
        master_view: bool,
        start_date: str,
        end_date: str,
        include_cancelled: bool,
        page_size: int,
        page_token: str,
        call_id: str,
    ) -> tuple[list[Booking], str]:
        user = _user(principal)
        master_id: UUID | None = None
        if master_view:
            master_id = (
                await self._own_master(
                    principal, "/switchboard.booking.v1.BookingService/ListBookings", call_id
                )
            ).id
        first = _parse_date(start_date, "start_date") if start_date else self._today()
        last = _parse_date(end_date, "end_date") if end_date else None
        if last is not None and last < first:
            raise _time_range("end_date is before start_date")
        start = model.local_instant(first, 0, self._tz)
        end = model.local_instant(last + timedelta(days=1), 0, self._tz) if last else None
        size = _page_size(page_size)
        after = _after(
            page_token, lambda c: (datetime.fromisoformat(str(c["t"])), UUID(str(c["i"])))
        )
        rows = await self._repo.list_bookings(
            client_user_id=None if master_view else user.user_id,
            master_id=master_id,
            start=start,
            end=end,
            include_cancelled=include_cancelled,
            after=after,
            limit=size + 1,
        )
        page, token = _page(
            rows, size, lambda r: {"t": r.booking.start.isoformat(), "i": str(r.booking.id)}
        )
        # The client view lists the caller's own client bookings: none has a phone (a CHECK).
        return [r.booking for r in page], token

    async def profile(self, principal: Principal) -> tuple[Master | None, Booking | None]:
        user = _user(principal)
        master = await self._repo.master_of_user(user.user_id)
        active = await self._repo.active_booking_of(user.user_id)
        return (
            master if master is not None and master.active else None,
            active.booking if active is not None else None,
        )

    # --- bookings: cancel ----------------------------------------------------------------

    async def cancel_booking(
        self, principal: Principal, booking_id: UUID, reason: str, call_id: str
    ) -> Booking:
        user = _user(principal)
        reason = reason.strip()
        target = f"booking:{booking_id}"
        try:
            return await self._cancel(principal, user, booking_id, reason, target, call_id)
        except _NotYourBooking:
            # Audited on its own, after the transaction (which changed nothing) rolled back.
            raise await self._deny(principal, target, call_id, _not_your_booking()) from None

    async def _cancel(
        self,
        principal: Principal,
        user: UserPrincipal,
        booking_id: UUID,
        reason: str,
        target: str,
        call_id: str,
    ) -> Booking:
        async with self._repo.transaction() as tx:
            # One read: the booking row locked FOR UPDATE, with its master and service.
            stored = await tx.lock_booking(booking_id)
            if stored is None:
                raise _booking_not_found()
            by = self._side(user, stored)
            if by is None:
                raise _NotYourBooking
            booking = stored.booking
            if booking.status is not BookingStatus.CANCELLED:
                if by is Actor.MASTER and not reason:
                    raise InvalidArgument(
                        "CANCEL_REASON_REQUIRED",
                        "a master cancels only with a reason (shown to the client)",
                        violations=[FieldViolation("reason", "is required for a master")],
                        domain=D,
                    )
                if booking.status is not BookingStatus.ACTIVE or booking.end <= self._clock():
                    raise FailedPrecondition(
                        "BOOKING_NOT_ACTIVE", "the booking is already over", domain=D
                    )
                cancel_time = await tx.cancel_booking(booking_id, by, reason)
                await tx.audit(
                    actor=principal.label(),
                    action="booking.cancelled",
                    target=target,
                    request_id=call_id,
                    attributes={"by": by.value, "reason": reason, "source": booking.source.value},
                )
                # Every pending reminder of the booking, whatever offsets were configured
                # when it was booked (the setting may have changed since).
                await self._withdraw_prefix(tx.conn, self.reminder_prefix(booking_id))
                await self._cancel_notice(tx, booking, stored.master_user_id, by, reason)
                CANCELLATIONS.labels(by.value).inc()
                booking = replace(
                    booking,
                    status=BookingStatus.CANCELLED,
                    cancel_time=cancel_time,
                    cancelled_by=by,
                    cancel_reason=reason,
                )
        return booking

    async def _cancel_notice(
        self, tx: BookingTx, booking: Booking, master_user_id: UUID, by: Actor, reason: str
    ) -> None:
        when = model.format_when(booking.start, self._tz)
        dedup_key = f"booking:{booking.id}:cancelled"
        if by is Actor.CLIENT:
            to_master = _about(booking, when, to=Actor.MASTER)
            await self._outbox(
                tx.conn,
                _notice(
                    master_user_id, "booking.cancelled_by_client", to_master, dedup_key=dedup_key
                ),
            )
        elif booking.client_user_id is not None:
            to_client = {**_about(booking, when, to=Actor.CLIENT), "reason": reason}
            await self._outbox(
                tx.conn,
                _notice(
                    booking.client_user_id,
                    "booking.cancelled_by_master",
                    to_client,
                    dedup_key=dedup_key,
                ),
            )

    # --- a master's schedule -------------------------------------------------------------

    async def list_days_off(
        self,
        principal: Principal,
        start_date: str,
        page_size: int,
        page_token: str,
        call_id: str,
    ) -> tuple[list[DayOff], str]:
        master = await self._own_master(
            principal, "/switchboard.booking.v1.MasterService/ListDaysOff", call_id
        )
        first = _parse_date(start_date, "start_date") if start_date else self._today()
        size = _page_size(page_size)
        after = _after(page_token, lambda c: date.fromisoformat(str(c["d"])))
        days = await self._repo.list_days_off(master.id, first, after, size + 1)
        return _page(days, size, lambda d: {"d": d.day.isoformat()})

    async def set_day_off(
        self, principal: Principal, day_text: str, note: str, call_id: str
    ) -> DayOff:
        user = _user(principal)
        day = _parse_date(day_text, "date")
        if day < self._today():
            raise _invalid("date", "has passed: a day off is today or later")
        bounds = model.local_day_bounds(day, self._tz)
        async with self._repo.transaction() as tx:
            master = await tx.lock_master_of_user(user.user_id, exclusive=True)
            if master is None or not master.active:
                master = None
            else:
                booked = await tx.active_between(master.id, bounds.start, bounds.end)
                if booked:
                    raise FailedPrecondition(
                        "DAY_HAS_BOOKINGS",
                        f"{len(booked)} active booking(s) that day: cancel them first",
                        domain=D,
                        metadata={"count": str(len(booked))},
                    )
                result = await tx.upsert_day_off(master.id, day, note.strip())
                await tx.audit(
                    actor=principal.label(),
                    action="booking.day_off_set",
                    target=f"booking_master:{master.id}",
                    request_id=call_id,
                    attributes={"date": day.isoformat()},
                )
        if master is None:
            raise await self._deny(
                principal,
                "/switchboard.booking.v1.MasterService/SetDayOff",
                call_id,
                _not_a_master(),
            )
        return result

    async def delete_day_off(self, principal: Principal, day_text: str, call_id: str) -> None:
        user = _user(principal)
        day = _parse_date(day_text, "date")
        async with self._repo.transaction() as tx:
            master = await tx.lock_master_of_user(user.user_id, exclusive=True)
            if master is not None and master.active:
                if await tx.delete_day_off(master.id, day):
                    await tx.audit(
                        actor=principal.label(),
                        action="booking.day_off_deleted",
                        target=f"booking_master:{master.id}",
                        request_id=call_id,
                        attributes={"date": day.isoformat()},
                    )
                return
        raise await self._deny(
            principal,
            "/switchboard.booking.v1.MasterService/DeleteDayOff",
            call_id,
            _not_a_master(),
        )

    async def _check_lunch(self, tx: BookingTx, master: Master, lunch: MinuteRange) -> None:
        now = self._clock()
        horizon = now + timedelta(days=3650)
        upcoming = await tx.active_between(master.id, now, horizon)
        # A booking lies within the working hours of its start's local date (booking creation
        # checks that), so that date's lunch is the only one it can overlap.
        clashes = sum(
            1
            for item in upcoming
            if model.lunch_overlaps(
                day=model.local_date(item.start, self._tz),
                tz=self._tz,
                lunch=lunch,
                bookings=[item],
            )
        )
        if clashes:
            raise FailedPrecondition(
                "LUNCH_OVERLAPS_BOOKINGS",
                f"{clashes} upcoming booking(s) overlap that lunch break",
                domain=D,
                metadata={"count": str(clashes)},
            )

    async def set_lunch(
        self,
        principal: Principal,
        *,
        start_time: str,
        end_time: str,
        clear: bool,
        call_id: str,
    ) -> Master:
        user = _user(principal)
        lunch = None if clear else _minute_range(start_time, end_time, "lunch")
        async with self._repo.transaction() as tx:
            master = await tx.lock_master_of_user(user.user_id, exclusive=True)
            if master is not None and master.active:
                if lunch is not None:
                    await self._check_lunch(tx, master, lunch)
                await tx.update_master(
                    master.id, display_name=master.display_name, lunch=lunch, active=True
                )
                await tx.audit(
                    actor=principal.label(),
                    action="booking.lunch_set",
                    target=f"booking_master:{master.id}",
                    request_id=call_id,
                    attributes={"lunch": str(lunch) if lunch else ""},
                )
                updated = await tx.get_master(master.id)
                assert updated is not None
                return updated
        raise await self._deny(
            principal,
            "/switchboard.booking.v1.MasterService/SetLunchBreak",
            call_id,
            _not_a_master(),
        )

    # --- administration ------------------------------------------------------------------

    async def create_master(
        self,
        principal: Principal,
        *,
        user_id: UUID,
        display_name: str,
        working_hours: Sequence[WorkingHours],
        request_id: UUID | None,
        call_id: str,
    ) -> Master:
        name = display_name.strip()
        if not name:
            raise _invalid("display_name", "must not be blank")
        hours = self._working_hours(working_hours) if working_hours else DEFAULT_WORKING_HOURS
        try:
            async with self._repo.transaction() as tx:
                if request_id is not None:
                    prior = await tx.master_by_request(request_id)
                    if prior is not None:
                        if prior.user_id != user_id:
                            raise _key_reused()
                        return prior
                if not await tx.user_exists(user_id):
                    raise NotFound("USER_NOT_FOUND", "no such platform user", domain=D)
                master_id = await tx.insert_master(
                    user_id=user_id,
                    display_name=name,
                    working_hours=hours,
                    lunch=DEFAULT_LUNCH,
                    request_id=request_id,
                )
                await tx.audit(
                    actor=principal.label(),
                    action="master.created",
                    target=f"booking_master:{master_id}",
                    request_id=call_id,
                    attributes={"user_id": str(user_id)},
                )
                master = await tx.get_master(master_id)
                assert master is not None
                return master
        except RequestReplayed:
            assert request_id is not None
            async with self._repo.transaction() as tx:
                prior = await tx.master_by_request(request_id)
            if prior is None or prior.user_id != user_id:
                raise _key_reused() from None
            return prior
        except MasterExists:
            existing = await self._repo.master_of_user(user_id)
            raise AlreadyExists(
                "MASTER_EXISTS",
                "the user already has a master profile",
                domain=D,
                metadata={"master_id": str(existing.id)} if existing else {},
            ) from None

    @staticmethod
    def _working_hours(items: Sequence[WorkingHours]) -> tuple[WorkingHours, ...]:
        try:
            return model.validate_working_hours(items)
        except ValueError as exc:
            raise _invalid("working_hours", str(exc)) from None

    async def update_master(
        self, principal: Principal, master_id: UUID, change: MasterChange, call_id: str
    ) -> Master:
        if change.display_name is not None and not change.display_name.strip():
            raise _invalid("master.display_name", "must not be blank")
        hours = (
            self._working_hours(change.working_hours) if change.working_hours is not None else None
        )
        async with self._repo.transaction() as tx:
            master = await tx.lock_master(master_id, exclusive=True)
            if master is None:
                raise NotFound("MASTER_NOT_FOUND", "no master with that id", domain=D)
            lunch = master.lunch
            if change.clear_lunch:
                lunch = None
            elif change.lunch is not None:
                lunch = change.lunch
                if lunch != master.lunch:
                    await self._check_lunch(tx, master, lunch)
            await tx.update_master(
                master_id,
                display_name=(
                    change.display_name.strip()
                    if change.display_name is not None
                    else master.display_name
                ),
                lunch=lunch,
                active=change.active if change.active is not None else master.active,
            )
            if hours is not None:
                await tx.replace_working_hours(master_id, hours)
            fields = [
                name
                for name, given in (
                    ("display_name", change.display_name is not None),
                    ("working_hours", hours is not None),
                    ("lunch", change.clear_lunch or change.lunch is not None),
                    ("active", change.active is not None),
                )
                if given
            ]
            await tx.audit(
                actor=principal.label(),
                action="master.updated",
                target=f"booking_master:{master_id}",
                request_id=call_id,
                attributes={"fields": ",".join(fields)},
            )
            updated = await tx.get_master(master_id)
            assert updated is not None
            return updated

    async def update_service(
        self, principal: Principal, service_id: str, change: ServiceChange, call_id: str
    ) -> ServiceOption:
        current = await self._repo.get_service(service_id)
        if current is None:
            raise _service_not_found()
        if change.name is not None and not change.name.strip():
            raise _invalid("service.name", "must not be blank")
        if change.duration_minutes is not None and not 1 <= change.duration_minutes <= 720:
            raise _invalid("service.duration_minutes", "must be 1..720")
        fields = [
            name
            for name, value in (
                ("name", change.name),
                ("duration_minutes", change.duration_minutes),
                ("price_minor_units", change.price_minor_units),
                ("active", change.active),
            )
            if value is not None
        ]
        updated = await self._repo.update_service(
            service_id,
            name=change.name.strip() if change.name is not None else current.name,
            duration_minutes=(
                change.duration_minutes
                if change.duration_minutes is not None
                else current.duration_minutes
            ),
            price_minor_units=(
                change.price_minor_units
                if change.price_minor_units is not None
                else current.price_minor_units
            ),
            active=change.active if change.active is not None else current.active,
            actor=principal.label(),
            request_id=call_id,
            fields=fields,
        )
        if updated is None:
            raise _service_not_found()
        # This replica's availability sees the change at once.
        self._menu_time = -MENU_TTL_S
        self._menu_generation += 1
        return updated

    # --- the completion sweep ------------------------------------------------------------

    async def complete_past(self) -> int:
        done = await self._repo.complete_past()
        if done:
            COMPLETED.inc(done)
        return done

    async def run_completion(self) -> None:
        """Complete past bookings every ``completion_interval_s`` until cancelled. Every
        replica runs it; the UPDATE is idempotent, so concurrent passes do no harm."""
        while True:
            try:
                await self.complete_past()
            except Exception:
                log.warning("booking completion sweep failed", exc_info=True)
            await asyncio.sleep(self._config.completion_interval_s)


def working_hours_from(items: Sequence[tuple[int, str, str]]) -> tuple[WorkingHours, ...]:
    """Working hours from (iso_weekday, "HH:MM", "HH:MM") triples; refusals as the contract
    names them (an end not after its start: INVALID_TIME_RANGE)."""
    out: list[WorkingHours] = []
    for index, (weekday, start, end) in enumerate(items):
        field = f"working_hours[{index}]"
        if not 1 <= weekday <= 7:
            raise _invalid(f"{field}.iso_weekday", "must be 1..7")
        out.append(WorkingHours(weekday, _minute_range(start, end, field)))
    return tuple(out)


def lunch_from(start: str, end: str, field: str = "lunch") -> MinuteRange | None:
    """A lunch break from "HH:MM" texts; both empty means none."""
    if not start and not end:
        return None
    return _minute_range(start, end, field)
