"""Booking's SQL, explicit, over asyncpg.

The invariants live in the database (migrations/versions/0005_booking.py): an exclusion
constraint keeps one master's non-cancelled bookings from overlapping, and a partial unique
index keeps a client to one active booking. Writers never check-then-insert: they insert and
map the constraint that fired (:class:`SlotTaken`, :class:`ActiveBookingExists`,
:class:`RequestReplayed`).

Multi-statement use cases run in a :class:`BookingTx` (``BookingRepository.transaction()``):
booking creation takes the master row ``FOR SHARE``, schedule edits take it ``FOR UPDATE``,
so a day off or a lunch change never interleaves with a booking being checked and inserted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import TypeAlias
from uuid import UUID

import asyncpg

from server.booking.model import (
    Actor,
    Booking,
    BookingSource,
    BookingStatus,
    DayOff,
    Interval,
    Master,
    MinuteRange,
    ServiceOption,
    WorkingHours,
)
from server.kernel.audit import insert_audit_event

# A connection (inside a transaction) or the pool (a statement on its own).
Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool

_MASTER_COLUMNS = (
    "m.id, m.user_id, m.display_name, m.lunch_start_minute, m.lunch_end_minute, m.active,"
    " m.create_time,"
    " ARRAY(SELECT ARRAY[w.iso_weekday, w.start_minute, w.end_minute]"
    "       FROM booking_working_hours w WHERE w.master_id = m.id"
    "       ORDER BY w.iso_weekday) AS hours"
)
_SERVICE_COLUMNS = (
    "s.id, s.name, s.duration_minutes, s.price_minor_units, s.currency_code, s.active, s.position"
)
_BOOKING_COLUMNS = (
    "b.id, b.master_id, m.display_name AS master_display_name, b.service_id,"
    " s.name AS service_name, b.start_time, b.end_time, b.status, b.source, b.client_user_id,"
    " b.client_name, b.client_phone, b.price_minor_units, b.currency_code, b.create_time,"
    " b.cancel_time, b.cancelled_by, b.cancel_reason, b.created_by, b.request_id, m.user_id"
    " AS master_user_id, m.active AS master_active"
)
_BOOKING_FROM = (
    " FROM booking_bookings b JOIN booking_masters m ON m.id = b.master_id"
    " JOIN booking_services s ON s.id = b.service_id"
)
_ONE_ACTIVE_INDEX = "booking_bookings_one_active"


class SlotTaken(Exception):
    """Another non-cancelled booking of the master overlaps (the exclusion constraint)."""


class ActiveBookingExists(Exception):
    """The client already has an active booking (the partial unique index)."""


class RequestReplayed(Exception):
    """The (created_by, request_id) pair is already taken (a racing retry)."""


class MasterExists(Exception):
    """The user already has a master profile."""


def _hours(raw: Sequence[Sequence[int]]) -> tuple[WorkingHours, ...]:
    return tuple(WorkingHours(int(d), MinuteRange(int(s), int(e))) for d, s, e in raw)


def _master(row: asyncpg.Record) -> Master:
    lunch_start, lunch_end = row["lunch_start_minute"], row["lunch_end_minute"]
    return Master(
        id=row["id"],
        user_id=row["user_id"],
        display_name=row["display_name"],
        working_hours=_hours(row["hours"] or ()),
        lunch=MinuteRange(lunch_start, lunch_end) if lunch_start is not None else None,
        active=row["active"],
        create_time=row["create_time"],
    )


def _service(row: asyncpg.Record) -> ServiceOption:
    return ServiceOption(
        id=row["id"],
        name=row["name"],
        duration_minutes=row["duration_minutes"],
        price_minor_units=row["price_minor_units"],
        currency_code=row["currency_code"],
        active=row["active"],
        position=row["position"],
    )


class StoredBooking:
    """A booking plus what only the service needs: who made it, with which request_id, the
    master's user id (the notices' recipient) and whether the master profile is active (both
    for the master-side authorization: a deactivated master sees and cancels nothing)."""

    __slots__ = ("booking", "created_by", "master_active", "master_user_id", "request_id")

    def __init__(
        self,
        booking: Booking,
        created_by: UUID,
        request_id: UUID | None,
        master_user_id: UUID,
        master_active: bool,
    ) -> None:
        self.booking = booking
        self.created_by = created_by
        self.request_id = request_id
        self.master_user_id = master_user_id
        self.master_active = master_active


def _booking(row: asyncpg.Record) -> StoredBooking:
    cancelled_by = row["cancelled_by"]
    booking = Booking(
        id=row["id"],
        master_id=row["master_id"],
        master_display_name=row["master_display_name"],
        service_id=row["service_id"],
        service_name=row["service_name"],
        start=row["start_time"],
        end=row["end_time"],
        status=BookingStatus(row["status"]),
        source=BookingSource(row["source"]),
        client_user_id=row["client_user_id"],
        client_name=row["client_name"],
        client_phone=row["client_phone"],
        price_minor_units=row["price_minor_units"],
        currency_code=row["currency_code"],
        create_time=row["create_time"],
        cancel_time=row["cancel_time"],
        cancelled_by=Actor(cancelled_by) if cancelled_by is not None else None,
        cancel_reason=row["cancel_reason"],
    )
    return StoredBooking(
        booking, row["created_by"], row["request_id"], row["master_user_id"], row["master_active"]
    )


class _Statements:
    """The statements that run both inside a transaction (:class:`BookingTx`, on its
    connection) and on their own (:class:`BookingRepository`, on the pool): one query each."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def get_master(self, master_id: UUID) -> Master | None:
        row = await self._db.fetchrow(
            f"SELECT {_MASTER_COLUMNS} FROM booking_masters m WHERE m.id = $1", master_id
        )
        return _master(row) if row is not None else None

    async def get_service(self, service_id: str) -> ServiceOption | None:
        row = await self._db.fetchrow(
            f"SELECT {_SERVICE_COLUMNS} FROM booking_services s WHERE s.id = $1", service_id
        )
        return _service(row) if row is not None else None

    async def get_booking(self, booking_id: UUID) -> StoredBooking | None:
        row = await self._db.fetchrow(
            f"SELECT {_BOOKING_COLUMNS} {_BOOKING_FROM} WHERE b.id = $1", booking_id
        )
        return _booking(row) if row is not None else None

    async def active_booking_of(self, client_user_id: UUID) -> StoredBooking | None:
        row = await self._db.fetchrow(
            f"SELECT {_BOOKING_COLUMNS} {_BOOKING_FROM}"
            " WHERE b.client_user_id = $1 AND b.status = 'active' AND b.end_time > now()",
            client_user_id,
        )
        return _booking(row) if row is not None else None

    async def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        request_id: str,
        attributes: dict[str, str] | None = None,
    ) -> None:
        """An audit event: in the transaction (BookingTx), or on its own (a refusal, when
        nothing else is committed: BookingRepository)."""
        await insert_audit_event(
            self._db,
            actor=actor,
            action=action,
            target=target,
            request_id=request_id,
            attributes=attributes,
        )


