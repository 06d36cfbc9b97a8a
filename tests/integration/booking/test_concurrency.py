"""Races the database settles: one slot for 100 clients, one client for 10 slots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import grpc
from switchboard.booking.v1 import booking_pb2 as pb

from tests.integration.booking.booking_support import (
    Booking,
    local,
    reason_of,
    working_day,
)
from tests.support.api import Api, error_info


async def _attempt(coro: Awaitable[Any]) -> Any:
    """The call's answer, or its error (for gathering racing calls)."""
    try:
        return await coro
    except grpc.aio.AioRpcError as exc:
        return exc


async def test_100_clients_racing_for_one_slot_get_exactly_one_booking(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master("Гонка")
    clients = await asyncio.gather(*(shop.user(f"c{i}") for i in range(100)))
    start = local(working_day(), "11:00")
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_attempt(shop.book(c, master.master.id, start)) for c in clients)
    )
    settled = time.perf_counter() - started
    won = [r for r in results if isinstance(r, pb.Booking)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1
    assert len(lost) == 99
    for exc in lost:
        assert exc.code() == grpc.StatusCode.ALREADY_EXISTS, exc
        assert reason_of(exc) == "SLOT_TAKEN"
    assert settled < 10, settled
    # The slot is gone for everybody, and the winner's booking is the master's only one.
    assert "11:00" not in await shop.slots(clients[0], master.master.id, start.date())
    schedule = await shop.client.ListBookings(
        pb.ListBookingsRequest(view=pb.BOOKING_VIEW_MASTER), metadata=master.session.metadata
    )
    assert [b.id for b in schedule.bookings] == [won[0].id]


async def test_one_client_racing_for_ten_slots_gets_exactly_one(api: Api) -> None:
    shop = Booking(api)
    masters = await asyncio.gather(*(shop.new_master(f"m{i}") for i in range(2)))
    client = await shop.user()
    day = working_day()
    starts = [(m, local(day, f"{h}:00")) for m in masters for h in (10, 11, 12, 15, 16)]
    results = await asyncio.gather(
        *(_attempt(shop.book(client, m.master.id, s)) for m, s in starts)
    )
    won = [r for r in results if isinstance(r, pb.Booking)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1
    assert len(lost) == 9
    for exc in lost:
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc
        info = error_info(exc)
        assert info.reason == "ACTIVE_BOOKING_EXISTS"
        assert info.metadata["booking_id"] == won[0].id
    mine = await shop.client.ListBookings(pb.ListBookingsRequest(), metadata=client.metadata)
    assert [b.id for b in mine.bookings] == [won[0].id]
    profile = await shop.client.GetBookingProfile(
        pb.GetBookingProfileRequest(), metadata=client.metadata
    )
    assert profile.active_booking.id == won[0].id
    assert not profile.HasField("master")
    assert profile.time_zone == "Europe/Moscow"


async def test_a_cancelled_slot_can_be_booked_again_by_anyone(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    first, second = await asyncio.gather(shop.user(), shop.user())
    start = local(working_day(), "17:00")
    booking = await shop.book(first, master.master.id, start)
    await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=booking.id), metadata=first.metadata
    )
    again = await shop.book(second, master.master.id, start)
    assert again.id != booking.id
    # And the first client may book another slot: the cancelled booking no longer counts.
    other = await shop.book(first, master.master.id, local(start.date(), "18:00"))
    assert other.status == pb.BOOKING_STATUS_ACTIVE


async def test_a_day_off_racing_bookings_never_lets_both_through(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    md = master.session.metadata
    days = sorted({working_day(3 + i) for i in range(12)})[:8]
    clients = await asyncio.gather(*(shop.user() for _ in days))
    outcomes = await asyncio.gather(
        *(
            _attempt(shop.masters.SetDayOff(pb.SetDayOffRequest(date=day.isoformat()), metadata=md))
            for day in days
        ),
        *(
            _attempt(shop.book(c, master.master.id, local(day, "12:00")))
            for c, day in zip(clients, days, strict=True)
        ),
    )
    offs, books = outcomes[: len(days)], outcomes[len(days) :]
    for day, off, booked in zip(days, offs, books, strict=True):
        # Exactly one of the two went through; the other names the first as its reason.
        if isinstance(booked, pb.Booking):
            assert isinstance(off, grpc.aio.AioRpcError), day
            assert reason_of(off) == "DAY_HAS_BOOKINGS"
        else:
            assert isinstance(off, pb.SetDayOffResponse), (day, booked)
            assert reason_of(booked) == "SLOT_UNAVAILABLE"
