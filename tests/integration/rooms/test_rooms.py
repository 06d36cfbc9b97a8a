"""Rooms and membership: RBAC on creation, idempotent creation, paging, the member cap."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as ipb
from switchboard.rooms.v1 import rooms_pb2 as pb

from tests.integration.rooms.rooms_support import TEXT_AND_VOICE, Rooms
from tests.support.api import Api, error_info, field_violations


@pytest.fixture
def rooms(api: Api) -> Rooms:
    return Rooms(api)


def _create(name: str = "r", **kwargs: object) -> pb.CreateRoomRequest:
    return pb.CreateRoomRequest(name=name, kind=TEXT_AND_VOICE, **kwargs)  # type: ignore[arg-type]


async def test_a_user_cannot_create_a_room(rooms: Rooms, api: Api) -> None:
    user = await api.login()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.rooms.CreateRoom(_create(), metadata=user.metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value).reason == "ACCESS_DENIED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.rooms.CreateRoom(_create())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admins_and_super_admins_create_rooms_and_become_members(
    rooms: Rooms, api: Api
) -> None:
    boss = await rooms.admin()
    admin = await api.login(name="Admin")
    await api.admin.PromoteUser(
        ipb.PromoteUserRequest(user_id=admin.user.id), metadata=boss.metadata
    )
    for who in (boss, admin):
        created = await rooms.rooms.CreateRoom(
            _create("Lobby", description="hello", max_members=10), metadata=who.metadata
        )
        room = created.room
        assert (room.name, room.description, room.kind) == ("Lobby", "hello", TEXT_AND_VOICE)
        assert (room.max_members, room.member_count) == (10, 1)
        assert room.creator_user_id == who.user.id
        got = await rooms.rooms.GetRoom(pb.GetRoomRequest(room_id=room.id), metadata=who.metadata)
        assert got.joined
        assert got.room.last_sequence == 1  # the creator's member_joined


async def test_create_with_a_request_id_is_safe_to_retry(rooms: Rooms) -> None:
    boss = await rooms.admin()
    request_id = str(uuid.uuid4())
    rooms_created = await asyncio.gather(
        *(
            rooms.rooms.CreateRoom(_create("Once", request_id=request_id), metadata=boss.metadata)
            for _ in range(3)
        ),
        return_exceptions=True,
    )
    ids = {r.room.id for r in rooms_created if isinstance(r, pb.CreateRoomResponse)}
    assert len(ids) == 1
    other = await rooms.rooms.CreateRoom(_create("Once"), metadata=boss.metadata)
    assert other.room.id not in ids


async def test_create_validates_fields(rooms: Rooms) -> None:
    boss = await rooms.admin()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.rooms.CreateRoom(
            pb.CreateRoomRequest(name="", kind=pb.RoomKind.Value("ROOM_KIND_UNSPECIFIED")),
            metadata=boss.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in field_violations(caught.value)} == {"name", "kind"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.rooms.CreateRoom(_create(max_members=501), metadata=boss.metadata)
    assert error_info(caught.value).reason == "MAX_MEMBERS_TOO_LARGE"


async def test_join_is_idempotent_and_leave_too(rooms: Rooms, api: Api) -> None:
    room = await rooms.create()
    alice = await api.login()
    for _ in range(2):
        joined = await rooms.rooms.JoinRoom(
            pb.JoinRoomRequest(room_id=room.id), metadata=alice.metadata
        )
        assert joined.member.user_id == alice.user.id
        assert joined.room.member_count == 2
    for _ in range(2):
        await rooms.rooms.LeaveRoom(pb.LeaveRoomRequest(room_id=room.id), metadata=alice.metadata)
    got = await rooms.rooms.GetRoom(pb.GetRoomRequest(room_id=room.id), metadata=alice.metadata)
    assert (got.joined, got.room.member_count) == (False, 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.rooms.JoinRoom(
            pb.JoinRoomRequest(room_id=str(uuid.uuid4())), metadata=alice.metadata
        )
    assert error_info(caught.value).reason == "ROOM_NOT_FOUND"


async def test_the_member_cap_holds_under_concurrent_joins(rooms: Rooms, api: Api) -> None:
    room = await rooms.create(max_members=5)  # the creator is the first
    users = [await api.login() for _ in range(10)]
    results = await asyncio.gather(
        *(
            rooms.rooms.JoinRoom(pb.JoinRoomRequest(room_id=room.id), metadata=u.metadata)
            for u in users
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(refused) == 6
    for error in refused:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "ROOM_FULL"
        assert error_info(error).metadata["max_members"] == "5"
    got = await rooms.rooms.GetRoom(pb.GetRoomRequest(room_id=room.id), metadata=users[0].metadata)
    assert got.room.member_count == 5


async def test_members_and_rooms_page(rooms: Rooms, api: Api) -> None:
    room = await rooms.create()
    members = [await rooms.member(room.id, f"m{i}") for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await rooms.rooms.ListMembers(
            pb.ListMembersRequest(room_id=room.id, page_size=2, page_token=token),
            metadata=members[0].metadata,
        )
        assert len(page.members) <= 2
        seen.extend(m.user_id for m in page.members)
        token = page.next_page_token
        if not token:
            break
    assert seen[1:] == [m.user.id for m in members]  # join order, after the creator
    assert len(seen) == 6

    mine = await rooms.rooms.ListRooms(
        pb.ListRoomsRequest(joined_only=True), metadata=members[0].metadata
    )
    assert [r.id for r in mine.rooms] == [room.id]
    listed: list[str] = []
    token = ""
    for _ in range(100):
        room_page = await rooms.rooms.ListRooms(
            pb.ListRoomsRequest(page_size=50, page_token=token), metadata=members[0].metadata
        )
        listed.extend(r.id for r in room_page.rooms)
        token = room_page.next_page_token
        if not token:
            break
    assert room.id in listed
    assert len(listed) == len(set(listed))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.rooms.ListRooms(
            pb.ListRoomsRequest(page_token="garbage!"), metadata=members[0].metadata
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_PAGE_TOKEN"
    assert [field for field, _ in field_violations(caught.value)] == ["page_token"]
