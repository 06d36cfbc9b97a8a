"""Each kind of caller x each rooms/calls RPC: allowed, or refused with the right code.

Written out by hand, so a policy changed by mistake in a .proto file fails here.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as ipb
from switchboard.rooms.v1 import calls_pb2 as cpb
from switchboard.rooms.v1 import rooms_pb2 as pb

from tests.conftest import Platform
from tests.integration.rooms.rooms_support import Rooms
from tests.support.api import Api, Metadata, error_info, next_telegram_id
from tests.support.authz import DENIED, OK, UNAUTH, Call, outcomes
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

CALLERS = ["anonymous", "user", "admin", "super_admin", "bot", "bot_as_user", "worker"]
ANY_USER = {
    "anonymous": UNAUTH, "user": OK, "admin": OK, "super_admin": OK,
    "bot": DENIED, "bot_as_user": OK, "worker": DENIED,
}  # fmt: skip
ADMINS = {
    "anonymous": UNAUTH, "user": DENIED, "admin": OK, "super_admin": OK,
    "bot": DENIED, "bot_as_user": DENIED, "worker": DENIED,
}  # fmt: skip

EXPECTED: dict[str, dict[str, str]] = {
    "RoomService/CreateRoom": ADMINS,
    **{
        f"RoomService/{name}": ANY_USER
        for name in (
            "GetRoom",
            "ListRooms",
            "JoinRoom",
            "LeaveRoom",
            "ListMembers",
            "SendMessage",
            "ListMessages",
            "SubscribeRoom",
        )
    },
    **{
        f"CallService/{name}": ANY_USER
        for name in (
            "JoinCall",
            "LeaveCall",
            "GetActiveCall",
            "SendCallSignal",
            "GetIceServers",
            "ReportCallOutcome",
        )
    },
}


def test_matrix_covers_every_rpc() -> None:
    names = {
        f"{s.name}/{m.name}"
        for module in (pb, cpb)
        for s in module.DESCRIPTOR.services_by_name.values()
        for m in s.methods
    }
    assert names == set(EXPECTED)


async def _callers(api: Api, platform: Platform) -> dict[str, Metadata]:
    admin = await api.login()
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    await api.admin.PromoteUser(
        ipb.PromoteUserRequest(user_id=admin.user.id), metadata=boss.metadata
    )
    return {
        "anonymous": (),
        "user": (await api.login()).metadata,
        "admin": admin.metadata,
        "super_admin": boss.metadata,
        "bot": api.service(platform.secrets.login_bot_service_token),
        "bot_as_user": api.service(
            platform.secrets.login_bot_service_token, act_as=next_telegram_id()
        ),
        "worker": api.service(platform.secrets.plain_worker_token),
    }


def _calls(rooms: Rooms) -> dict[str, Call]:
    r, c = rooms.rooms, rooms.calls
    room, call, peer = (str(uuid.uuid4()) for _ in range(3))

    async def subscribe(md: Metadata) -> None:
        async for _ in r.SubscribeRoom(pb.SubscribeRoomRequest(room_id=room), metadata=md):
            pass

    return {
        "RoomService/CreateRoom": lambda md: r.CreateRoom(
            pb.CreateRoomRequest(name="m", kind=pb.ROOM_KIND_TEXT), metadata=md
        ),
        "RoomService/GetRoom": lambda md: r.GetRoom(pb.GetRoomRequest(room_id=room), metadata=md),
        "RoomService/ListRooms": lambda md: r.ListRooms(pb.ListRoomsRequest(), metadata=md),
        "RoomService/JoinRoom": lambda md: r.JoinRoom(
            pb.JoinRoomRequest(room_id=room), metadata=md
        ),
        "RoomService/LeaveRoom": lambda md: r.LeaveRoom(
            pb.LeaveRoomRequest(room_id=room), metadata=md
        ),
        "RoomService/ListMembers": lambda md: r.ListMembers(
            pb.ListMembersRequest(room_id=room), metadata=md
        ),
        "RoomService/SendMessage": lambda md: r.SendMessage(
            pb.SendMessageRequest(room_id=room, idempotency_key="k", text="x"), metadata=md
        ),
        "RoomService/ListMessages": lambda md: r.ListMessages(
            pb.ListMessagesRequest(room_id=room), metadata=md
        ),
        "RoomService/SubscribeRoom": subscribe,
        "CallService/JoinCall": lambda md: c.JoinCall(
            cpb.JoinCallRequest(room_id=room), metadata=md
        ),
        "CallService/LeaveCall": lambda md: c.LeaveCall(
            cpb.LeaveCallRequest(room_id=room, call_id=call), metadata=md
        ),
        "CallService/GetActiveCall": lambda md: c.GetActiveCall(
            cpb.GetActiveCallRequest(room_id=room), metadata=md
        ),
        "CallService/SendCallSignal": lambda md: c.SendCallSignal(
            cpb.SendCallSignalRequest(
                room_id=room,
                call_id=call,
                to_user_id=peer,
                kind=pb.CALL_SIGNAL_KIND_OFFER,
                sdp="v=0",
            ),
            metadata=md,
        ),
        "CallService/GetIceServers": lambda md: c.GetIceServers(
            cpb.GetIceServersRequest(), metadata=md
        ),
        "CallService/ReportCallOutcome": lambda md: c.ReportCallOutcome(
            cpb.ReportCallOutcomeRequest(
                room_id=room, call_id=call, outcome=cpb.CALL_OUTCOME_CONNECTED
            ),
            metadata=md,
        ),
    }


async def test_rooms_authorization_matrix(api: Api, platform: Platform) -> None:
    callers = await _callers(api, platform)
    calls = _calls(Rooms(api))
    for rpc in sorted(EXPECTED):
        got = await outcomes(calls[rpc], callers)
        assert got == EXPECTED[rpc], rpc


@pytest.mark.parametrize("who", ["user", "admin"])
async def test_only_members_reach_a_rooms_content(api: Api, platform: Platform, who: str) -> None:
    rooms = Rooms(api)
    room = await rooms.create()
    callers = await _callers(api, platform)
    md = callers[who]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.rooms.ListMessages(pb.ListMessagesRequest(room_id=room.id), metadata=md)
    assert error_info(caught.value).reason == "NOT_A_MEMBER"  # even an admin joins first
