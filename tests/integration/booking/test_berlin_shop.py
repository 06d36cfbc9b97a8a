"""A shop in Europe/Berlin, on a server of its own whose completion sweep never runs during
the tests (SWITCHBOARD_BOOKING_COMPLETION_INTERVAL_S=3600: it ran once, at start).

- Daylight saving: availability on the next spring-forward and fall-back days lists the right
  UTC instants (23 and 25 one-hour slots for a master working around the clock), and such
  slots can be booked.
- "One active booking" completes the client's own past booking in the inserting transaction,
  without the sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from switchboard.booking.v1 import booking_pb2 as pb

from tests.conftest import Platform, connect, serve
from tests.integration.booking.booking_support import Booking, MasterUser, ts
from tests.support.api import Session
from tests.support.stack import Infra, Secrets

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def berlin(stack_infra: Infra, secrets: Secrets, workdir: Path) -> Iterator[Platform]:
    env = {
        "SWITCHBOARD_BOOKING_TIME_ZONE": "Europe/Berlin",
        "SWITCHBOARD_BOOKING_COMPLETION_INTERVAL_S": "3600",
    }
    with serve(
        stack_infra, secrets, workdir, "switchboard_booking_berlin", logs="-booking-berlin", env=env
    ) as running:
        yield running


@pytest.fixture
async def shop(berlin: Platform) -> AsyncIterator[Booking]:
    async with connect(berlin) as api:
        yield Booking(api)


def _midnight(day: date) -> datetime:
    """Local midnight of ``day`` in Berlin, as a UTC instant."""
    return datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)


def _next_transitions() -> tuple[date, date]:
    """The next local dates on which Berlin springs forward (a 23-hour day) and falls back
    (a 25-hour day), both at least two days ahead."""
    spring: date | None = None
    fall: date | None = None
    day = datetime.now(BERLIN).date() + timedelta(days=2)
    while spring is None or fall is None:
        length = _midnight(day + timedelta(days=1)) - _midnight(day)
        if length == 23 * HOUR and spring is None:
            spring = day
        elif length == 25 * HOUR and fall is None:
            fall = day
        day += timedelta(days=1)
    return spring, fall


async def _round_the_clock_master(shop: Booking) -> MasterUser:
    master = await shop.new_master(
        "Круглосуточно",
        working_hours=[
            pb.WorkingHours(iso_weekday=d, start_time="00:00", end_time="24:00")
            for d in range(1, 8)
        ],
    )
    await shop.masters.SetLunchBreak(
        pb.SetLunchBreakRequest(clear=True), metadata=master.session.metadata
    )
    return master


async def _day(shop: Booking, who: Session, master_id: str, day: date) -> pb.AvailableDay:
    response = await shop.client.GetAvailability(
        pb.GetAvailabilityRequest(master_id=master_id, start_date=day.isoformat()),
        metadata=who.metadata,
    )
    assert response.time_zone == "Europe/Berlin"
    assert len(response.days) == 1
    return response.days[0]


def _instants(day: pb.AvailableDay) -> list[datetime]:
    return [slot.start_time.ToDatetime(tzinfo=UTC) for slot in day.slots]


async def test_availability_and_booking_on_daylight_saving_days(shop: Booking) -> None:
    spring, fall = _next_transitions()
    master = await _round_the_clock_master(shop)
    client = await shop.user()
    for day, count in ((spring, 23), (fall, 25)):
        got = await _day(shop, client, master.master.id, day)
        starts = _instants(got)
        # Every real hour of the local day, back to back in UTC, from local midnight.
        assert starts == [_midnight(day) + k * HOUR for k in range(count)], day
        assert [s.end_time.ToDatetime(tzinfo=UTC) for s in got.slots] == [
            start + HOUR for start in starts
        ]
        assert [s.local_time for s in got.slots] == [
            start.astimezone(BERLIN).strftime("%H:%M") for start in starts
        ]
    spring_day = await _day(shop, client, master.master.id, spring)
    labels = [s.local_time for s in spring_day.slots]
    assert "02:00" not in labels  # the hour that does not exist
    assert labels[2] == "03:00"
    assert _instants(spring_day)[2] == _midnight(spring) + 2 * HOUR
    fall_day = await _day(shop, client, master.master.id, fall)
    labels = [s.local_time for s in fall_day.slots]
    assert labels.count("02:00") == 2  # the repeated hour, once per occurrence
    first, second = (i for i, label in enumerate(labels) if label == "02:00")
    assert second == first + 1
    second_two = _instants(fall_day)[second]
    assert second_two.astimezone(BERLIN).fold == 1

    # Both special slots can be booked (two clients: one active booking each).
    after_gap = await shop.book(client, master.master.id, _midnight(spring) + 2 * HOUR)
    assert after_gap.start_time == ts(_midnight(spring) + 2 * HOUR)
    assert after_gap.end_time == ts(_midnight(spring) + 3 * HOUR)
    other = await shop.user()
    repeated = await shop.book(other, master.master.id, second_two)
    assert repeated.start_time == ts(second_two)
    assert repeated.end_time == ts(second_two + HOUR)
    spring_after = await _day(shop, client, master.master.id, spring)
    assert len(spring_after.slots) == 22
    assert _midnight(spring) + 2 * HOUR not in _instants(spring_after)
    fall_after = await _day(shop, client, master.master.id, fall)
    assert len(fall_after.slots) == 24
    assert second_two not in _instants(fall_after)
    assert [s.local_time for s in fall_after.slots].count("02:00") == 1


async def test_a_new_booking_completes_the_clients_past_one_without_the_sweep(
    shop: Booking, berlin: Platform
) -> None:
    master = await _round_the_clock_master(shop)
    client, control = await shop.user(), await shop.user()
    conn = await asyncpg.connect(berlin.pg_dsn)
    try:
        past: dict[str, uuid.UUID] = {}
        for who, days_ago in ((client, 3), (control, 4)):
            # An active booking that is over: as time leaves one behind between two sweeps.
            past[who.user.id] = await conn.fetchval(
                "INSERT INTO booking_bookings (master_id, service_id, start_time, end_time,"
                " source, client_user_id, client_name, price_minor_units, currency_code,"
                " created_by)"
                " VALUES ($1, 'haircut', $2, $3, 'client', $4, 'Прошлый', 150000, 'RUB', $4)"
                " RETURNING id",
                uuid.UUID(master.master.id),
                datetime.now(UTC) - timedelta(days=days_ago),
                datetime.now(UTC) - timedelta(days=days_ago) + HOUR,
                uuid.UUID(who.user.id),
            )
        day = datetime.now(BERLIN).date() + timedelta(days=2)
        start = _midnight(day) + 10 * HOUR
        booking = await shop.book(client, master.master.id, start)
        assert booking.status == pb.BOOKING_STATUS_ACTIVE
        rows = await conn.fetch(
            "SELECT id, status FROM booking_bookings WHERE id = ANY($1::uuid[])",
            list(past.values()),
        )
        statuses = {row["id"]: row["status"] for row in rows}
        # The client's own past booking was completed by the booking transaction; the sweep
        # did not run (the control client's past booking is still active).
        assert statuses == {past[client.user.id]: "completed", past[control.user.id]: "active"}
    finally:
        await conn.close()
    profile = await shop.client.GetBookingProfile(
        pb.GetBookingProfileRequest(), metadata=client.metadata
    )
    assert profile.active_booking.id == booking.id
