"""Rooms' pure types and rules: rooms, members, messages, room events, presence, calls. No I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from server.kernel.errors import ERROR_DOMAIN

DOMAIN = f"rooms.{ERROR_DOMAIN}"


class RoomKind(StrEnum):
    TEXT = "text"
    VOICE = "voice"
    TEXT_AND_VOICE = "text_and_voice"

    @property
    def has_text(self) -> bool:
        return self is not RoomKind.VOICE

    @property
    def has_voice(self) -> bool:
        return self is not RoomKind.TEXT


@dataclass(frozen=True, slots=True)
class Room:
    id: UUID
    name: str
    description: str
    kind: RoomKind
    max_members: int
    member_count: int
    creator_id: UUID
    create_time: datetime
    last_seq: int


@dataclass(frozen=True, slots=True)
class Member:
    user_id: UUID
    display_name: str
    join_time: datetime
    online: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    id: UUID
    room_id: UUID
    seq: int
    sender_id: UUID
    sender_name: str
    text: str
    idempotency_key: str
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Ack:
    message_id: UUID
    seq: int
    create_time: datetime


class MessageOrder(StrEnum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"


@dataclass(frozen=True, slots=True)
class CallParticipant:
    user_id: UUID
    display_name: str
    join_time: datetime


@dataclass(frozen=True, slots=True)
class Call:
    id: UUID
    room_id: UUID
    start_time: datetime
    max_participants: int
    participants: tuple[CallParticipant, ...] = ()

    def has(self, user_id: UUID) -> bool:
        return any(p.user_id == user_id for p in self.participants)


class CallLeaveReason(StrEnum):
    LEFT = "left"
    TIMEOUT = "timeout"


class SignalKind(StrEnum):
    OFFER = "offer"
    ANSWER = "answer"
    ICE_CANDIDATE = "ice_candidate"


class CallOutcome(StrEnum):
    CONNECTED = "connected"
    ICE_FAILED = "ice_failed"
    FAILED = "failed"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class IceCandidate:
    candidate: str
    sdp_mid: str
    sdp_mline_index: int


# --- room events ------------------------------------------------------------------------------
# Stored bodies (sequenced, persisted, replayed on resume) and ephemeral ones (sequence 0).


@dataclass(frozen=True, slots=True)
class MessageNew:
    kind: ClassVar[str] = "message.new"
    message: Message


@dataclass(frozen=True, slots=True)
class MemberJoined:
    kind: ClassVar[str] = "room.join"
    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    kind: ClassVar[str] = "room.leave"
    user_id: UUID


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    kind: ClassVar[str] = "presence.update"
    user_id: UUID
    online: bool


@dataclass(frozen=True, slots=True)
class CallJoined:
    kind: ClassVar[str] = "call.joined"
    call_id: UUID
    user_id: UUID


@dataclass(frozen=True, slots=True)
class CallLeft:
    kind: ClassVar[str] = "call.left"
    call_id: UUID
    user_id: UUID
    reason: CallLeaveReason
    call_ended: bool


@dataclass(frozen=True, slots=True)
class CallSignal:
    kind: ClassVar[str] = "call.signal"
    call_id: UUID
    from_user_id: UUID
    to_user_id: UUID
    signal: SignalKind
    sdp: str = ""
    candidate: IceCandidate | None = None
    ice_restart: bool = False


@dataclass(frozen=True, slots=True)
class Heartbeat:
    kind: ClassVar[str] = "heartbeat"
    last_seq: int


@dataclass(frozen=True, slots=True)
class Synced:
    kind: ClassVar[str] = "synced"
    last_seq: int
    online_user_ids: tuple[UUID, ...] = ()


EventBody = (
    MessageNew
    | MemberJoined
    | MemberLeft
    | PresenceUpdate
    | CallJoined
    | CallLeft
    | CallSignal
    | Heartbeat
    | Synced
)


# eq=False: identity hashing, so the api layer can cache one encoding per event object that
# every local subscriber shares.
@dataclass(frozen=True, eq=False)
class RoomEvent:
    room_id: UUID
    seq: int  # 0 for ephemeral events
    time: datetime
    body: EventBody
    # Only this user's subscriptions receive the event (call signals); None: every member.
    recipient_id: UUID | None = None

    @property
    def stored(self) -> bool:
        return self.seq > 0

    def visible_to(self, user_id: UUID) -> bool:
        return self.recipient_id is None or self.recipient_id == user_id


# --- JSON for room_events.payload and the Redis fan-out ---------------------------------------


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _message_json(m: Message) -> dict[str, Any]:
    return {
        "id": str(m.id),
        "room_id": str(m.room_id),
        "seq": m.seq,
        "sender_id": str(m.sender_id),
        "sender_name": m.sender_name,
        "text": m.text,
        "idempotency_key": m.idempotency_key,
        "create_time": m.create_time.isoformat(),
    }


def _message_from(d: dict[str, Any]) -> Message:
    return Message(
        id=UUID(d["id"]),
        room_id=UUID(d["room_id"]),
        seq=int(d["seq"]),
        sender_id=UUID(d["sender_id"]),
        sender_name=str(d["sender_name"]),
        text=str(d["text"]),
        idempotency_key=str(d["idempotency_key"]),
        create_time=_time(d["create_time"]),
    )


def body_to_json(body: EventBody) -> dict[str, Any]:
    match body:
        case MessageNew(message=m):
            return {"kind": body.kind, "message": _message_json(m)}
        case MemberJoined(member=m):
            return {
                "kind": body.kind,
                "user_id": str(m.user_id),
                "display_name": m.display_name,
                "join_time": m.join_time.isoformat(),
            }
        case MemberLeft(user_id=u):
            return {"kind": body.kind, "user_id": str(u)}
        case PresenceUpdate(user_id=u, online=online):
            return {"kind": body.kind, "user_id": str(u), "online": online}
        case CallJoined(call_id=c, user_id=u):
            return {"kind": body.kind, "call_id": str(c), "user_id": str(u)}
        case CallLeft(call_id=c, user_id=u, reason=r, call_ended=ended):
            return {
                "kind": body.kind,
                "call_id": str(c),
                "user_id": str(u),
                "reason": r.value,
                "call_ended": ended,
            }
        case CallSignal():
            out: dict[str, Any] = {
                "kind": body.kind,
                "call_id": str(body.call_id),
                "from_user_id": str(body.from_user_id),
                "to_user_id": str(body.to_user_id),
                "signal": body.signal.value,
                "sdp": body.sdp,
                "ice_restart": body.ice_restart,
            }
            if body.candidate is not None:
                out["candidate"] = {
                    "candidate": body.candidate.candidate,
                    "sdp_mid": body.candidate.sdp_mid,
                    "sdp_mline_index": body.candidate.sdp_mline_index,
                }
            return out
    raise ValueError(f"unknown event body {body!r}")  # pragma: no cover


def body_from_json(d: dict[str, Any]) -> EventBody:
    kind = d.get("kind")
    if kind == MessageNew.kind:
        return MessageNew(_message_from(d["message"]))
    if kind == MemberJoined.kind:
        return MemberJoined(
            Member(UUID(d["user_id"]), str(d["display_name"]), _time(d["join_time"]))
        )
    if kind == MemberLeft.kind:
        return MemberLeft(UUID(d["user_id"]))
    if kind == PresenceUpdate.kind:
        return PresenceUpdate(UUID(d["user_id"]), bool(d["online"]))
    if kind == CallJoined.kind:
        return CallJoined(UUID(d["call_id"]), UUID(d["user_id"]))
    if kind == CallLeft.kind:
        return CallLeft(
            UUID(d["call_id"]),
            UUID(d["user_id"]),
            CallLeaveReason(d["reason"]),
            bool(d["call_ended"]),
        )
    if kind == CallSignal.kind:
        raw = d.get("candidate")
        candidate = (
            IceCandidate(str(raw["candidate"]), str(raw["sdp_mid"]), int(raw["sdp_mline_index"]))
            if isinstance(raw, dict)
            else None
        )
        return CallSignal(
            call_id=UUID(d["call_id"]),
            from_user_id=UUID(d["from_user_id"]),
            to_user_id=UUID(d["to_user_id"]),
            signal=SignalKind(d["signal"]),
            sdp=str(d.get("sdp", "")),
            candidate=candidate,
            ice_restart=bool(d.get("ice_restart", False)),
        )
    raise ValueError(f"unknown event kind {kind!r}")


def event_to_json(event: RoomEvent) -> dict[str, Any]:
    return {
        "room_id": str(event.room_id),
        "seq": event.seq,
        "time": event.time.isoformat(),
        "recipient_id": str(event.recipient_id) if event.recipient_id else None,
        "body": body_to_json(event.body),
    }


def event_from_json(d: dict[str, Any]) -> RoomEvent:
    recipient = d.get("recipient_id")
    return RoomEvent(
        room_id=UUID(d["room_id"]),
        seq=int(d["seq"]),
        time=_time(d["time"]),
        body=body_from_json(d["body"]),
        recipient_id=UUID(recipient) if recipient else None,
    )


def room_of(event: RoomEvent) -> UUID:
    """The fan-out topic of a room event (server/kernel/fanout.py)."""
    return event.room_id


# --- presence ---------------------------------------------------------------------------------
# A member is online while they hold an open subscription; each subscription is one entry
# ``<user>:<connection>`` in the room's presence set (see PresenceRepository).


def presence_event(room_id: UUID, user_id: UUID, *, online: bool) -> RoomEvent:
    return RoomEvent(
        room_id=room_id, seq=0, time=datetime.now(UTC), body=PresenceUpdate(user_id, online)
    )


def presence_member(user_id: UUID, conn_id: str) -> str:
    return f"{user_id}:{conn_id}"


def presence_user(member: bytes | str) -> UUID:
    """The user of a presence entry."""
    text = member.decode() if isinstance(member, bytes) else member
    return UUID(text.split(":", 1)[0])


# --- rules ------------------------------------------------------------------------------------


class TextProblem(StrEnum):
    EMPTY = "MESSAGE_EMPTY"
    TOO_LONG = "MESSAGE_TOO_LONG"


def text_problem(text: str, max_length: int) -> TextProblem | None:
    """Why a message text is refused, or None. Whitespace-only counts as empty."""
    if not text.strip():
        return TextProblem.EMPTY
    if len(text) > max_length:
        return TextProblem.TOO_LONG
    return None


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    username: str
    password: str
    expire_time: datetime


def turn_credentials(secret: str, user_id: UUID, now: datetime, ttl_s: int) -> TurnCredentials:
    """coturn `use-auth-secret` (TURN REST API) credentials: the username carries the expiry,
    the password is base64(HMAC-SHA1(secret, username))."""
    expiry = int(now.timestamp()) + ttl_s
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(
        username=username,
        password=base64.b64encode(digest).decode(),
        expire_time=datetime.fromtimestamp(expiry, tz=UTC),
    )
