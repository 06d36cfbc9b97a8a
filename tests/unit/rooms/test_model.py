"""Rooms' pure rules: message text, TURN credentials, event JSON, presence entries."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from server.rooms.model import (
    CallJoined,
    CallLeaveReason,
    CallLeft,
    CallSignal,
    EventBody,
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
    TextProblem,
    event_from_json,
    event_to_json,
    presence_event,
    presence_member,
    presence_user,
    room_of,
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


def test_presence_entries_name_the_user_and_the_connection() -> None:
    user = uuid4()
    member = presence_member(user, "c0nn:x")
    assert member == f"{user}:c0nn:x"
    assert presence_user(member) == user
    assert presence_user(member.encode()) == user  # as Redis returns it


def test_presence_updates_are_ephemeral_room_events() -> None:
    user = uuid4()
    event = presence_event(ROOM, user, online=False)
    assert not event.stored
    assert event.seq == 0
    assert room_of(event) == ROOM
    assert event.body == PresenceUpdate(user, online=False)
    assert event.visible_to(uuid4())
