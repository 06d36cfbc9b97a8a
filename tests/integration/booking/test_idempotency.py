"""request_id: a retry gets the first result; the same key for another request is refused."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from switchboard.booking.v1 import booking_pb2 as pb

from tests.integration.booking.booking_support import Booking, local, reason_of, ts, working_day
from tests.support.api import Api


async def test_a_repeated_request_id_returns_the_first_booking(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    client = await shop.user()
    day = working_day()
    key = str(uuid.uuid4())
    first = await shop.book(client, master.master.id, local(day, "12:00"), request_id=key)
    again = await shop.book(client, master.master.id, local(day, "12:00"), request_id=key)
    assert again == first
    # Ten concurrent retries of one more request: one booking, the same answer for all.
    other_client = await shop.user()
    key2 = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(
            shop.book(other_client, master.master.id, local(day, "15:00"), request_id=key2)
            for _ in range(10)
        )
    )
    assert len({a.id for a in answers}) == 1
    schedule = await shop.client.ListBookings(
        pb.ListBookingsRequest(view=pb.BOOKING_VIEW_MASTER), metadata=master.session.metadata
    )
    assert sorted(b.id for b in schedule.bookings) == sorted([first.id, answers[0].id])


@pytest.mark.parametrize(
    ("hhmm", "service"), [("16:00", "haircut"), ("12:00", "beard")], ids=["start", "service"]
)
async def test_the_same_request_id_for_another_booking_is_refused(
    api: Api, hhmm: str, service: str
) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    client = await shop.user()
    day = working_day()
    key = str(uuid.uuid4())
    await shop.book(client, master.master.id, local(day, "12:00"), request_id=key)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.book(
            client, master.master.id, local(day, hhmm), service_id=service, request_id=key
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "IDEMPOTENCY_KEY_REUSED"


async def test_another_clients_request_id_is_theirs_alone(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    a, b = await shop.user(), await shop.user()
    day = working_day()
    key = str(uuid.uuid4())
    mine = await shop.book(a, master.master.id, local(day, "10:00"), request_id=key)
    theirs = await shop.book(b, master.master.id, local(day, "11:00"), request_id=key)
    assert mine.id != theirs.id


async def test_manual_booking_and_create_master_are_retry_safe(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    day = working_day()
    request = pb.CreateManualBookingRequest(
        service_id="beard",
        start_time=ts(local(day, "10:15")),
        client_name="Иван",
        client_phone="+7 900 000-00-00",
        request_id=str(uuid.uuid4()),
    )
    first = await shop.masters.CreateManualBooking(request, metadata=master.session.metadata)
    again = await shop.masters.CreateManualBooking(request, metadata=master.session.metadata)
    assert first.booking == again.booking
    assert first.booking.source == pb.BOOKING_SOURCE_MANUAL
    request.start_time.CopyFrom(ts(local(day, "16:00")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.masters.CreateManualBooking(request, metadata=master.session.metadata)
    assert reason_of(caught.value) == "IDEMPOTENCY_KEY_REUSED"

    user = await shop.user("Будущий мастер")
    boss = await shop.boss()
    create = pb.CreateMasterRequest(
        user_id=user.user.id, display_name="Новый", request_id=str(uuid.uuid4())
    )
    one = await shop.admin.CreateMaster(create, metadata=boss.metadata)
    two = await shop.admin.CreateMaster(create, metadata=boss.metadata)
    assert one.master == two.master
    create.request_id = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.admin.CreateMaster(create, metadata=boss.metadata)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(caught.value) == "MASTER_EXISTS"
