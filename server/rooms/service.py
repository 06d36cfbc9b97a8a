"""Rooms use cases: rooms and membership, chat, the event stream, presence, call signaling."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prometheus_client import Counter, Histogram
from pydantic import SecretStr

from server.kernel import paging
from server.kernel.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from server.kernel.fanout import Closed, Fanout, FanoutMetrics, Overflow, Stream, Subscription
from server.kernel.principal import Principal
from server.kernel.ratelimit import RateLimiter
from server.rooms import model
from server.rooms.model import (
    DOMAIN,
    Ack,
    Call,
    CallOutcome,
    CallSignal,
    Heartbeat,
    IceCandidate,
    Member,
    MemberLeft,
    Message,
    MessageOrder,
    Room,
    RoomEvent,
    RoomKind,
    SignalKind,
    Synced,
    TurnCredentials,
    event_from_json,
    event_to_json,
    presence_event,
    room_of,
)
from server.rooms.repository import (
    EVENTS_CHANNEL,
    CallFull,
    KeyReused,
    PresenceRepository,
    RoomFull,
    RoomsRepository,
)

log = logging.getLogger(__name__)
D = DOMAIN
# Most events one SubscribeRoomResponse carries (one stream write).
STREAM_BATCH = 256

# The live side of room streams (server/kernel/fanout.py): topics are rooms, events are
# RoomEvents, subscriptions deliver to a user (call signals only to their recipient).
RoomStreams = Fanout[UUID, RoomEvent, UUID]
RoomSubscription = Subscription[UUID, RoomEvent, UUID]
# rooms_fanout_*_total, rooms_subscriber_overflows_total, rooms_subscriptions
FANOUT_METRICS = FanoutMetrics.named("rooms", "room")


def room_stream(repo: RoomsRepository) -> Stream[UUID, RoomEvent, UUID]:
    """Room events on the kernel fan-out: JSON on ``EVENTS_CHANNEL``, gaps read from
    PostgreSQL, call signals only to their recipient."""
    return Stream(
        EVENTS_CHANNEL,
        room_of,
        event_to_json,
        event_from_json,
        repo.events_after,
        repo.last_seq,
        repo.last_seqs,
        visible=RoomEvent.visible_to,
        metrics=FANOUT_METRICS,
    )


MESSAGES = Counter(
    "rooms_messages_total",
    "SendMessage results: stored, duplicate (a retry) or refused.",
    ["result"],
)
DELIVERED = Counter(
    "rooms_events_delivered_total", "Room events written to subscriber streams.", ["kind"]
)
STREAM_WRITES = Counter(
    "rooms_stream_writes_total",
    "SubscribeRoom responses carrying room events (replayed or live; not synced/heartbeat).",
)
STREAM_EVENTS = Counter(
    "rooms_stream_events_total",
    "Events carried by SubscribeRoom responses: divided by rooms_stream_writes_total, the "
    "mean batch size.",
)
RESUMES = Counter(
    "rooms_resumes_total",
    "Subscriptions with after_sequence: ok when the replay finished, failed otherwise.",
    ["result"],
)
REPLAYED = Counter(
    "rooms_replayed_events_total", "Events replayed on resume, by source.", ["source"]
)
CALL_JOINS = Counter("rooms_call_joins_total", "JoinCall results.", ["result"])
CALL_SETUP_ATTEMPTS = Counter(
    "rooms_call_setup_attempts_total", "Offers relayed that start a peer connection."
)
ICE_RESTARTS = Counter("rooms_ice_restarts_total", "Offers relayed that restart ICE.")
CALL_OUTCOMES = Counter(
    "rooms_call_outcomes_total", "Call setup outcomes reported by clients.", ["outcome", "relayed"]
)
ICE_FAILURES = Counter("rooms_ice_failures_total", "ICE failures reported by clients.")
CALL_SETUP_SECONDS = Histogram(
    "rooms_call_setup_seconds",
    "Call setup time reported by clients (first offer to connected).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
)
RETENTION_DELETED = Counter(
    "rooms_retention_deleted_total", "Messages and stored events removed by retention."
)

_DELIVERED_BY_KIND: dict[str, Counter] = {}


def _delivered(kind: str) -> Counter:
    child = _DELIVERED_BY_KIND.get(kind)
    if child is None:
        child = _DELIVERED_BY_KIND[kind] = DELIVERED.labels(kind)
    return child


def _count_delivered(events: list[RoomEvent]) -> None:
    STREAM_WRITES.inc()
    STREAM_EVENTS.inc(len(events))
    if len(events) == 1:
        _delivered(events[0].body.kind).inc()
        return
    kinds: dict[str, int] = {}
    for event in events:
        kind = event.body.kind
        kinds[kind] = kinds.get(kind, 0) + 1
    for kind, n in kinds.items():
        _delivered(kind).inc(n)


@dataclass(frozen=True)
class RoomsConfig:
    max_members: int = 500
    max_message_length: int = 4000
    call_max_participants: int = 4
    retention_days: int = 30
    retention_interval_s: float = 3600.0
    presence_ttl_s: float = 45.0
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_credential_ttl_s: int = 86_400
    turn_secret: SecretStr | None = None


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _user_id(principal: Principal) -> UUID:
    if principal.user is None:
        raise Unauthenticated("UNAUTHENTICATED", "a user is required", domain=D)
    return principal.user.user_id


def _not_a_member() -> PermissionDenied:
    return PermissionDenied("NOT_A_MEMBER", "join the room first", domain=D)


def _room_not_found() -> NotFound:
    return NotFound("ROOM_NOT_FOUND", "no such room", domain=D)


def _cursor_pair(token: str) -> tuple[datetime, UUID] | None:
    cursor = paging.decode(token)
    if cursor is None:
        return None
    try:
        return datetime.fromisoformat(str(cursor["t"])), UUID(str(cursor["i"]))
    except (KeyError, ValueError):
        raise paging.invalid_token(domain=D) from None


class RoomsService:
    def __init__(
        self,
        repo: RoomsRepository,
        live: RoomStreams,
        presence: PresenceRepository,
        config: RoomsConfig,
        *,
        stopping: asyncio.Event | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._repo = repo
        self._live = live
        self._presence = presence
        self._config = config
        self._stopping = stopping or asyncio.Event()
        self._limiter = limiter
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()

    # --- helpers -----------------------------------------------------------------------------

    async def _member_room(self, room_id: UUID, user_id: UUID) -> Room:
        room, joined = await self._repo.room_for_member(room_id, user_id)
        if room is None:
            raise _room_not_found()
        if not joined:
            raise _not_a_member()
        return room

    async def _publish(self, events: list[RoomEvent]) -> None:
        for event in events:
            await self._live.publish(event)

    # --- rooms -------------------------------------------------------------------------------

    async def create_room(
        self,
        principal: Principal,
        *,
        name: str,
        description: str,
        kind: RoomKind,
        max_members: int,
        request_id: UUID | None,
    ) -> Room:
        user_id = _user_id(principal)
        if not name.strip():
            raise InvalidArgument("NAME_EMPTY", "name must not be blank", domain=D)
        if max_members > self._config.max_members:
            raise InvalidArgument(
                "MAX_MEMBERS_TOO_LARGE",
                f"max_members may be at most {self._config.max_members}",
                domain=D,
                metadata={"max_members": str(self._config.max_members)},
            )
        room, event = await self._repo.create_room(
            creator_id=user_id,
            request_id=request_id,
            name=name.strip(),
            description=description,
            kind=kind,
            max_members=max_members or self._config.max_members,
        )
        if event is not None:
            await self._publish([event])
        return room

    async def get_room(self, principal: Principal, room_id: UUID) -> tuple[Room, bool]:
        room, joined = await self._repo.room_for_member(room_id, _user_id(principal))
        if room is None:
            raise _room_not_found()
        return room, joined

    async def list_rooms(
        self, principal: Principal, page_size: int, page_token: str, *, joined_only: bool
    ) -> tuple[list[Room], str]:
        user_id = _user_id(principal)
        size = paging.page_size(page_size)
        rooms = await self._repo.list_rooms(
            _cursor_pair(page_token), size + 1, user_id if joined_only else None
        )
        token = ""
        if len(rooms) > size:
            rooms = rooms[:size]
            token = paging.encode({"t": rooms[-1].create_time.isoformat(), "i": str(rooms[-1].id)})
        return rooms, token

    async def join_room(self, principal: Principal, room_id: UUID) -> tuple[Room, Member]:
        user_id = _user_id(principal)
        if await self._repo.get_room(room_id) is None:
            raise _room_not_found()
        try:
            room, member, event = await self._repo.join(room_id, user_id)
        except RoomFull:
            room_now = await self._repo.get_room(room_id)
            limit = room_now.max_members if room_now else 0
            raise FailedPrecondition(
                "ROOM_FULL",
                f"the room has its maximum of {limit} members",
                domain=D,
                metadata={"max_members": str(limit)},
            ) from None
        if event is not None:
            await self._publish([event])
        return room, member

    async def leave_room(self, principal: Principal, room_id: UUID) -> None:
        user_id = _user_id(principal)
        if await self._repo.get_room(room_id) is None:
            raise _room_not_found()
        await self._publish(await self._repo.leave(room_id, user_id))

    async def list_members(
        self, principal: Principal, room_id: UUID, page_size: int, page_token: str
    ) -> tuple[list[Member], str]:
        await self._member_room(room_id, _user_id(principal))
        size = paging.page_size(page_size)
        members = await self._repo.list_members(room_id, _cursor_pair(page_token), size + 1)
        token = ""
        if len(members) > size:
            members = members[:size]
            token = paging.encode(
                {"t": members[-1].join_time.isoformat(), "i": str(members[-1].user_id)}
            )
        online = await self._presence.online(room_id)
        return [
            Member(m.user_id, m.display_name, m.join_time, online=m.user_id in online)
            for m in members
        ], token

    # --- chat --------------------------------------------------------------------------------

    async def send_message(
        self, principal: Principal, room_id: UUID, idempotency_key: str, text: str
    ) -> Ack:
        user_id = _user_id(principal)
        try:
            room = await self._member_room(room_id, user_id)
            if not room.kind.has_text:
                raise FailedPrecondition("TEXT_NOT_ENABLED", "this is a voice-only room", domain=D)
            problem = model.text_problem(text, self._config.max_message_length)
            if problem is model.TextProblem.EMPTY:
                raise InvalidArgument("MESSAGE_EMPTY", "the message is empty", domain=D)
            if problem is model.TextProblem.TOO_LONG:
                limit = self._config.max_message_length
                raise InvalidArgument(
                    "MESSAGE_TOO_LONG",
                    f"the message is longer than {limit} characters",
                    domain=D,
                    metadata={"max_length": str(limit)},
                )
            if self._limiter is not None:
                try:
                    await self._limiter.take("message", f"{user_id}:{room_id}")
                except ResourceExhausted as exc:
                    raise ResourceExhausted(
                        "RATE_LIMITED",
                        exc.message,
                        retry_after_s=exc.retry_after_s,
                        domain=D,
                        metadata={"limit": "room_messages"},
                    ) from None
            try:
                ack, event = await self._repo.send_message(room_id, user_id, idempotency_key, text)
            except KeyReused:
                raise FailedPrecondition(
                    "IDEMPOTENCY_KEY_REUSED",
                    "this idempotency key was used for another message",
                    domain=D,
                ) from None
        except (PermissionDenied, InvalidArgument, FailedPrecondition, ResourceExhausted, NotFound):
            MESSAGES.labels("refused").inc()
            raise
        if event is None:
            MESSAGES.labels("duplicate").inc()
        else:
            MESSAGES.labels("stored").inc()
            await self._live.publish(event)
        return ack

    async def list_messages(
        self,
        principal: Principal,
        room_id: UUID,
        *,
        page_size: int,
        page_token: str,
        before: int,
        after: int,
        order: MessageOrder,
    ) -> tuple[list[Message], str]:
        await self._member_room(room_id, _user_id(principal))
        size = paging.page_size(page_size)
        cursor = paging.decode(page_token)
        if cursor is not None:
            try:
                last = int(cursor["s"])
                if cursor.get("o") != order.value:
                    raise ValueError
            except (KeyError, ValueError, TypeError):
                raise paging.invalid_token(
                    "page_token does not match this query", domain=D
                ) from None
            if order is MessageOrder.NEWEST_FIRST:
                before = min(before, last) if before else last
            else:
                after = max(after, last)
        messages = await self._repo.list_messages(
            room_id, before=before, after=after, order=order, limit=size + 1
        )
        token = ""
        if len(messages) > size:
            messages = messages[:size]
            token = paging.encode({"s": messages[-1].seq, "o": order.value})
        return messages, token

    # --- the event stream --------------------------------------------------------------------

    async def subscribe(
        self, principal: Principal, room_id: UUID, after: int | None
    ) -> AsyncIterator[list[RoomEvent]]:
        """The room's stream as batches (one write each): at least one event, at most
        ``STREAM_BATCH``, in stream order. Idle, a batch is one event; under load a batch is
        everything queued for the subscriber, so a busy stream writes once per wakeup."""
        user_id = _user_id(principal)
        await self._member_room(room_id, user_id)
        if self._stopping.is_set():
            raise _shutting_down()
        try:
            sub = await self._live.attach(room_id, user_id)
        except Closed:
            raise _shutting_down() from None
        conn_id = sub.conn_id
        resumed = after is not None
        synced = False
        try:
            came_online, online = await self._presence.add(room_id, user_id, conn_id)
            if came_online:
                await self._live.publish(presence_event(room_id, user_id, online=True))
            last = after
            while True:
                if last is None:
                    last = sub.start
                elif last < sub.start:
                    async for replayed in self._replay(sub, last):
                        yield replayed
                    last = sub.start
                if not synced:
                    yield [
                        RoomEvent(
                            room_id=room_id,
                            seq=0,
                            time=self._clock(),
                            body=Synced(last, tuple(sorted(online, key=str))),
                        )
                    ]
                    synced = True
                    if resumed:
                        RESUMES.labels("ok").inc()
                try:
                    while True:
                        if self._stopping.is_set():
                            raise _shutting_down()
                        batch = await sub.next_batch(STREAM_BATCH)
                        if batch is None:
                            head = self._live.head(room_id) or 0
                            yield [
                                RoomEvent(
                                    room_id=room_id,
                                    seq=0,
                                    time=self._clock(),
                                    body=Heartbeat(max(head, last)),
                                )
                            ]
                            continue
                        out: list[RoomEvent] = []
                        ended = False
                        for live in batch:
                            if live.stored:
                                if live.seq <= last:
                                    continue
                                last = live.seq
                            out.append(live)
                            if isinstance(live.body, MemberLeft) and live.body.user_id == user_id:
                                ended = True  # no longer a member: the stream ends
                                break
                        if out:
                            _count_delivered(out)
                            yield out
                        if ended:
                            return
                except Overflow:
                    self._live.detach(sub)
                    try:
                        sub = await self._live.attach(room_id, user_id, conn_id)
                    except Closed:
                        raise _shutting_down() from None
                except Closed:
                    raise _shutting_down() from None
        finally:
            if resumed and not synced:
                RESUMES.labels("failed").inc()
            self._live.detach(sub)
            self._spawn(self._went_away(room_id, user_id, conn_id))

    async def _replay(self, sub: RoomSubscription, after: int) -> AsyncIterator[list[RoomEvent]]:
        """Stored events after ``after`` up to the subscription's start, buffer or database,
        in batches of at most ``STREAM_BATCH``."""
        buffered = sub.hub.replayable_from_buffer(after)
        if buffered is not None:
            events = [e for e in buffered if e.seq <= sub.start and e.visible_to(sub.viewer)]
            REPLAYED.labels("buffer").inc(len(events))
            for i in range(0, len(events), STREAM_BATCH):
                chunk = events[i : i + STREAM_BATCH]
                _count_delivered(chunk)
                yield chunk
            return
        cursor = after
        while cursor < sub.start:
            page = await self._repo.events_after(sub.hub.topic, cursor, sub.start, STREAM_BATCH)
            if not page:
                return
            visible = [e for e in page if e.visible_to(sub.viewer)]
            if visible:
                REPLAYED.labels("db").inc(len(visible))
                _count_delivered(visible)
                yield visible
            cursor = page[-1].seq

    async def _went_away(self, room_id: UUID, user_id: UUID, conn_id: str) -> None:
        try:
            if await self._presence.remove(room_id, user_id, conn_id):
                await self._live.publish(presence_event(room_id, user_id, online=False))
        except Exception:
            log.debug("presence removal failed", exc_info=True)

    async def sweep_presence(self, watched: dict[UUID, list[RoomSubscription]]) -> None:
        """Every fan-out tick, for all rooms with subscribers on this replica at once: refresh
        their presence entries, sweep expired ones (a dead replica's) and announce who went
        offline (a few Redis round trips whatever the number of rooms)."""
        entries = {
            room_id: [(s.viewer, s.conn_id) for s in subs] for room_id, subs in watched.items()
        }
        gone = await self._presence.refresh_many(entries)
        for room_id, users in gone.items():
            for user_id in users:
                await self._live.publish(presence_event(room_id, user_id, online=False))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- calls -------------------------------------------------------------------------------

    async def _voice_room(self, room_id: UUID, user_id: UUID) -> Room:
        room = await self._member_room(room_id, user_id)
        if not room.kind.has_voice:
            raise FailedPrecondition("VOICE_NOT_ENABLED", "this is a text-only room", domain=D)
        return room

    async def join_call(self, principal: Principal, room_id: UUID) -> tuple[Call, list[UUID], int]:
        user_id = _user_id(principal)
        await self._voice_room(room_id, user_id)
        limit = self._config.call_max_participants
        prune: frozenset[UUID] = frozenset()
        current = await self._repo.active_call(room_id)
        if (
            current is not None
            and not current.has(user_id)
            and len(current.participants) >= current.max_participants
        ):
            # Participants without a subscription for longer than the presence TTL cannot
            # receive signals: they left without LeaveCall. Redis unknown: prune nobody.
            online = await self._presence.lookup(room_id)
            if online is not None:
                settled = self._clock() - timedelta(seconds=self._config.presence_ttl_s)
                prune = frozenset(
                    p.user_id
                    for p in current.participants
                    if p.user_id not in online and p.join_time < settled
                )
        try:
            call, peers, events = await self._repo.join_call(room_id, user_id, limit, prune)
        except CallFull:
            CALL_JOINS.labels("full").inc()
            max_participants = current.max_participants if current is not None else limit
            raise ResourceExhausted(
                "CALL_FULL",
                f"the call has its peer-to-peer maximum of {max_participants} participants",
                retry_after_s=30.0,
                domain=D,
                metadata={"max_participants": str(max_participants)},
            ) from None
        CALL_JOINS.labels("joined" if events else "already").inc()
        await self._publish(events)
        joined_seq = events[-1].seq if events else 0
        return call, peers, joined_seq

    async def leave_call(self, principal: Principal, room_id: UUID, call_id: UUID) -> None:
        user_id = _user_id(principal)
        await self._member_room(room_id, user_id)
        await self._publish(await self._repo.leave_call(room_id, call_id, user_id))

    async def active_call(self, principal: Principal, room_id: UUID) -> Call | None:
        await self._voice_room(room_id, _user_id(principal))
        return await self._repo.active_call(room_id)

    async def send_signal(
        self,
        principal: Principal,
        room_id: UUID,
        call_id: UUID,
        *,
        to_user_id: UUID,
        kind: SignalKind,
        sdp: str,
        candidate: IceCandidate | None,
        ice_restart: bool,
        request_id: UUID | None = None,
    ) -> int:
        user_id = _user_id(principal)
        await self._member_room(room_id, user_id)
        if to_user_id == user_id:
            raise InvalidArgument("INVALID_SIGNAL", "a signal must go to another peer", domain=D)
        if kind in (SignalKind.OFFER, SignalKind.ANSWER) and not sdp.strip():
            raise InvalidArgument("INVALID_SIGNAL", "an offer or answer needs sdp", domain=D)
        if kind is SignalKind.ICE_CANDIDATE and candidate is None:
            raise InvalidArgument("INVALID_SIGNAL", "an ICE signal needs a candidate", domain=D)
        if ice_restart and kind is not SignalKind.OFFER:
            raise InvalidArgument("INVALID_SIGNAL", "only an offer restarts ICE", domain=D)
        call = await self._repo.get_call(room_id, call_id)
        if call is None or not call.has(user_id) or not call.has(to_user_id):
            # A retry after the call (or the sender's part in it) ended still gets the first
            # signal's sequence; while the call goes on, append_signal dedupes the retry.
            if request_id is not None:
                sent = await self._repo.signal_sent(call_id, user_id, request_id)
                if sent is not None:
                    return sent
            if call is None:
                raise NotFound("CALL_NOT_FOUND", "no such active call in this room", domain=D)
            if not call.has(user_id):
                raise FailedPrecondition("NOT_IN_CALL", "join the call first", domain=D)
            raise FailedPrecondition("PEER_NOT_IN_CALL", "that user is not in the call", domain=D)
        body = CallSignal(
            call_id=call_id,
            from_user_id=user_id,
            to_user_id=to_user_id,
            signal=kind,
            sdp=sdp if kind is not SignalKind.ICE_CANDIDATE else "",
            candidate=candidate if kind is SignalKind.ICE_CANDIDATE else None,
            ice_restart=ice_restart,
        )
        seq, event = await self._repo.append_signal(room_id, body, request_id)
        if event is None:  # a racing retry stored it first
            return seq
        if kind is SignalKind.OFFER:
            (ICE_RESTARTS if ice_restart else CALL_SETUP_ATTEMPTS).inc()
        await self._live.publish(event)
        return event.seq

    def ice_servers(self, principal: Principal) -> tuple[list[IceServer], datetime | None]:
        user_id = _user_id(principal)
        servers: list[IceServer] = []
        if self._config.stun_urls:
            servers.append(IceServer(urls=self._config.stun_urls))
        secret = self._config.turn_secret
        if secret is None or not self._config.turn_urls:
            return servers, None
        creds: TurnCredentials = model.turn_credentials(
            secret.get_secret_value(), user_id, self._clock(), self._config.turn_credential_ttl_s
        )
        servers.append(
            IceServer(
                urls=self._config.turn_urls, username=creds.username, credential=creds.password
            )
        )
        return servers, creds.expire_time

    async def report_outcome(
        self,
        principal: Principal,
        room_id: UUID,
        call_id: UUID,
        *,
        outcome: CallOutcome,
        setup_ms: int,
        relayed: bool,
        ice_restarted: bool,
        request_id: UUID | None = None,
    ) -> None:
        user_id = _user_id(principal)
        await self._member_room(room_id, user_id)
        if request_id is not None and not await self._repo.record_report(
            room_id, call_id, user_id, request_id, outcome.value
        ):
            return  # a retry: counted already
        CALL_OUTCOMES.labels(outcome.value, "true" if relayed else "false").inc()
        if outcome is CallOutcome.ICE_FAILED:
            ICE_FAILURES.inc()
        if outcome is CallOutcome.CONNECTED and setup_ms > 0:
            CALL_SETUP_SECONDS.observe(setup_ms / 1000)
        log.info(
            "call outcome",
            extra={
                "room_id": str(room_id),
                "call_id": str(call_id),
                "outcome": outcome.value,
                "setup_ms": setup_ms,
                "relayed": relayed,
                "ice_restarted": ice_restarted,
            },
        )

    # --- retention ---------------------------------------------------------------------------

    async def apply_retention(self) -> int | None:
        """One retention pass; None when another replica's pass holds the lock (skipped)."""
        if self._config.retention_days <= 0:
            return 0
        cutoff = self._clock() - timedelta(days=self._config.retention_days)
        deleted = await self._repo.delete_older_than(cutoff)
        if deleted:
            RETENTION_DELETED.inc(deleted)
            log.info("rooms retention", extra={"deleted": deleted})
        return deleted

    async def run_retention(self) -> None:
        """Periodically remove messages and events older than the retention period. The
        first pass waits a jittered interval (replicas starting together do not all run at
        start-up), and each pass runs on one replica (see ``delete_older_than``)."""
        interval = self._config.retention_interval_s
        await asyncio.sleep(interval * random.uniform(0.5, 1.0))  # noqa: S311 # nosec B311
        while True:
            try:
                await self.apply_retention()
            except Exception:
                log.warning("rooms retention failed", exc_info=True)
            await asyncio.sleep(interval)


def _shutting_down() -> Unavailable:
    return Unavailable(
        "SHUTTING_DOWN", "the server is restarting; subscribe again with after_sequence", domain=D
    )