class BookingTx(_Statements):
    """One transaction's statements (see the module docstring for the locking rules)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        self.conn = conn

    # --- masters ---------------------------------------------------------------------------

    async def lock_master(self, master_id: UUID, *, exclusive: bool) -> Master | None:
        mode = "UPDATE" if exclusive else "SHARE"
        row = await self.conn.fetchrow(
            f"SELECT {_MASTER_COLUMNS} FROM booking_masters m WHERE m.id = $1 FOR {mode}",
            master_id,
        )
        return _master(row) if row is not None else None

    async def lock_master_of_user(self, user_id: UUID, *, exclusive: bool) -> Master | None:
        mode = "UPDATE" if exclusive else "SHARE"
        row = await self.conn.fetchrow(
            f"SELECT {_MASTER_COLUMNS} FROM booking_masters m WHERE m.user_id = $1 FOR {mode}",
            user_id,
        )
        return _master(row) if row is not None else None

    async def master_by_request(self, request_id: UUID) -> Master | None:
        row = await self.conn.fetchrow(
            f"SELECT {_MASTER_COLUMNS} FROM booking_masters m WHERE m.create_request_id = $1",
            request_id,
        )
        return _master(row) if row is not None else None

    async def user_exists(self, user_id: UUID) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM identity_users"
                " WHERE id = $1 AND delete_time IS NULL)",
                user_id,
            )
        )

    async def insert_master(
        self,
        *,
        user_id: UUID,
        display_name: str,
        working_hours: Sequence[WorkingHours],
        lunch: MinuteRange | None,
        request_id: UUID | None,
    ) -> UUID:
        try:
            async with self.conn.transaction():  # a savepoint: the caller may go on
                master_id: UUID = await self.conn.fetchval(
                    "INSERT INTO booking_masters (user_id, display_name, lunch_start_minute,"
                    " lunch_end_minute, create_request_id) VALUES ($1, $2, $3, $4, $5)"
                    " RETURNING id",
                    user_id,
                    display_name,
                    lunch.start if lunch else None,
                    lunch.end if lunch else None,
                    request_id,
                )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "booking_masters_create_request_id_key":
                raise RequestReplayed from None
            raise MasterExists from None
        await self.replace_working_hours(master_id, working_hours)
        return master_id

    async def replace_working_hours(
        self, master_id: UUID, working_hours: Sequence[WorkingHours]
    ) -> None:
        await self.conn.execute("DELETE FROM booking_working_hours WHERE master_id = $1", master_id)
        await self.conn.executemany(
            "INSERT INTO booking_working_hours (master_id, iso_weekday, start_minute, end_minute)"
            " VALUES ($1, $2, $3, $4)",
            [(master_id, w.iso_weekday, w.hours.start, w.hours.end) for w in working_hours],
        )

    async def update_master(
        self,
        master_id: UUID,
        *,
        display_name: str,
        lunch: MinuteRange | None,
        active: bool,
    ) -> None:
        await self.conn.execute(
            "UPDATE booking_masters SET display_name = $2, lunch_start_minute = $3,"
            " lunch_end_minute = $4, active = $5, update_time = now() WHERE id = $1",
            master_id,
            display_name,
            lunch.start if lunch else None,
            lunch.end if lunch else None,
            active,
        )

    # --- days off ----------------------------------------------------------------------------

    async def days_off_between(self, master_id: UUID, first: date, last: date) -> set[date]:
        rows = await self.conn.fetch(
            "SELECT day FROM booking_days_off WHERE master_id = $1 AND day BETWEEN $2 AND $3",
            master_id,
            first,
            last,
        )
        return {row["day"] for row in rows}

    async def upsert_day_off(self, master_id: UUID, day: date, note: str) -> DayOff:
        row = await self.conn.fetchrow(
            "INSERT INTO booking_days_off (master_id, day, note) VALUES ($1, $2, $3)"
            " ON CONFLICT (master_id, day) DO UPDATE SET note = EXCLUDED.note"
            " RETURNING day, note",
            master_id,
            day,
            note,
        )
        assert row is not None
        return DayOff(row["day"], row["note"])

    async def delete_day_off(self, master_id: UUID, day: date) -> bool:
        deleted = await self.conn.fetchval(
            "DELETE FROM booking_days_off WHERE master_id = $1 AND day = $2 RETURNING true",
            master_id,
            day,
        )
        return bool(deleted)

    # --- bookings ----------------------------------------------------------------------------

    async def busy_between(self, master_id: UUID, start: datetime, end: datetime) -> list[Interval]:
        """Non-cancelled bookings of the master overlapping [start, end)."""
        rows = await self.conn.fetch(
            "SELECT start_time, end_time FROM booking_bookings"
            " WHERE master_id = $1 AND status <> 'cancelled'"
            "   AND start_time < $3 AND end_time > $2",
            master_id,
            start,
            end,
        )
        return [Interval(row[0], row[1]) for row in rows]

    async def active_between(
        self, master_id: UUID, start: datetime, end: datetime
    ) -> list[Interval]:
        """Active bookings of the master overlapping [start, end)."""
        rows = await self.conn.fetch(
            "SELECT start_time, end_time FROM booking_bookings"
            " WHERE master_id = $1 AND status = 'active'"
            "   AND start_time < $3 AND end_time > $2 ORDER BY start_time",
            master_id,
            start,
            end,
        )
        return [Interval(row[0], row[1]) for row in rows]

    async def booking_by_request(self, created_by: UUID, request_id: UUID) -> StoredBooking | None:
        row = await self.conn.fetchrow(
            f"SELECT {_BOOKING_COLUMNS} {_BOOKING_FROM}"
            " WHERE b.created_by = $1 AND b.request_id = $2",
            created_by,
            request_id,
        )
        return _booking(row) if row is not None else None

    async def lock_booking(self, booking_id: UUID) -> StoredBooking | None:
        """The booking (with its master and service), its row locked ``FOR UPDATE``."""
        row = await self.conn.fetchrow(
            f"SELECT {_BOOKING_COLUMNS} {_BOOKING_FROM} WHERE b.id = $1 FOR UPDATE OF b",
            booking_id,
        )
        return _booking(row) if row is not None else None

    async def complete_past_of_client(self, client_user_id: UUID) -> int:
        """Complete the client's active bookings that are over (before inserting a new one)."""
        result: str = await self.conn.execute(
            "UPDATE booking_bookings SET status = 'completed'"
            " WHERE client_user_id = $1 AND status = 'active' AND end_time <= now()",
            client_user_id,
        )
        return int(result.rsplit(" ", 1)[-1])

    async def insert_booking(
        self,
        *,
        master_id: UUID,
        service: ServiceOption,
        start: datetime,
        end: datetime,
        source: BookingSource,
        client_user_id: UUID | None,
        client_name: str | None,
        client_phone: str | None,
        created_by: UUID,
        request_id: UUID | None,
    ) -> UUID:
        """Insert, mapping the constraint that refuses it. ``client_name`` None: the client's
        display name. Runs in a savepoint, so the transaction stays usable after a refusal."""
        try:
            async with self.conn.transaction():
                booking_id: UUID = await self.conn.fetchval(
                    "INSERT INTO booking_bookings (master_id, service_id, start_time, end_time,"
                    " source, client_user_id, client_name, client_phone, price_minor_units,"
                    " currency_code, created_by, request_id)"
                    " VALUES ($1, $2, $3, $4, $5, $6,"
                    "   COALESCE($7, (SELECT left(COALESCE(NULLIF(display_name, ''), username),"
                    "                  100) FROM identity_users WHERE id = $6), ''),"
                    "   $8, $9, $10, $11, $12)"
                    " RETURNING id",
                    master_id,
                    service.id,
                    start,
                    end,
                    source.value,
                    client_user_id,
                    client_name,
                    client_phone,
                    service.price_minor_units,
                    service.currency_code,
                    created_by,
                    request_id,
                )
        except asyncpg.ExclusionViolationError:
            raise SlotTaken from None
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == _ONE_ACTIVE_INDEX:
                raise ActiveBookingExists from None
            raise RequestReplayed from None
        return booking_id

    async def cancel_booking(self, booking_id: UUID, by: Actor, reason: str) -> datetime:
        """Mark the (locked) booking cancelled; returns its cancel time."""
        cancel_time: datetime = await self.conn.fetchval(
            "UPDATE booking_bookings SET status = 'cancelled', cancel_time = now(),"
            " cancelled_by = $2, cancel_reason = $3 WHERE id = $1 RETURNING cancel_time",
            booking_id,
            by.value,
            reason,
        )
        return cancel_time


