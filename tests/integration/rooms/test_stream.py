"""SubscribeRoom: live events, resume exactly once and in order, heartbeats, presence."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from switchboard.rooms.v1 import rooms_pb2 as pb

from tests.integration.rooms.rooms_support import Rooms
from tests.support.api import Api, error_info


@pytest.fixture
def rooms(api: Api) -> Rooms:
    return Rooms(api)


async def test_live_messages_reach_every_member(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id, "Alice"), await rooms.member(room.id, "Bob")
    stream = rooms.subscribe(bob, room.id)
    synced = await stream.synced()
    assert synced.sequence == 0
    assert synced.synced.last_sequence >= 3  # creator + two joins
    ack = await rooms.send(alice, room.id, "hi bob", key="k1")
    event = await stream.next("message_new")
    assert event.sequence == ack.sequence
    assert event.room_id == room.id
    message = event.message_new.message
    assert (message.id, message.text, message.sender_user_id) == (
        ack.message_id,
        "hi bob",
        alice.user.id,
    )
    assert message.sender_display_name == "Alice"
    assert message.idempotency_key == "k1"
    await stream.close()


async def test_resume_after_100_messages_delivers_each_once_in_order(rooms: Rooms) -> None:
    """Nobody else watches the room: the replay comes from PostgreSQL."""
    room = await rooms.create()
    alice, bob = await rooms.member(room.id), await rooms.member(room.id)
    stream = rooms.subscribe(bob, room.id)
    await stream.synced()
    first = await rooms.send(alice, room.id, "before")
    seen = (await stream.next("message_new")).sequence
    assert seen == first.sequence
    await stream.close()

    acks = [await rooms.send(alice, room.id, f"m{i}") for i in range(100)]
    resumed = rooms.subscribe(bob, room.id, after=seen)
    replayed = await resumed.messages(100)
    assert [m.text for m in replayed] == [f"m{i}" for i in range(100)]
    assert [m.sequence for m in replayed] == [a.sequence for a in acks]
    synced = await resumed.synced()
    assert synced.synced.last_sequence == acks[-1].sequence
    live = await rooms.send(alice, room.id, "live")
    assert (await resumed.next("message_new")).sequence == live.sequence
    await asyncio.sleep(0.3)
    assert not [e for e in resumed.pending() if e.WhichOneof("kind") == "message_new"]
    await resumed.close()


async def test_resume_from_the_live_buffer_while_others_watch(rooms: Rooms) -> None:
    """Another subscriber keeps the room's hub (and its buffer) alive on this replica."""
    room = await rooms.create()
    alice, bob, carol = [await rooms.member(room.id) for _ in range(3)]
    watcher = rooms.subscribe(carol, room.id)
    await watcher.synced()
    stream = rooms.subscribe(bob, room.id)
    await stream.synced()
    await rooms.send(alice, room.id, "before")
    seen = (await stream.next("message_new")).sequence
    await stream.close()
    acks = [await rooms.send(alice, room.id, f"m{i}") for i in range(100)]
    resumed = rooms.subscribe(bob, room.id, after=seen)
    replayed = await resumed.messages(100)
    assert [m.sequence for m in replayed] == [a.sequence for a in acks]
    await resumed.synced()
    await asyncio.sleep(0.3)
    assert not [e for e in resumed.pending() if e.WhichOneof("kind") == "message_new"]
    assert len(await watcher.messages(101)) == 101
    await resumed.close()
    await watcher.close()


async def test_messages_sent_during_the_replay_are_not_lost_or_doubled(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id), await rooms.member(room.id)
    for i in range(50):
        await rooms.send(alice, room.id, f"old{i}")
    sending = asyncio.gather(*(rooms.send(alice, room.id, f"new{i}") for i in range(30)))
    stream = rooms.subscribe(bob, room.id, after=0)
    await sending
    got = await stream.messages(80)
    seqs = [m.sequence for m in got]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 80
    assert {m.text for m in got} == {f"old{i}" for i in range(50)} | {f"new{i}" for i in range(30)}
    await asyncio.sleep(0.3)
    assert not [e for e in stream.pending() if e.WhichOneof("kind") == "message_new"]
    await stream.close()


