"""Refusals with their contract reasons: cancelling, slots, days off, lunch, manual bookings."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from switchboard.booking.v1 import booking_pb2 as pb

from tests.conftest import Platform
from tests.integration.booking.booking_support import (
    TZ,
    Booking,
    audit,
    local,
    reason_of,
    ts,
    working_day,
)
from tests.support.api import Api, error_info, field_violations


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_cancel_rules(api: Api, platform: Platform) -> None:
    shop = Booking(api)
    master, other_master = await shop.new_master("Свой"), await shop.new_master("Чужой")
    client, stranger = await shop.user(), await shop.user()
    day = working_day()
    booking = await shop.book(client, master.master.id, local(day, "10:00"))
    cancel = shop.client.CancelBooking

    # A master cancels only with a reason.
    exc = await _refused(
        cancel(pb.CancelBookingRequest(booking_id=booking.id), metadata=master.session.metadata)
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(exc) == "CANCEL_REASON_REQUIRED"
    exc = await _refused(
        cancel(
            pb.CancelBookingRequest(booking_id=booking.id, reason="   "),
            metadata=master.session.metadata,
        )
    )
    assert reason_of(exc) == "CANCEL_REASON_REQUIRED"

    # Another master, and another client, may not touch it (and are audited).
    for who in (other_master.session, stranger):
        exc = await _refused(
            cancel(
                pb.CancelBookingRequest(booking_id=booking.id, reason="x"), metadata=who.metadata
            )
        )
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(exc) == "NOT_YOUR_BOOKING"
        exc = await _refused(
            shop.client.GetBooking(
                pb.GetBookingRequest(booking_id=booking.id), metadata=who.metadata
            )
        )
        assert reason_of(exc) == "NOT_YOUR_BOOKING"
    events = await audit(platform.pg_dsn, f"booking:{booking.id}")
    denied = [(actor, attrs) for actor, action, attrs in events if action == "access.denied"]
    assert [a for a, _ in denied] == [
        f"user:{other_master.session.user.id}",
        f"user:{other_master.session.user.id}",
        f"user:{stranger.user.id}",
        f"user:{stranger.user.id}",
    ]
    assert all(attrs["reason"] == "NOT_YOUR_BOOKING" for _, attrs in denied)
    exc = await _refused(
        cancel(pb.CancelBookingRequest(booking_id=str(uuid.uuid4())), metadata=client.metadata)
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(exc) == "BOOKING_NOT_FOUND"

    # Its master cancels with a reason; again is a no-op returning it unchanged.
    done = await cancel(
        pb.CancelBookingRequest(booking_id=booking.id, reason=" Заболел "),
        metadata=master.session.metadata,
    )
    assert done.booking.status == pb.BOOKING_STATUS_CANCELLED
    assert done.booking.cancelled_by == pb.BOOKING_ACTOR_MASTER
    assert done.booking.cancel_reason == "Заболел"
    again = await cancel(
        pb.CancelBookingRequest(booking_id=booking.id, reason="другое"), metadata=client.metadata
    )
    assert again.booking == done.booking
    seen = await shop.client.GetBooking(
        pb.GetBookingRequest(booking_id=booking.id), metadata=client.metadata
    )
    assert seen.booking.cancel_reason == "Заболел"
    actions = [
        (action, attrs)
        for _, action, attrs in await audit(platform.pg_dsn, f"booking:{booking.id}")
        if action.startswith("booking.")
    ]
    assert actions[0][0] == "booking.created"
    assert actions[1] == (
        "booking.cancelled",
        {"by": "master", "reason": "Заболел", "source": "client"},
    )


async def test_slot_refusals(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    client = await shop.user()
    day = working_day()
    mid = master.master.id

    async def reason(start: datetime, service: str = "haircut", master_id: str = mid) -> str:
        exc = await _refused(shop.book(client, master_id, start, service_id=service))
        return f"{exc.code().name} {reason_of(exc)}"

    assert await reason(local(day, "10:30")) == "FAILED_PRECONDITION SLOT_UNAVAILABLE"  # off grid
    assert await reason(local(day, "13:00")) == "FAILED_PRECONDITION SLOT_UNAVAILABLE"  # lunch
    assert await reason(local(day, "12:00"), "haircut_beard") == (
        "FAILED_PRECONDITION SLOT_UNAVAILABLE"  # 90 minutes run into lunch
    )
    assert await reason(local(day, "19:00"), "haircut_beard") == (
        "FAILED_PRECONDITION SLOT_UNAVAILABLE"  # ends after 20:00
    )
    assert await reason(local(day, "09:00")) == "FAILED_PRECONDITION SLOT_UNAVAILABLE"
    sunday = day + timedelta(days=(7 - day.isoweekday()))
    assert await reason(local(sunday, "12:00")) == "FAILED_PRECONDITION SLOT_UNAVAILABLE"
    past = datetime.now(TZ).date() - timedelta(days=7)
    past = past if past.isoweekday() != 7 else past - timedelta(days=1)
    assert await reason(local(past, "10:00")) == "FAILED_PRECONDITION SLOT_IN_PAST"
    assert await reason(local(day, "10:00"), "nope") == "NOT_FOUND SERVICE_NOT_FOUND"
    assert await reason(local(day, "10:00"), master_id=str(uuid.uuid4())) == (
        "NOT_FOUND MASTER_NOT_FOUND"
    )

    availability = shop.client.GetAvailability
    exc = await _refused(
        availability(
            pb.GetAvailabilityRequest(
                master_id=mid,
                start_date=day.isoformat(),
                end_date=(day - timedelta(days=1)).isoformat(),
            ),
            metadata=client.metadata,
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(exc) == "INVALID_TIME_RANGE"
    exc = await _refused(
        availability(
            pb.GetAvailabilityRequest(
                master_id=mid,
                start_date=day.isoformat(),
                end_date=(day + timedelta(days=62)).isoformat(),
            ),
            metadata=client.metadata,
        )
    )
    assert reason_of(exc) == "INVALID_TIME_RANGE"
    week = await availability(
        pb.GetAvailabilityRequest(
            master_id=mid,
            start_date=day.isoformat(),
            end_date=(day + timedelta(days=61)).isoformat(),
            service_id="haircut_beard",
        ),
        metadata=client.metadata,
    )
    assert len(week.days) == 62
    sunday_row = next(d for d in week.days if d.date == sunday.isoformat())
    assert sunday_row.not_working
    assert not sunday_row.slots
    first = week.days[0]
    # 90 minutes on a 60-minute grid: 10, 11 (till 12:30), then 14..18 (18:00-19:30).
    assert [s.local_time for s in first.slots] == [
        "10:00", "11:00", "14:00", "15:00", "16:00", "17:00", "18:00"
    ]  # fmt: skip
    exc = await _refused(
        availability(
            pb.GetAvailabilityRequest(master_id=mid, start_date="2026-02-30"),
            metadata=client.metadata,
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_day_off_and_lunch_change_availability_at_once(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    client = await shop.user()
    md = master.session.metadata
    day, free_day = working_day(), working_day(4)
    if free_day == day:
        free_day = working_day(5)
    booking = await shop.book(client, master.master.id, local(day, "15:00"))

    # A day with a booking cannot become a day off; a free one can, at once.
    exc = await _refused(
        shop.masters.SetDayOff(pb.SetDayOffRequest(date=day.isoformat()), metadata=md)
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(exc)
    assert info.reason == "DAY_HAS_BOOKINGS"
    assert info.metadata["count"] == "1"
    assert len(await shop.slots(client, master.master.id, free_day)) == 9
    set_off = await shop.masters.SetDayOff(
        pb.SetDayOffRequest(date=free_day.isoformat(), note="отпуск"), metadata=md
    )
    assert set_off.day_off.note == "отпуск"
    answer = await shop.client.GetAvailability(
        pb.GetAvailabilityRequest(master_id=master.master.id, start_date=free_day.isoformat()),
        metadata=client.metadata,
    )
    assert answer.days[0].day_off
    assert not answer.days[0].slots
    exc = await _refused(shop.book(await shop.user(), master.master.id, local(free_day, "10:00")))
    assert reason_of(exc) == "SLOT_UNAVAILABLE"
    listed = await shop.masters.ListDaysOff(pb.ListDaysOffRequest(), metadata=md)
    assert [(d.date, d.note) for d in listed.days_off] == [(free_day.isoformat(), "отпуск")]
    await shop.masters.DeleteDayOff(pb.DeleteDayOffRequest(date=free_day.isoformat()), metadata=md)
    await shop.masters.DeleteDayOff(pb.DeleteDayOffRequest(date=free_day.isoformat()), metadata=md)
    assert len(await shop.slots(client, master.master.id, free_day)) == 9
    past = datetime.now(TZ).date() - timedelta(days=1)
    exc = await _refused(
        shop.masters.SetDayOff(pb.SetDayOffRequest(date=past.isoformat()), metadata=md)
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(exc) == "INVALID_FIELDS"
    assert field_violations(exc) == [("date", "INVALID_FIELD")]

    # Lunch: over the booking is refused; elsewhere it moves the free slots at once.
    exc = await _refused(
        shop.masters.SetLunchBreak(
            pb.SetLunchBreakRequest(lunch=pb.LocalTimeRange(start_time="15:30", end_time="16:30")),
            metadata=md,
        )
    )
    assert reason_of(exc) == "LUNCH_OVERLAPS_BOOKINGS"
    moved = await shop.masters.SetLunchBreak(
        pb.SetLunchBreakRequest(lunch=pb.LocalTimeRange(start_time="16:00", end_time="17:00")),
        metadata=md,
    )
    assert moved.master.lunch.start_time == "16:00"
    free = await shop.slots(client, master.master.id, day)
    assert "13:00" in free
    assert "16:00" not in free
    assert "15:00" not in free
    exc = await _refused(
        shop.masters.SetLunchBreak(
            pb.SetLunchBreakRequest(lunch=pb.LocalTimeRange(start_time="17:00", end_time="16:00")),
            metadata=md,
        )
    )
    assert reason_of(exc) == "INVALID_TIME_RANGE"
    cleared = await shop.masters.SetLunchBreak(pb.SetLunchBreakRequest(clear=True), metadata=md)
    assert not cleared.master.HasField("lunch")
    assert len(await shop.slots(client, master.master.id, free_day)) == 10
    await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=booking.id), metadata=client.metadata
    )
    await shop.masters.SetDayOff(pb.SetDayOffRequest(date=day.isoformat()), metadata=md)


async def test_manual_bookings(api: Api) -> None:
    shop = Booking(api)
    master = await shop.new_master()
    client = await shop.user()
    md = master.session.metadata
    day = working_day()
    client_booking = await shop.book(client, master.master.id, local(day, "11:00"))

    def manual(hhmm: str, service: str = "haircut") -> pb.CreateManualBookingRequest:
        return pb.CreateManualBookingRequest(
            service_id=service,
            start_time=ts(local(day, hhmm)),
            client_name="Пётр",
            client_phone="+7 (900) 123-45-67",
        )

    # Any start minute inside working hours, outside lunch and other bookings.
    made = await shop.masters.CreateManualBooking(manual("14:10"), metadata=md)
    assert made.booking.client_phone == "+7 (900) 123-45-67"
    assert made.booking.client_name == "Пётр"
    assert not made.booking.client_user_id
    for hhmm, expected in (
        ("11:30", "SLOT_TAKEN"),  # the client's booking
        ("14:40", "SLOT_TAKEN"),  # the manual one
        ("12:30", "SLOT_UNAVAILABLE"),  # into lunch
        ("19:30", "SLOT_UNAVAILABLE"),  # past 20:00
    ):
        exc = await _refused(shop.masters.CreateManualBooking(manual(hhmm), metadata=md))
        assert reason_of(exc) == expected, hhmm
    # The client grid now skips what the manual booking covers (14:10-15:10).
    free = await shop.slots(client, master.master.id, day)
    assert "14:00" not in free
    assert "15:00" not in free
    assert "16:00" in free
    exc = await _refused(shop.book(await shop.user(), master.master.id, local(day, "15:00")))
    assert reason_of(exc) == "SLOT_TAKEN"
    schedule = await shop.client.ListBookings(
        pb.ListBookingsRequest(view=pb.BOOKING_VIEW_MASTER), metadata=md
    )
    assert [b.id for b in schedule.bookings] == [client_booking.id, made.booking.id]
    # A master cancels a manual booking with a reason, like any other.
    cancelled = await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=made.booking.id, reason="не пришёл"), metadata=md
    )
    assert cancelled.booking.status == pb.BOOKING_STATUS_CANCELLED
    # A client is not a master: the schedule view and master calls are refused.
    exc = await _refused(
        shop.client.ListBookings(
            pb.ListBookingsRequest(view=pb.BOOKING_VIEW_MASTER), metadata=client.metadata
        )
    )
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(exc) == "NOT_A_MASTER"


async def test_admin_manages_masters_and_services(api: Api) -> None:
    shop = Booking(api)
    boss = await shop.boss()
    exc = await _refused(
        shop.admin.CreateMaster(
            pb.CreateMasterRequest(user_id=str(uuid.uuid4()), display_name="Никто"),
            metadata=boss.metadata,
        )
    )
    assert reason_of(exc) == "USER_NOT_FOUND"
    master = await shop.new_master(
        "Часы",
        working_hours=[
            pb.WorkingHours(iso_weekday=d, start_time="09:00", end_time="12:00")
            for d in range(1, 8)
        ],
    )
    client = await shop.user()
    day = working_day()
    assert await shop.slots(client, master.master.id, day) == ["09:00", "10:00", "11:00"]
    update = pb.UpdateMasterRequest(
        master=pb.Master(id=master.master.id, display_name="Часы 2", active=False),
        update_mask=FieldMask(paths=["display_name", "active"]),
    )
    updated = await shop.admin.UpdateMaster(update, metadata=boss.metadata)
    assert updated.master.display_name == "Часы 2"
    assert not updated.master.active
    # Deactivated: not listed, not bookable, no longer a master for the access policy.
    exc = await _refused(shop.book(client, master.master.id, local(day, "09:00")))
    assert reason_of(exc) == "MASTER_NOT_FOUND"
    exc = await _refused(
        shop.masters.ListDaysOff(pb.ListDaysOffRequest(), metadata=master.session.metadata)
    )
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await shop.admin.ListAllMasters(
        pb.ListAllMastersRequest(page_size=200), metadata=boss.metadata
    )
    assert master.master.id in {m.id for m in listed.masters}
    exc = await _refused(
        shop.admin.UpdateMaster(
            pb.UpdateMasterRequest(
                master=pb.Master(id=master.master.id), update_mask=FieldMask(paths=["user_id"])
            ),
            metadata=boss.metadata,
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    services = await shop.client.ListServices(pb.ListServicesRequest(), metadata=client.metadata)
    assert [(s.id, s.name, s.duration_minutes, s.price_minor_units, s.currency_code)
            for s in services.services][:3] == [
        ("haircut", "Стрижка", 60, 150000, "RUB"),
        ("beard", "Борода", 60, 100000, "RUB"),
        ("haircut_beard", "Стрижка + борода", 90, 220000, "RUB"),
    ]  # fmt: skip
    exc = await _refused(
        shop.admin.UpdateServiceOption(
            pb.UpdateServiceOptionRequest(
                service=pb.ServiceOption(id="beard", duration_minutes=0),
                update_mask=FieldMask(paths=["duration_minutes"]),
            ),
            metadata=boss.metadata,
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_service_option_changes_apply_to_new_bookings_only(api: Api) -> None:
    shop = Booking(api)
    boss = await shop.boss()
    master = await shop.new_master()
    client = await shop.user()
    day = working_day()
    before = await shop.book(client, master.master.id, local(day, "10:00"), service_id="beard")

    async def update(paths: list[str], **fields: object) -> pb.ServiceOption:
        response = await shop.admin.UpdateServiceOption(
            pb.UpdateServiceOptionRequest(
                service=pb.ServiceOption(id="beard", **fields),  # type: ignore[arg-type]
                update_mask=FieldMask(paths=paths),
            ),
            metadata=boss.metadata,
        )
        return response.service

    try:
        changed = await update(
            ["price_minor_units", "duration_minutes"], price_minor_units=120000, duration_minutes=30
        )
        assert (changed.name, changed.price_minor_units, changed.duration_minutes) == (
            "Борода",
            120000,
            30,
        )
        other = await shop.user()
        after = await shop.book(other, master.master.id, local(day, "11:00"), service_id="beard")
        assert after.price_minor_units == 120000
        assert after.end_time.ToDatetime() - after.start_time.ToDatetime() == timedelta(minutes=30)
        kept = await shop.client.GetBooking(
            pb.GetBookingRequest(booking_id=before.id), metadata=client.metadata
        )
        assert kept.booking.price_minor_units == 100000
        assert kept.booking.end_time == before.end_time
        await update(["active"], active=False)
        exc = await _refused(
            shop.book(await shop.user(), master.master.id, local(day, "15:00"), service_id="beard")
        )
        assert reason_of(exc) == "SERVICE_NOT_FOUND"
        listed = await shop.client.ListServices(pb.ListServicesRequest(), metadata=client.metadata)
        assert "beard" not in {s.id for s in listed.services}
    finally:
        await update(
            ["price_minor_units", "duration_minutes", "active"],
            price_minor_units=100000,
            duration_minutes=60,
            active=True,
        )


async def test_a_deactivated_master_no_longer_sees_or_cancels_their_bookings(
    api: Api, platform: Platform
) -> None:
    shop = Booking(api)
    boss = await shop.boss()
    master = await shop.new_master("Уволен")
    client = await shop.user()
    day = working_day()
    booking = await shop.book(client, master.master.id, local(day, "10:00"))
    manual = await shop.masters.CreateManualBooking(
        pb.CreateManualBookingRequest(
            service_id="haircut",
            start_time=ts(local(day, "15:00")),
            client_name="По телефону",
            client_phone="89001112233",
        ),
        metadata=master.session.metadata,
    )
    md = master.session.metadata
    seen = await shop.client.GetBooking(
        pb.GetBookingRequest(booking_id=manual.booking.id), metadata=md
    )
    assert seen.booking.client_phone == "89001112233"
    await shop.admin.UpdateMaster(
        pb.UpdateMasterRequest(
            master=pb.Master(id=master.master.id, active=False),
            update_mask=FieldMask(paths=["active"]),
        ),
        metadata=boss.metadata,
    )
    # GetBooking and CancelBooking are open to every user: the booking's side decides, and
    # the master side needs an active profile.
    for target in (booking.id, manual.booking.id):
        exc = await _refused(
            shop.client.GetBooking(pb.GetBookingRequest(booking_id=target), metadata=md)
        )
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(exc) == "NOT_YOUR_BOOKING"
        exc = await _refused(
            shop.client.CancelBooking(
                pb.CancelBookingRequest(booking_id=target, reason="ухожу"), metadata=md
            )
        )
        assert reason_of(exc) == "NOT_YOUR_BOOKING"
        events = await audit(platform.pg_dsn, f"booking:{target}")
        denied = [attrs for actor, action, attrs in events if action == "access.denied"]
        assert denied == [{"reason": "NOT_YOUR_BOOKING"}] * 2
    # Nothing was cancelled; the client still sees and may cancel their own booking.
    own = await shop.client.GetBooking(
        pb.GetBookingRequest(booking_id=booking.id), metadata=client.metadata
    )
    assert own.booking.status == pb.BOOKING_STATUS_ACTIVE
    done = await shop.client.CancelBooking(
        pb.CancelBookingRequest(booking_id=booking.id), metadata=client.metadata
    )
    assert done.booking.cancelled_by == pb.BOOKING_ACTOR_CLIENT
