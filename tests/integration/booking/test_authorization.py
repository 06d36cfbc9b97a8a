"""Each kind of caller x each booking RPC: allowed, or refused with the right code.

Written out by hand, so a policy changed by mistake in booking.proto fails here. "master" is
the derived role: a user with an active master profile (also through a bot acting as them).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from switchboard.booking.v1 import booking_pb2 as pb
from switchboard.identity.v1 import identity_pb2 as ipb

from tests.conftest import Platform
from tests.integration.booking.booking_support import Booking, audit, ts
from tests.support.api import Api, Metadata, next_telegram_id
from tests.support.authz import DENIED, OK, UNAUTH, Call, outcomes
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

ANY_USER = {
    "anonymous": UNAUTH, "user": OK, "master": OK, "admin": OK, "super_admin": OK,
    "bot": DENIED, "bot_as_user": OK, "bot_as_master": OK, "worker": DENIED,
}  # fmt: skip
MASTERS = {
    "anonymous": UNAUTH, "user": DENIED, "master": OK, "admin": DENIED, "super_admin": DENIED,
    "bot": DENIED, "bot_as_user": DENIED, "bot_as_master": OK, "worker": DENIED,
}  # fmt: skip
ADMINS = {
    "anonymous": UNAUTH, "user": DENIED, "master": DENIED, "admin": OK, "super_admin": OK,
    "bot": DENIED, "bot_as_user": DENIED, "bot_as_master": DENIED, "worker": DENIED,
}  # fmt: skip

EXPECTED: dict[str, dict[str, str]] = {
    **{
        f"BookingService/{name}": ANY_USER
        for name in (
            "ListMasters",
            "GetMaster",
            "ListServices",
            "GetAvailability",
            "CreateBooking",
            "GetBooking",
            "ListBookings",
            "CancelBooking",
            "GetBookingProfile",
        )
    },
    **{
        f"MasterService/{name}": MASTERS
        for name in (
            "CreateManualBooking",
            "ListDaysOff",
            "SetDayOff",
            "DeleteDayOff",
            "SetLunchBreak",
        )
    },
    **{
        f"BookingAdminService/{name}": ADMINS
        for name in ("CreateMaster", "UpdateMaster", "ListAllMasters", "UpdateServiceOption")
    },
}


def test_matrix_covers_every_rpc() -> None:
    names = {
        f"{s.name}/{m.name}" for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods
    }
    assert names == set(EXPECTED)


async def _callers(api: Api, platform: Platform) -> dict[str, Metadata]:
    shop = Booking(api)
    admin = await api.login()
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    await api.admin.PromoteUser(
        ipb.PromoteUserRequest(user_id=admin.user.id), metadata=boss.metadata
    )
    master_telegram_id = next_telegram_id()
    master_session = await api.login(master_telegram_id, name="Мастер")
    await shop.admin.CreateMaster(
        pb.CreateMasterRequest(user_id=master_session.user.id, display_name="Мастер"),
        metadata=boss.metadata,
    )
    bot = platform.secrets.login_bot_service_token
    return {
        "anonymous": (),
        "user": (await api.login()).metadata,
        "master": master_session.metadata,
        "admin": admin.metadata,
        "super_admin": boss.metadata,
        "bot": api.service(bot),
        "bot_as_user": api.service(bot, act_as=next_telegram_id()),
        "bot_as_master": api.service(bot, act_as=master_telegram_id),
        "worker": api.service(platform.secrets.plain_worker_token),
    }


def _calls(shop: Booking) -> dict[str, Call]:
    c, m, a = shop.client, shop.masters, shop.admin
    some = str(uuid.uuid4())
    long_ago = ts(datetime(2020, 1, 6, 10, tzinfo=UTC))
    return {
        "BookingService/ListMasters": lambda md: c.ListMasters(
            pb.ListMastersRequest(), metadata=md
        ),
        "BookingService/GetMaster": lambda md: c.GetMaster(
            pb.GetMasterRequest(master_id=some), metadata=md
        ),
        "BookingService/ListServices": lambda md: c.ListServices(
            pb.ListServicesRequest(), metadata=md
        ),
        "BookingService/GetAvailability": lambda md: c.GetAvailability(
            pb.GetAvailabilityRequest(master_id=some, start_date="2030-01-07"), metadata=md
        ),
        "BookingService/CreateBooking": lambda md: c.CreateBooking(
            pb.CreateBookingRequest(master_id=some, service_id="haircut", start_time=long_ago),
            metadata=md,
        ),
        "BookingService/GetBooking": lambda md: c.GetBooking(
            pb.GetBookingRequest(booking_id=some), metadata=md
        ),
        "BookingService/ListBookings": lambda md: c.ListBookings(
            pb.ListBookingsRequest(), metadata=md
        ),
        "BookingService/CancelBooking": lambda md: c.CancelBooking(
            pb.CancelBookingRequest(booking_id=some), metadata=md
        ),
        "BookingService/GetBookingProfile": lambda md: c.GetBookingProfile(
            pb.GetBookingProfileRequest(), metadata=md
        ),
        "MasterService/CreateManualBooking": lambda md: m.CreateManualBooking(
            pb.CreateManualBookingRequest(
                service_id="haircut",
                start_time=long_ago,
                client_name="x",
                client_phone="+70000000000",
            ),
            metadata=md,
        ),
        "MasterService/ListDaysOff": lambda md: m.ListDaysOff(pb.ListDaysOffRequest(), metadata=md),
        "MasterService/SetDayOff": lambda md: m.SetDayOff(
            pb.SetDayOffRequest(date="2020-01-01"), metadata=md
        ),
        "MasterService/DeleteDayOff": lambda md: m.DeleteDayOff(
            pb.DeleteDayOffRequest(date="2030-01-01"), metadata=md
        ),
        "MasterService/SetLunchBreak": lambda md: m.SetLunchBreak(
            pb.SetLunchBreakRequest(lunch=pb.LocalTimeRange(start_time="14:00", end_time="13:00")),
            metadata=md,
        ),
        "BookingAdminService/CreateMaster": lambda md: a.CreateMaster(
            pb.CreateMasterRequest(user_id=some, display_name="x"), metadata=md
        ),
        "BookingAdminService/UpdateMaster": lambda md: a.UpdateMaster(
            pb.UpdateMasterRequest(
                master=pb.Master(id=some, display_name="x"),
                update_mask=FieldMask(paths=["display_name"]),
            ),
            metadata=md,
        ),
        "BookingAdminService/ListAllMasters": lambda md: a.ListAllMasters(
            pb.ListAllMastersRequest(), metadata=md
        ),
        "BookingAdminService/UpdateServiceOption": lambda md: a.UpdateServiceOption(
            pb.UpdateServiceOptionRequest(
                service=pb.ServiceOption(id="nope", name="x"), update_mask=FieldMask(paths=["name"])
            ),
            metadata=md,
        ),
    }


async def test_booking_authorization_matrix(api: Api, platform: Platform) -> None:
    callers = await _callers(api, platform)
    calls = _calls(Booking(api))
    for rpc in sorted(EXPECTED):
        got = await outcomes(calls[rpc], callers)
        assert got == EXPECTED[rpc], rpc


async def test_a_client_calling_a_master_rpc_is_refused_and_audited(
    api: Api, platform: Platform
) -> None:
    shop = Booking(api)
    client = await shop.user()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.masters.SetDayOff(
            pb.SetDayOffRequest(date="2030-01-01"), metadata=client.metadata
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    events = await audit(platform.pg_dsn, "/switchboard.booking.v1.MasterService/SetDayOff")
    assert (f"user:{client.user.id}", "access.denied") in {(a, b) for a, b, _ in events}