async def test_after_sequence_zero_replays_membership_and_messages(rooms: Rooms) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    await rooms.send(alice, room.id, "one")
    stream = rooms.subscribe(alice, room.id, after=0)
    kinds = [(await stream.next()).WhichOneof("kind") for _ in range(3)]
    assert kinds == ["member_joined", "member_joined", "message_new"]  # creator, alice, message
    await stream.close()


async def test_idle_streams_get_heartbeats(rooms: Rooms) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    stream = rooms.subscribe(alice, room.id)
    synced = await stream.synced()
    beat = await stream.next("heartbeat", timeout=3)  # configs/test.yaml: every 0.5 s
    assert beat.sequence == 0
    assert beat.heartbeat.last_sequence == synced.synced.last_sequence
    await stream.close()


async def test_presence_updates_on_subscribe_and_disconnect(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id, "Alice"), await rooms.member(room.id, "Bob")
    watcher = rooms.subscribe(alice, room.id)
    synced = await watcher.synced()
    assert alice.user.id in synced.synced.online_user_ids
    own = await watcher.next("presence_update")  # her own subscription made her online
    assert (own.presence_update.user_id, own.presence_update.online) == (alice.user.id, True)
    bob_stream = rooms.subscribe(bob, room.id)
    await bob_stream.synced()
    online = await watcher.next("presence_update")
    assert (online.presence_update.user_id, online.presence_update.online) == (bob.user.id, True)
    members = await rooms.rooms.ListMembers(
        pb.ListMembersRequest(room_id=room.id), metadata=alice.metadata
    )
    assert {m.user_id: m.online for m in members.members}[bob.user.id] is True
    # A second connection of Bob's changes nothing; closing both makes him offline once.
    second = rooms.subscribe(bob, room.id)
    await second.synced()
    await bob_stream.close()
    await asyncio.sleep(0.3)
    assert not [e for e in watcher.pending() if e.WhichOneof("kind") == "presence_update"]
    await second.close()
    offline = await watcher.next("presence_update")
    assert (offline.presence_update.user_id, offline.presence_update.online) == (bob.user.id, False)
    await watcher.close()


async def test_non_members_cannot_read_or_subscribe(rooms: Rooms, api: Api) -> None:
    room = await rooms.create()
    stranger = await api.login()
    stream = rooms.subscribe(stranger, room.id)
    await asyncio.wait_for(stream.ended.wait(), 5)
    assert stream.error is not None
    assert stream.error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(stream.error).reason == "NOT_A_MEMBER"
    for call in (
        rooms.rooms.ListMessages(
            pb.ListMessagesRequest(room_id=room.id), metadata=stranger.metadata
        ),
        rooms.rooms.ListMembers(pb.ListMembersRequest(room_id=room.id), metadata=stranger.metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert error_info(caught.value).reason == "NOT_A_MEMBER"
    missing = rooms.subscribe(stranger, str(uuid.uuid4()))
    await asyncio.wait_for(missing.ended.wait(), 5)
    assert missing.error is not None
    assert missing.error.code() == grpc.StatusCode.NOT_FOUND


async def test_leaving_ends_the_leavers_stream_and_tells_the_others(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id), await rooms.member(room.id)
    a, b = rooms.subscribe(alice, room.id), rooms.subscribe(bob, room.id)
    await a.synced()
    await b.synced()
    await rooms.rooms.LeaveRoom(pb.LeaveRoomRequest(room_id=room.id), metadata=bob.metadata)
    left = await a.next("member_left")
    assert left.member_left.user_id == bob.user.id
    assert (await b.next("member_left")).member_left.user_id == bob.user.id
    await asyncio.wait_for(b.ended.wait(), 5)
    assert b.error is None  # ended cleanly
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.send(bob, room.id, "gone")
    assert error_info(caught.value).reason == "NOT_A_MEMBER"
    await a.close()
