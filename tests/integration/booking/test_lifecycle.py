"""Past bookings complete; a restarted server loses nothing; metrics count what happened."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from datetime import timedelta

import asyncpg
import grpc
import pytest
from switchboard.booking.v1 import booking_pb2 as pb

from server.devstack.embedded import free_port
from tests.conftest import Platform
from tests.integration.booking.booking_support import Booking, local, reason_of, working_day
from tests.support.api import Api
from tests.support.stack import start_server


async def test_the_sweep_completes_past_bookings_and_frees_the_client(
    api: Api, platform: Platform
) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    client = await shop.user()
    day = working_day()
    booking = await shop.book(client, master.master.id, local(day, "10:00"))
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        # Move it into the past, as time would (the exclusion constraint still holds).
        await conn.execute(
            "UPDATE booking_bookings SET start_time = start_time - interval '30 days',"
            " end_time = end_time - interval '30 days' WHERE id = $1",
            uuid.UUID(booking.id),
        )
        deadline = time.monotonic() + 10
        status = ""
        while time.monotonic() < deadline:  # configs/test.yaml: a sweep every second
            status = await conn.fetchval(
                "SELECT status FROM booking_bookings WHERE id = $1", uuid.UUID(booking.id)
            )
            if status == "completed":
                break
            await asyncio.sleep(0.2)
        assert status == "completed"
    finally:
        await conn.close()
    seen = await shop.client.GetBooking(
        pb.GetBookingRequest(booking_id=booking.id), metadata=client.metadata
    )
    assert seen.booking.status == pb.BOOKING_STATUS_COMPLETED
    profile = await shop.client.GetBookingProfile(
        pb.GetBookingProfileRequest(), metadata=client.metadata
    )
    assert not profile.HasField("active_booking")
    # Over: it cannot be cancelled any more, and the client may book again.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.client.CancelBooking(
            pb.CancelBookingRequest(booking_id=booking.id), metadata=client.metadata
        )
    assert reason_of(caught.value) == "BOOKING_NOT_ACTIVE"
    again = await shop.book(client, master.master.id, local(day, "11:00"))
    assert again.status == pb.BOOKING_STATUS_ACTIVE
    history = await shop.client.ListBookings(
        pb.ListBookingsRequest(start_date=(day - timedelta(days=60)).isoformat()),
        metadata=client.metadata,
    )
    assert [b.id for b in history.bookings] == [booking.id, again.id]


def _metric(addr: str, prefix: str) -> float:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


async def test_a_restarted_server_loses_nothing(platform: Platform) -> None:
    workdir = platform.log_path.parent
    metrics_addr = f"127.0.0.1:{free_port()}"
    env = {**platform.env, "SWITCHBOARD_METRICS_ADDR": metrics_addr}
    day = working_day()
    key = str(uuid.uuid4())
    server = start_server(env, workdir / "server-booking-1.log")
    try:
        async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
            shop = Booking(Api(channel, platform.secrets))
            master = await shop.new_master("Рестарт")
            client = await shop.user()
            booking = await shop.book(client, master.master.id, local(day, "16:00"), request_id=key)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await shop.book(await shop.user(), master.master.id, local(day, "16:00"))
            assert reason_of(caught.value) == "SLOT_TAKEN"
            assert _metric(metrics_addr, 'booking_attempts_total{reason="",result="created"}') == 1
            assert (
                _metric(
                    metrics_addr, 'booking_attempts_total{reason="SLOT_TAKEN",result="refused"}'
                )
                == 1
            )
            assert _metric(metrics_addr, "booking_availability_seconds_count") == 0
            await shop.slots(client, master.master.id, day)
            assert _metric(metrics_addr, "booking_availability_seconds_count") == 1
            # A refused call is timed too.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await shop.slots(client, str(uuid.uuid4()), day)
            assert reason_of(caught.value) == "MASTER_NOT_FOUND"
            assert _metric(metrics_addr, "booking_availability_seconds_count") == 2
    finally:
        server.terminate()

    server = start_server(env, workdir / "server-booking-2.log")
    try:
        async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
            shop = Booking(Api(channel, platform.secrets))
            # The same session, booking, schedule and request_id as before the restart.
            again = await shop.book(client, master.master.id, local(day, "16:00"), request_id=key)
            assert again == booking
            # A replay is counted as such, not as a second booking.
            assert _metric(metrics_addr, 'booking_attempts_total{reason="",result="replayed"}') == 1
            assert _metric(metrics_addr, 'booking_attempts_total{reason="",result="created"}') == 0
            assert "16:00" not in await shop.slots(client, master.master.id, day)
            schedule = await shop.client.ListBookings(
                pb.ListBookingsRequest(view=pb.BOOKING_VIEW_MASTER),
                metadata=master.session.metadata,
            )
            assert [b.id for b in schedule.bookings] == [booking.id]
            done = await shop.client.CancelBooking(
                pb.CancelBookingRequest(booking_id=booking.id, reason="закрыто"),
                metadata=master.session.metadata,
            )
            assert done.booking.cancelled_by == pb.BOOKING_ACTOR_MASTER
            assert _metric(metrics_addr, 'booking_cancellations_total{by="master"}') == 1
    finally:
        server.terminate()
