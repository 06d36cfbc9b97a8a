"""The fan-out hot path: batched stream writes, encode once per replica, paced wake-ups,
and gap fills that wait for reordered events before reading PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any, cast
from uuid import UUID, uuid4

from switchboard.rooms.v1 import rooms_pb2 as pb

from server.rooms.api import encode_response, event_to_proto
from server.rooms.live import LiveRooms, RoomHub, Subscription
from server.rooms.model import Heartbeat, MemberLeft, PresenceUpdate, RoomEvent, Synced
from tests.unit.rooms.test_model import NOW, ROOM


def _event(seq: int) -> RoomEvent:
    return RoomEvent(ROOM, seq, NOW, MemberLeft(UUID(int=seq)))


def test_a_response_is_the_concatenation_of_its_encoded_events() -> None:
    events = [
        _event(7),
        RoomEvent(ROOM, 0, NOW, PresenceUpdate(uuid4(), online=True)),
        _event(300),  # a longer varint sequence
        RoomEvent(ROOM, 0, NOW, Heartbeat(300)),
        RoomEvent(ROOM, 0, NOW, Synced(300, (uuid4(), uuid4()))),
    ]
    expected = pb.SubscribeRoomResponse(events=[event_to_proto(e) for e in events])
    encoded = encode_response(events)
    assert pb.SubscribeRoomResponse.FromString(encoded) == expected
    assert encoded == expected.SerializeToString()
    # A shared event is encoded once per replica: every subscriber gets the same bytes.
    assert encode_response([events[0]]) is encode_response([events[0]])
    big = RoomEvent(ROOM, 1, NOW, Synced(1, tuple(uuid4() for _ in range(10))))
    assert pb.SubscribeRoomResponse.FromString(encode_response([big])).events[0] == (
        event_to_proto(big)
    )  # over 127 bytes: a two-byte length prefix


async def test_a_write_carries_at_most_the_limit_and_keeps_the_rest_in_order() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=10)
    sub = Subscription(hub, uuid4(), 0, limit=100)
    hub.subscribers.add(sub)
    for seq in range(1, 8):
        hub.offer(_event(seq))
    assert [e.seq for e in await sub.next_batch(3) or []] == [1, 2, 3]
    assert [e.seq for e in await sub.next_batch(3) or []] == [4, 5, 6]
    assert [e.seq for e in await sub.next_batch(3) or []] == [7]


async def test_wakeups_are_paced_so_a_busy_room_batches() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=10, flush_interval_s=0.5)
    sub = Subscription(hub, uuid4(), 0, limit=100)
    hub.subscribers.add(sub)
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)
    hub.offer(_event(1))  # after a quiet interval: at once
    assert [e.seq for e in await asyncio.wait_for(waiting, 0.2) or []] == [1]
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)  # the writer waits again (events queued before it came back
    # are taken at once, without waiting for a wake-up)
    hub.offer(_event(2))
    hub.offer(_event(3))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # within the interval of the last wake-up: held
    assert [e.seq for e in await asyncio.wait_for(waiting, 2) or []] == [2, 3]


def _live(load: Any, last: int) -> LiveRooms:
    async def last_seq(room_id: UUID) -> int:
        return last

    # No Redis needed: events are ingested directly, as the listener would.
    return LiveRooms(
        cast(Any, None),
        load_events=load,
        last_seq=last_seq,
        buffer_size=100,
        tick_s=60,
        presence_ttl_s=120,
    )


async def test_a_reordered_event_is_released_by_the_missing_one_without_postgres() -> None:
    loads: list[tuple[int, int]] = []

    async def load(room_id: UUID, after: int, upto: int, limit: int) -> list[RoomEvent]:
        loads.append((after, upto))
        return []

    live = _live(load, last=10)
    sub = await live.attach(ROOM, uuid4())
    live.ingest(_event(12))  # 11 is still on its way
    await asyncio.sleep(0.01)
    assert sub.hub.pending
    assert sub.hub.filling is not None
    live.ingest(_event(11))
    assert [e.seq for e in await asyncio.wait_for(sub.next_batch(), 1) or []] == [11, 12]
    await asyncio.sleep(0.1)  # past the fill delay
    assert loads == []
    assert sub.hub.filling is None
    live.detach(sub)


async def test_a_lost_event_is_read_from_postgres_after_the_wait() -> None:
    loads: list[tuple[int, int]] = []

    async def load(room_id: UUID, after: int, upto: int, limit: int) -> list[RoomEvent]:
        loads.append((after, upto))
        return [_event(s) for s in range(after + 1, upto + 1)]

    live = _live(load, last=10)
    sub = await live.attach(ROOM, uuid4())
    live.ingest(_event(12))  # 11 never comes through Redis
    seen: list[int] = []
    async with asyncio.timeout(1):
        while len(seen) < 2:
            seen += [e.seq for e in await sub.next_batch() or []]
    assert seen == [11, 12]
    assert loads == [(10, 12)]
    live.detach(sub)
