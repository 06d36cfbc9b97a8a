"""Rooms' pure rules: message text, TURN credentials, event JSON, the live hub's ordering."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from server.rooms.live import Closed, RoomHub, Subscription
from server.rooms.model import (
    CallJoined,
    CallLeaveReason,
    CallLeft,
    CallSignal,
    EventBody,
    Heartbeat,
    IceCandidate,
    Member,
    MemberJoined,
    MemberLeft,
    Message,
    MessageNew,
    PresenceUpdate,
    RoomEvent,
    RoomKind,
    SignalKind,
    Synced,
    TextProblem,
    event_from_json,
    event_to_json,
    text_problem,
    turn_credentials,
)

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ROOM = UUID("00000000-0000-0000-0000-000000000001")


def test_text_rules() -> None:
    assert text_problem("", 10) is TextProblem.EMPTY
    assert text_problem(" \n\t", 10) is TextProblem.EMPTY
    assert text_problem("x" * 11, 10) is TextProblem.TOO_LONG
    assert text_problem("x" * 10, 10) is None
    assert text_problem("  hi  ", 10) is None


def test_room_kinds() -> None:
    assert [(k.has_text, k.has_voice) for k in RoomKind] == [
        (True, False),
        (False, True),
        (True, True),
    ]


def test_turn_credentials_follow_coturn_use_auth_secret() -> None:
    user = uuid4()
    creds = turn_credentials("s3cret", user, NOW, 3600)
    expiry = int(NOW.timestamp()) + 3600
    assert creds.username == f"{expiry}:{user}"
    digest = hmac.new(b"s3cret", creds.username.encode(), hashlib.sha1).digest()
    assert creds.password == base64.b64encode(digest).decode()
    assert creds.expire_time == datetime.fromtimestamp(expiry, tz=UTC)
    assert turn_credentials("other", user, NOW, 3600).password != creds.password


BODIES: list[EventBody] = [
    MessageNew(Message(uuid4(), ROOM, 7, uuid4(), "Ann", 'hé "quoted"', "k-1", NOW)),
    MemberJoined(Member(uuid4(), "Bob", NOW)),
    MemberLeft(uuid4()),
    PresenceUpdate(uuid4(), online=True),
    CallJoined(uuid4(), uuid4()),
    CallLeft(uuid4(), uuid4(), CallLeaveReason.TIMEOUT, call_ended=True),
    CallSignal(uuid4(), uuid4(), uuid4(), SignalKind.OFFER, sdp="v=0", ice_restart=True),
    CallSignal(
        uuid4(), uuid4(), uuid4(), SignalKind.ICE_CANDIDATE, candidate=IceCandidate("c", "0", 1)
    ),
    Heartbeat(12),
    Synced(12, (uuid4(), uuid4())),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_event_json_round_trips(body: EventBody) -> None:
    event = RoomEvent(ROOM, 5, NOW, body, recipient_id=uuid4())
    back = event_from_json(event_to_json(event))
    assert (back.room_id, back.seq, back.time, back.recipient_id) == (
        event.room_id,
        event.seq,
        event.time,
        event.recipient_id,
    )
    assert back.body == body


def test_unknown_event_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        event_from_json(
            {"room_id": str(ROOM), "seq": 1, "time": NOW.isoformat(), "body": {"kind": "x"}}
        )


def _event(seq: int, recipient: UUID | None = None) -> RoomEvent:
    return RoomEvent(ROOM, seq, NOW, MemberLeft(uuid4()), recipient_id=recipient)


def _drain(sub: Subscription) -> list[int]:
    out = []
    while sub._items:
        out.append(sub._items.popleft().seq)
    return out


def test_hub_delivers_in_order_across_gaps_and_drops_duplicates() -> None:
    hub = RoomHub(ROOM, head=10, buffer_size=100)
    sub = Subscription(hub, uuid4(), hub.head, limit=100)
    hub.subscribers.add(sub)
    assert hub.offer(_event(11))
    assert not hub.offer(_event(13))  # ahead of a gap: held back
    assert hub.offer(_event(11))  # duplicate: ignored
    assert _drain(sub) == [11]
    assert hub.offer(_event(12))  # the gap closes: 12 then 13
    assert _drain(sub) == [12, 13]
    assert hub.head == 13
    assert not hub.pending


def test_hub_skips_what_the_database_no_longer_has() -> None:
    hub = RoomHub(ROOM, head=1, buffer_size=100)
    sub = Subscription(hub, uuid4(), hub.head, limit=100)
    hub.subscribers.add(sub)
    hub.offer(_event(5))
    hub.skip_to(4)
    assert _drain(sub) == [5]
    assert hub.head == 5


def test_hub_buffer_serves_resumes_only_when_it_reaches_back() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=3)
    for seq in range(1, 6):
        hub.offer(_event(seq))
    assert [e.seq for e in hub.replayable_from_buffer(3) or []] == [4, 5]
    assert [e.seq for e in hub.replayable_from_buffer(2) or []] == [3, 4, 5]
    assert hub.replayable_from_buffer(1) is None  # 2 has left the buffer: use the database
    assert hub.replayable_from_buffer(5) == []


def test_addressed_events_reach_only_their_recipient() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=10)
    alice, bob = uuid4(), uuid4()
    to_alice = Subscription(hub, alice, 0, limit=10)
    to_bob = Subscription(hub, bob, 0, limit=10)
    hub.subscribers.update({to_alice, to_bob})
    hub.offer(_event(1, recipient=bob))
    hub.offer(_event(2))
    assert _drain(to_alice) == [2]
    assert _drain(to_bob) == [1, 2]


def test_a_slow_subscriber_overflows_instead_of_growing_without_bound() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=10)
    sub = Subscription(hub, uuid4(), 0, limit=3)
    hub.subscribers.add(sub)
    for seq in range(1, 6):
        hub.offer(_event(seq))
    assert sub.overflowed
    assert _drain(sub) == []


async def test_heartbeats_are_due_only_after_an_idle_interval() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=10)
    sub = Subscription(hub, uuid4(), 0, limit=10)
    hub.subscribers.add(sub)
    sub.tick()  # attached during this interval: not idle yet
    hub.offer(_event(1))
    assert [e.seq for e in await sub.next_batch() or []] == [1]
    sub.tick()  # an event came during the interval
    hub.offer(_event(2))
    hub.offer(_event(3))
    assert [e.seq for e in await sub.next_batch() or []] == [2, 3]  # one wake-up, both
    sub.tick()
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.tick()  # a whole interval without events
    assert await waiting is None


async def test_closing_wakes_a_waiting_subscription() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=10)
    sub = Subscription(hub, uuid4(), 0, limit=10)
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(Closed):
        await waiting


def test_a_new_hub_keeps_what_arrives_while_it_reads_the_head() -> None:
    hub = RoomHub(ROOM, head=0, buffer_size=10, ready=False)
    for seq in (9, 10, 12):  # 9 and 10 are committed before the head is read as 9
        assert hub.offer(_event(seq))
    sub = Subscription(hub, uuid4(), 0, limit=10)
    hub.subscribers.add(sub)
    assert hub.open_at(9)  # 11 is still missing: a gap to fill
    assert hub.ready.is_set()
    assert _drain(sub) == [10]
    assert hub.offer(_event(11))
    assert _drain(sub) == [11, 12]
