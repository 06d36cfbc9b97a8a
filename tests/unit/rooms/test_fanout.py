"""Rooms on the kernel fan-out (server/kernel/fanout.py, tested in tests/unit/kernel): a
response is encoded once per replica, call signals reach only their recipient, and room events
cross replicas as the JSON of the Redis channel."""

from __future__ import annotations

import json
from typing import Any, cast
from uuid import UUID, uuid4

from switchboard.rooms.v1 import rooms_pb2 as pb

from server.kernel.fanout import Fanout, Hub, Subscription
from server.rooms.api import encode_response, event_to_proto
from server.rooms.model import (
    CallSignal,
    Heartbeat,
    MemberLeft,
    PresenceUpdate,
    RoomEvent,
    SignalKind,
    Synced,
    event_to_json,
)
from server.rooms.repository import RoomsRepository
from server.rooms.service import RoomStreams, RoomSubscription, room_stream
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


def test_call_signals_reach_only_their_recipient() -> None:
    hub: Hub[UUID, RoomEvent, UUID] = Hub(ROOM, 0, 10, visible=RoomEvent.visible_to)
    alice, bob = uuid4(), uuid4()
    to_alice: RoomSubscription = Subscription(hub, alice, 0, limit=10)
    to_bob: RoomSubscription = Subscription(hub, bob, 0, limit=10)
    hub.subscribers.update({to_alice, to_bob})
    signal = RoomEvent(
        ROOM, 1, NOW, CallSignal(uuid4(), alice, bob, SignalKind.OFFER, "v=0"), recipient_id=bob
    )
    hub.offer(signal)
    hub.offer(_event(2))
    assert [e.seq for e in to_alice._items] == [2]
    assert [e.seq for e in to_bob._items] == [1, 2]


async def test_room_events_from_another_replica_reach_local_subscribers() -> None:
    class Repo:
        async def last_seq(self, room_id: UUID) -> int:
            return 6

        async def last_seqs(self, room_ids: list[UUID]) -> dict[UUID, int]:
            return dict.fromkeys(room_ids, 6)

        async def events_after(
            self, room_id: UUID, after: int, upto: int, limit: int
        ) -> list[RoomEvent]:
            return []

    # No Redis: the message is handed over as the listener would.
    repo = cast(RoomsRepository, Repo())
    streams: RoomStreams = Fanout(cast(Any, None), room_stream(repo), buffer_size=10, tick_s=60)
    sub = await streams.attach(ROOM, uuid4())
    other_room = RoomEvent(UUID(int=2), 7, NOW, MemberLeft(uuid4()))
    for event in (other_room, _event(7)):
        streams._on_message(json.dumps({"o": "other", "e": event_to_json(event)}).encode())
    batch = await sub.next_batch() or []
    assert [(e.room_id, e.seq) for e in batch] == [(ROOM, 7)]
    assert batch[0].body == _event(7).body
    streams.detach(sub)