class BookingRepository(_Statements):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[BookingTx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield BookingTx(conn)

    # --- masters -----------------------------------------------------------------------------

    async def is_active_master(self, user_id: UUID) -> bool:
        """The "booking.master" role: one probe of the partial index on active masters."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM booking_masters WHERE user_id = $1 AND active)",
                user_id,
            )
        )

    async def master_of_user(self, user_id: UUID) -> Master | None:
        row = await self._pool.fetchrow(
            f"SELECT {_MASTER_COLUMNS} FROM booking_masters m WHERE m.user_id = $1", user_id
        )
        return _master(row) if row is not None else None

    async def list_masters(
        self, after: tuple[str, UUID] | None, limit: int, *, active_only: bool
    ) -> list[Master]:
        rows = await self._pool.fetch(
            f"SELECT {_MASTER_COLUMNS} FROM booking_masters m"
            " WHERE ($1::text IS NULL OR (m.display_name, m.id) > ($1, $2::uuid))"
            "   AND (NOT $3 OR m.active)"
            " ORDER BY m.display_name, m.id LIMIT $4",
            after[0] if after else None,
            after[1] if after else None,
            active_only,
            limit,
        )
        return [_master(r) for r in rows]

    # --- services ----------------------------------------------------------------------------

    async def list_services(
        self, after: tuple[int, str] | None, limit: int, *, active_only: bool
    ) -> list[ServiceOption]:
        rows = await self._pool.fetch(
            f"SELECT {_SERVICE_COLUMNS} FROM booking_services s"
            " WHERE ($1::integer IS NULL OR (s.position, s.id) > ($1, $2::text))"
            "   AND (NOT $3 OR s.active)"
            " ORDER BY s.position, s.id LIMIT $4",
            after[0] if after else None,
            after[1] if after else None,
            active_only,
            limit,
        )
        return [_service(r) for r in rows]

    async def update_service(
        self,
        service_id: str,
        *,
        name: str,
        duration_minutes: int,
        price_minor_units: int,
        active: bool,
        actor: str,
        request_id: str,
        fields: Sequence[str],
    ) -> ServiceOption | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE booking_services s SET name = $2, duration_minutes = $3,"
                " price_minor_units = $4, active = $5 WHERE s.id = $1"
                f" RETURNING {_SERVICE_COLUMNS}",
                service_id,
                name,
                duration_minutes,
                price_minor_units,
                active,
            )
            if row is None:
                return None
            await insert_audit_event(
                conn,
                actor=actor,
                action="booking.service_updated",
                target=f"booking_service:{service_id}",
                request_id=request_id,
                attributes={"fields": ",".join(fields)},
            )
            return _service(row)

    # --- availability and listings -----------------------------------------------------------

    async def schedule(
        self, master_id: UUID, first: date, last: date, start: datetime, end: datetime
    ) -> tuple[Master | None, set[date], list[Interval]]:
        """What availability needs, in one statement: the master, its days off between the
        local dates first..last, and its non-cancelled bookings overlapping [start, end)."""
        row = await self._pool.fetchrow(
            f"SELECT {_MASTER_COLUMNS},"
            " ARRAY(SELECT d.day FROM booking_days_off d"
            "       WHERE d.master_id = m.id AND d.day BETWEEN $2 AND $3) AS days_off,"
            " ARRAY(SELECT tstzrange(b.start_time, b.end_time) FROM booking_bookings b"
            "       WHERE b.master_id = m.id AND b.status <> 'cancelled'"
            "         AND b.start_time < $5 AND b.end_time > $4) AS busy"
            " FROM booking_masters m WHERE m.id = $1",
            master_id,
            first,
            last,
            start,
            end,
        )
        if row is None:
            return None, set(), []
        return (
            _master(row),
            set(row["days_off"]),
            [Interval(r.lower, r.upper) for r in row["busy"]],
        )

    async def list_bookings(
        self,
        *,
        client_user_id: UUID | None,
        master_id: UUID | None,
        start: datetime,
        end: datetime | None,
        include_cancelled: bool,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[StoredBooking]:
        """Bookings of a client or of a master starting in [start, end), by start time."""
        rows = await self._pool.fetch(
            f"SELECT {_BOOKING_COLUMNS} {_BOOKING_FROM}"
            " WHERE ($1::uuid IS NULL OR b.client_user_id = $1)"
            "   AND ($2::uuid IS NULL OR b.master_id = $2)"
            "   AND b.start_time >= $3 AND ($4::timestamptz IS NULL OR b.start_time < $4)"
            "   AND ($5 OR b.status <> 'cancelled')"
            "   AND ($6::timestamptz IS NULL OR (b.start_time, b.id) > ($6, $7::uuid))"
            " ORDER BY b.start_time, b.id LIMIT $8",
            client_user_id,
            master_id,
            start,
            end,
            include_cancelled,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [_booking(r) for r in rows]

    async def list_days_off(
        self, master_id: UUID, first: date, after: date | None, limit: int
    ) -> list[DayOff]:
        rows = await self._pool.fetch(
            "SELECT day, note FROM booking_days_off"
            " WHERE master_id = $1 AND day >= $2 AND ($3::date IS NULL OR day > $3)"
            " ORDER BY day LIMIT $4",
            master_id,
            first,
            after,
            limit,
        )
        return [DayOff(row["day"], row["note"]) for row in rows]

    # --- the completion sweep ----------------------------------------------------------------

    async def complete_past(self) -> int:
        """Mark every active booking whose end has passed as completed."""
        result: str = await self._pool.execute(
            "UPDATE booking_bookings SET status = 'completed'"
            " WHERE status = 'active' AND end_time <= now()"
        )
        return int(result.rsplit(" ", 1)[-1])
