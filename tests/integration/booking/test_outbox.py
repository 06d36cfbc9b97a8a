"""Notices go into the outbox in the booking's own transaction; cancelling withdraws reminders."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from switchboard.booking.v1 import booking_pb2 as pb

from server.booking.service import BookingService
from server.kernel.crypto import SecretBox
from server.notifications.model import Channel, Notice, ToUserViaBot
from server.notifications.repository import enqueue
from tests.conftest import Platform
from tests.integration.booking.booking_support import (
    Booking,
    local,
    outbox,
    ts,
    working_day,
)
from tests.support.api import Api


async def test_a_booking_queues_confirmation_notice_to_master_and_reminders(
    api: Api, platform: Platform
) -> None:
    shop = Booking(api)
    master = await shop.new_master("Марина")
    client = await shop.user("Иван")
    day = working_day()
    start = local(day, "14:00")
    booking = await shop.book(client, master.master.id, start, service_id="beard")
    rows = await outbox(platform.pg_dsn, platform.secrets.data_key, booking.id)
    when = f"{day.strftime('%d.%m.%Y')} 14:00"
    prefix = f"booking:{booking.id}"
    assert set(rows) == {
        f"{prefix}:confirmed",
        f"{prefix}:created",
        f"{prefix}:reminder:1440",
        f"{prefix}:reminder:120",
    }
    confirmed = rows[f"{prefix}:confirmed"]
    assert confirmed.template == "booking.confirmed"
    assert confirmed.bot == "booking"
    assert str(confirmed.user_id) == client.user.id
    assert confirmed.params == {"master": "Марина", "service": "Борода", "when": when}
    created = rows[f"{prefix}:created"]
    assert created.template == "booking.created"
    assert str(created.user_id) == master.session.user.id
    assert created.params == {"client": "Иван", "service": "Борода", "when": when}
    for minutes in (1440, 120):
        reminder = rows[f"{prefix}:reminder:{minutes}"]
        assert reminder.template == "booking.reminder"
        assert str(reminder.user_id) == client.user.id
        assert reminder.params == confirmed.params
        assert reminder.status == "pending"
        assert reminder.next_attempt_time == start - timedelta(minutes=minutes)

    # The client cancels: the master is told, the pending reminders are gone.
    await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=booking.id), metadata=client.metadata
    )
    rows = await outbox(platform.pg_dsn, platform.secrets.data_key, booking.id)
    assert set(rows) == {f"{prefix}:confirmed", f"{prefix}:created", f"{prefix}:cancelled"}
    cancelled = rows[f"{prefix}:cancelled"]
    assert cancelled.template == "booking.cancelled_by_client"
    assert str(cancelled.user_id) == master.session.user.id
    assert cancelled.params == {"client": "Иван", "service": "Борода", "when": when}


async def test_a_master_cancelling_tells_the_client_the_reason(
    api: Api, platform: Platform
) -> None:
    shop = Booking(api)
    master = await shop.new_master("Алексей")
    client = await shop.user("Ольга")
    day = working_day()
    booking = await shop.book(client, master.master.id, local(day, "18:00"))
    await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=booking.id, reason="Заболел"),
        metadata=master.session.metadata,
    )
    rows = await outbox(platform.pg_dsn, platform.secrets.data_key, booking.id)
    prefix = f"booking:{booking.id}"
    assert not any(":reminder:" in key for key in rows)
    cancelled = rows[f"{prefix}:cancelled"]
    assert cancelled.template == "booking.cancelled_by_master"
    assert str(cancelled.user_id) == client.user.id
    assert cancelled.params == {
        "master": "Алексей",
        "service": "Стрижка",
        "when": f"{day.strftime('%d.%m.%Y')} 18:00",
        "reason": "Заболел",
    }


async def test_reminders_already_due_are_skipped_and_manual_bookings_notify_nobody(
    api: Api, platform: Platform
) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    # Tomorrow (or the next working day) is less than 24 h away at some hour, more than 2 h.
    day = working_day(1)
    client = await shop.user()
    free = await shop.slots(client, master.master.id, day)
    start = local(day, free[0])
    booking = await shop.book(client, master.master.id, start)
    rows = await outbox(platform.pg_dsn, platform.secrets.data_key, booking.id)
    reminders = {k.rsplit(":", 1)[1] for k in rows if ":reminder:" in k}
    expected = {
        str(m)
        for m in (1440, 120)
        if start - timedelta(minutes=m) > rows[f"booking:{booking.id}:confirmed"].next_attempt_time
    }
    assert reminders == expected

    manual = await shop.masters.CreateManualBooking(
        pb.CreateManualBookingRequest(
            service_id="haircut",
            start_time=ts(local(working_day(), "10:00")),
            client_name="Без бота",
            client_phone="89001234567",
        ),
        metadata=master.session.metadata,
    )
    assert await outbox(platform.pg_dsn, platform.secrets.data_key, manual.booking.id) == {}
    await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=manual.booking.id, reason="перенос"),
        metadata=master.session.metadata,
    )
    assert await outbox(platform.pg_dsn, platform.secrets.data_key, manual.booking.id) == {}


async def test_cancelling_withdraws_reminders_scheduled_under_other_offsets(
    api: Api, platform: Platform
) -> None:
    """The reminder offsets may change between booking and cancelling (a redeploy with another
    SWITCHBOARD_BOOKING_REMINDER_OFFSETS_MINUTES): every pending reminder of the booking goes,
    not only those of the offsets configured now (1440 and 120 in configs/test.yaml)."""
    shop = Booking(api)
    master = await shop.new_master("Марина")
    client = await shop.user("Иван")
    start = local(working_day(), "11:00")
    booking = await shop.book(client, master.master.id, start)
    prefix = f"booking:{booking.id}"
    # As a server configured with a 45-minute reminder would have queued it.
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        queued = await enqueue(
            conn,
            SecretBox.from_text(platform.secrets.data_key),
            Notice(
                recipient=ToUserViaBot(uuid.UUID(client.user.id), bot="booking"),
                channel=Channel.TELEGRAM,
                template="booking.reminder",
                params={"master": "Марина", "service": "Стрижка", "when": "x"},
                dedup_key=BookingService.reminder_key(uuid.UUID(booking.id), 45),
                not_before=start - timedelta(minutes=45),
            ),
        )
        assert queued
    finally:
        await conn.close()
    rows = await outbox(platform.pg_dsn, platform.secrets.data_key, booking.id)
    assert {k for k in rows if ":reminder:" in k} == {
        f"{prefix}:reminder:1440",
        f"{prefix}:reminder:120",
        f"{prefix}:reminder:45",
    }
    await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=booking.id), metadata=client.metadata
    )
    rows = await outbox(platform.pg_dsn, platform.secrets.data_key, booking.id)
    assert set(rows) == {f"{prefix}:confirmed", f"{prefix}:created", f"{prefix}:cancelled"}
