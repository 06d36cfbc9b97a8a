"""Live fan-out of room events across replicas, and presence.

Events are stored in PostgreSQL first (the repository), then handed to :class:`LiveRooms`:
it delivers them to this replica's subscribers at once and publishes them on one Redis
pub/sub channel that every replica listens to. Each replica keeps, per room that has local
subscribers, a hub: the highest contiguous sequence it has seen (``head``), a buffer of the
last stored events (resumes served without PostgreSQL), and the subscriptions. An event that
arrives ahead of a gap (a reordered or lost Redis message) is held back and released when the
missing sequence arrives; only a gap that holds ``head`` back for the whole fill delay is read
from PostgreSQL. A periodic tick compares ``head`` with the room's ``last_seq`` in PostgreSQL at
the previous tick, so subscribers catch up even when Redis is down.

Delivery is paced per room (``FLUSH_INTERVAL_S``): events are queued on every subscription
at once, and one pass wakes the writers, at most once per interval, so under load a writer
sends everything queued for it as one response (see server/rooms/api.py encode_response).

Presence: one Redis sorted set per room, members ``<user>:<connection>`` scored by expiry.
Open subscriptions refresh their entry every tick; an entry of a dead replica expires, and
whichever replica sweeps it first announces the user offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.rooms.model import PresenceUpdate, RoomEvent, event_from_json, event_to_json

log = logging.getLogger(__name__)

CHANNEL = "sb:rooms:events"
PRESENCE_KEY = "sb:rooms:presence:{room}"
FILL_PAGE = 500
# A room's subscribers are woken at most once per this interval (the first event after a
# quiet interval goes out at once): under load each wakeup writes every event queued since,
# as one stream message, instead of one write per event per subscriber.
FLUSH_INTERVAL_S = 0.03

PUBLISHED = Counter(
    "rooms_fanout_published_total", "Room events published to Redis for other replicas."
)
PUBLISH_FAILURES = Counter(
    "rooms_fanout_publish_failures_total",
    "Room events not published to Redis (Redis down); other replicas catch up from PostgreSQL.",
)
RECEIVED = Counter("rooms_fanout_received_total", "Room events received from other replicas.")
GAP_FILLS = Counter(
    "rooms_fanout_gap_fills_total", "Times a replica read missing room events from PostgreSQL."
)
OVERFLOWS = Counter(
    "rooms_subscriber_overflows_total",
    "Subscribers that fell behind their live queue and were resynchronised from PostgreSQL.",
)
SUBSCRIPTIONS = Gauge("rooms_subscriptions", "Open room subscriptions on this replica.")

LoadEvents = Callable[[UUID, int, int, int], Awaitable[list[RoomEvent]]]
LastSeq = Callable[[UUID], Awaitable[int | None]]


class Overflow(Exception):
    """The subscriber fell too far behind; resynchronise from the database."""


class Closed(Exception):
    """The server is stopping."""


class Subscription:
    """One open stream's queue of live events. Heartbeats are due when the ticker finds it
    idle for a whole interval (no timer per wait: waits are cheap on the hot path)."""

    def __init__(
        self, hub: RoomHub, user_id: UUID, start: int, limit: int, conn_id: str | None = None
    ) -> None:
        self.hub = hub
        self.user_id = user_id
        self.start = start  # the hub's head when attached: live events come after it
        self.conn_id = conn_id or uuid.uuid4().hex[:12]
        self._limit = limit
        self._items: deque[RoomEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.active = True  # something was queued since the last tick
        self._beat = False
        self.overflowed = False
        self.closed = False

    @property
    def queued(self) -> bool:
        return bool(self._items)

    def wake(self) -> None:
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, event: RoomEvent) -> None:
        """Queue an event; the hub wakes the writer (see RoomHub.flush)."""
        if self.overflowed or not event.visible_to(self.user_id):
            return
        if len(self._items) >= self._limit:
            self.overflowed = True
            self._items.clear()
            OVERFLOWS.inc()
            self._wake()
        else:
            self._items.append(event)
        self.active = True

    def tick(self) -> None:
        """Called every heartbeat interval: an idle subscription owes its client a heartbeat."""
        if not self.active:
            self._beat = True
            self._wake()
        self.active = False

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def next_batch(self, limit: int = 256) -> list[RoomEvent] | None:
        """The queued live events, at least one and at most ``limit`` (the rest stays queued
        for the next call); None when a heartbeat is due."""
        while not self._items:
            if self.closed:
                raise Closed
            if self.overflowed:
                raise Overflow
            if self._beat:
                self._beat = False
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed:
            raise Closed
        items = self._items
        if len(items) <= limit:
            self._items = deque()
            return list(items)
        popleft = items.popleft
        return [popleft() for _ in range(limit)]


class RoomHub:
    """One room's live state on this replica."""

    def __init__(
        self,
        room_id: UUID,
        head: int,
        buffer_size: int,
        *,
        ready: bool = True,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.room_id = room_id
        self._flush_interval_s = flush_interval_s
        self._flush_handle: asyncio.Handle | None = None
        self._flush_time = 0.0
        self.head = head
        self.buffer: deque[RoomEvent] = deque(maxlen=buffer_size)
        self.pending: dict[int, RoomEvent] = {}
        self.subscribers: set[Subscription] = set()
        self.filling: asyncio.Task[None] | None = None
        # When ``head`` last moved: a gap is filled from PostgreSQL only when it has held the
        # head back for the whole fill delay (reordered publishes usually land in between).
        self.progress_time = time.monotonic()
        # The room's last sequence in PostgreSQL at the previous tick: in flight through
        # Redis then, so missing it one tick later means it was lost.
        self.tick_last: int | None = None
        # A new hub collects live events while it reads the room's head from PostgreSQL, so
        # an event committed meanwhile is not missed.
        self.ready = asyncio.Event()
        self.broken = False
        if ready:
            self.ready.set()

    def open_at(self, head: int) -> bool:
        """The head is known: deliver what arrived meanwhile; True when a gap remains."""
        self.head = max(self.head, head)
        for seq in [s for s in self.pending if s <= self.head]:
            del self.pending[seq]
        while self.head + 1 in self.pending:
            self._accept(self.pending.pop(self.head + 1))
        self.ready.set()
        return bool(self.pending)

    def replayable_from_buffer(self, after: int) -> list[RoomEvent] | None:
        """Buffered events with seq > after, or None when the buffer does not reach back."""
        if after >= self.head:
            return []
        if not self.buffer or self.buffer[0].seq > after + 1:
            return None
        return [e for e in self.buffer if e.seq > after]

    def _deliver(self, event: RoomEvent) -> None:
        for sub in self.subscribers:
            sub.push(event)
        if self._flush_handle is None and self.subscribers:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop, so nobody waits (synchronous use in unit tests)
                return
            delay = self._flush_time + self._flush_interval_s - loop.time()
            if delay > 0:
                self._flush_handle = loop.call_later(delay, self.flush)
            else:
                self._flush_handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """One pass over the subscribers: wake those with queued events (their writers send
        everything queued as one response). Paced: at most once per flush interval."""
        self._flush_handle = None
        self._flush_time = asyncio.get_running_loop().time()
        for sub in self.subscribers:
            if sub.queued:
                sub.wake()

    def cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def offer(self, event: RoomEvent) -> bool:
        """Take an event; False when it is ahead of a gap (kept pending)."""
        if not event.stored:
            self._deliver(event)
            return True
        if event.seq <= self.head:
            return True  # a duplicate (own echo, a gap fill racing the live copy)
        if not self.ready.is_set():
            self.pending[event.seq] = event
            return True  # sorted out by open_at
        if event.seq > self.head + 1:
            self.pending[event.seq] = event
            return False
        self._accept(event)
        while self.head + 1 in self.pending:
            self._accept(self.pending.pop(self.head + 1))
        for seq in [s for s in self.pending if s <= self.head]:
            del self.pending[seq]
        return True

    def _accept(self, event: RoomEvent) -> None:
        self.head = event.seq
        self.progress_time = time.monotonic()
        self.buffer.append(event)
        self._deliver(event)

    def skip_to(self, seq: int) -> None:
        """Events up to seq are gone from the database too (retention): move on."""
        if seq > self.head:
            self.head = seq
            while self.head + 1 in self.pending:
                self._accept(self.pending.pop(self.head + 1))


class Presence:
    """Who has an open subscription to a room, in Redis, TTL-bounded."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    @staticmethod
    def _key(room_id: UUID) -> str:
        return PRESENCE_KEY.format(room=room_id)

    async def lookup(self, room_id: UUID) -> set[UUID] | None:
        """Users online in the room; None when Redis cannot tell."""
        try:
            members = await self._redis.zrangebyscore(self._key(room_id), time.time(), "+inf")
        except (RedisError, OSError):
            return None
        return {_user_of(m) for m in members}

    async def online(self, room_id: UUID) -> set[UUID]:
        """Users online in the room (nobody when Redis cannot tell)."""
        return await self.lookup(room_id) or set()

    async def add(self, room_id: UUID, user_id: UUID, conn_id: str) -> bool:
        """Register a connection; True when the user was offline before."""
        try:
            was_online = user_id in await self.online(room_id)
            key = self._key(room_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {f"{user_id}:{conn_id}": time.time() + self._ttl_s})
                pipe.expire(key, int(self._ttl_s) + 1)
                await pipe.execute()
        except (RedisError, OSError):
            return False
        return not was_online

    async def remove(self, room_id: UUID, user_id: UUID, conn_id: str) -> bool:
        """Drop a connection; True when the user has no other live connection."""
        try:
            removed = await self._redis.zrem(self._key(room_id), f"{user_id}:{conn_id}")
        except (RedisError, OSError):
            return False
        return bool(removed) and user_id not in await self.online(room_id)

    async def refresh(self, room_id: UUID, entries: list[tuple[UUID, str]]) -> list[UUID]:
        """Extend this replica's connections; sweep expired ones. Returns users gone offline."""
        key = self._key(room_id)
        now = time.time()
        try:
            if entries:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(key, {f"{u}:{c}": now + self._ttl_s for u, c in entries})
                    pipe.expire(key, int(self._ttl_s) + 1)
                    await pipe.execute()
            expired = await self._redis.zrangebyscore(key, "-inf", now)
            gone: set[UUID] = set()
            for member in expired:
                if await self._redis.zrem(key, _raw(member)):  # exactly one replica wins each
                    gone.add(_user_of(member))
            if not gone:
                return []
            still = await self.online(room_id)
        except (RedisError, OSError):
            return []
        return [u for u in gone if u not in still]


def _raw(member: object) -> bytes | str:
    if isinstance(member, bytes | str):
        return member
    raise TypeError(f"unexpected presence member {member!r}")


def _user_of(member: object) -> UUID:
    raw = _raw(member)
    text = raw.decode() if isinstance(raw, bytes) else raw
    return UUID(text.split(":", 1)[0])


class LiveRooms:
    def __init__(
        self,
        redis: Redis,
        *,
        load_events: LoadEvents,
        last_seq: LastSeq,
        buffer_size: int,
        tick_s: float,
        presence_ttl_s: float,
        queue_limit: int = 10_000,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._flush_interval_s = flush_interval_s
        self._redis = redis
        self._load = load_events
        self._last_seq = last_seq
        self._buffer_size = buffer_size
        self._tick_s = tick_s
        self._queue_limit = max(queue_limit, buffer_size)
        self.presence = Presence(redis, presence_ttl_s)
        self.origin = uuid.uuid4().hex
        self._hubs: dict[UUID, RoomHub] = {}
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=100_000)
        self._closed = False

    # --- subscriptions -----------------------------------------------------------------------

    async def attach(
        self, room_id: UUID, user_id: UUID, conn_id: str | None = None
    ) -> Subscription:
        while True:
            if self._closed:
                raise Closed
            hub = self._hubs.get(room_id)
            if hub is None:
                hub = self._hubs[room_id] = RoomHub(
                    room_id,
                    0,
                    self._buffer_size,
                    ready=False,
                    flush_interval_s=self._flush_interval_s,
                )
                try:
                    head = await self._last_seq(room_id) or 0
                except BaseException:
                    hub.broken = True
                    if self._hubs.get(room_id) is hub:
                        del self._hubs[room_id]
                    hub.ready.set()  # waiters retry
                    raise
                if hub.open_at(head) and hub.filling is None:
                    hub.filling = asyncio.create_task(self._fill(hub, delay=0.05))
            elif not hub.ready.is_set():
                await hub.ready.wait()
                if hub.broken or self._hubs.get(room_id) is not hub:
                    continue  # its creator failed, or it was dropped meanwhile
            break
        sub = Subscription(hub, user_id, hub.head, self._queue_limit, conn_id)
        hub.subscribers.add(sub)
        SUBSCRIPTIONS.inc()
        return sub

    def detach(self, sub: Subscription) -> None:
        hub = sub.hub
        if sub in hub.subscribers:
            hub.subscribers.discard(sub)
            SUBSCRIPTIONS.dec()
        if not hub.subscribers and self._hubs.get(hub.room_id) is hub:
            del self._hubs[hub.room_id]
            if hub.filling is not None:
                hub.filling.cancel()
            hub.cancel_flush()

    def head(self, room_id: UUID) -> int | None:
        hub = self._hubs.get(room_id)
        return hub.head if hub is not None else None

    def close(self) -> None:
        """The server is stopping: every open subscription ends."""
        self._closed = True
        for hub in list(self._hubs.values()):
            for sub in list(hub.subscribers):
                sub.close()

    # --- ingestion ---------------------------------------------------------------------------

    def ingest(self, event: RoomEvent) -> None:
        hub = self._hubs.get(event.room_id)
        if hub is None:
            return
        if not hub.offer(event) and hub.filling is None:
            hub.filling = asyncio.create_task(self._fill(hub, delay=0.05))

    async def publish(self, event: RoomEvent) -> None:
        """Deliver locally now; other replicas through Redis (never fails the caller)."""
        self.ingest(event)
        payload = json.dumps({"o": self.origin, "e": event_to_json(event)})
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            PUBLISH_FAILURES.inc()

    async def _fill(self, hub: RoomHub, *, delay: float = 0.0, upto: int | None = None) -> None:
        """Read missing events from PostgreSQL. Every sequence below a committed one is
        committed too (see the repository), so what the database lacks in the range is gone
        for good (retention) and is skipped."""
        try:
            while delay:
                # Reordered arrivals usually land meanwhile and release what waits for them;
                # PostgreSQL only when the head has not moved for the whole delay.
                if upto is None and not hub.pending:
                    return
                wait = hub.progress_time + delay - time.monotonic()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            while True:
                target = upto if upto is not None else max(hub.pending, default=hub.head)
                if target <= hub.head:
                    return
                GAP_FILLS.inc()
                events = await self._load(hub.room_id, hub.head, target, FILL_PAGE)
                for event in events:
                    if event.seq > hub.head + 1:
                        hub.skip_to(event.seq - 1)
                    hub.offer(event)
                if len(events) < FILL_PAGE and hub.head < target:
                    hub.skip_to(target - 1 if target in hub.pending else target)
        except Exception:
            log.warning("room gap fill failed", exc_info=True)
        finally:
            hub.filling = None

    # --- background --------------------------------------------------------------------------

    async def run(self) -> None:
        """Redis listener, publisher and the periodic tick, until cancelled."""
        tasks = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._publisher()),
            asyncio.create_task(self._ticker()),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _publisher(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 500:
                batch.append(self._outbox.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for payload in batch:
                        pipe.publish(CHANNEL, payload)
                    await pipe.execute()
                PUBLISHED.inc(len(batch))
            except (RedisError, OSError) as exc:
                PUBLISH_FAILURES.inc(len(batch))
                log.warning("room fan-out publish failed", extra={"error": type(exc).__name__})

    async def _listen(self, retry_s: float = 0.5) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):
                            self._on_message(data)
            except (RedisError, OSError) as exc:
                log.warning(
                    "room fan-out listener reconnecting", extra={"error": type(exc).__name__}
                )
                await asyncio.sleep(retry_s)

    def _on_message(self, data: bytes) -> None:
        try:
            envelope = json.loads(data)
            if envelope.get("o") == self.origin:
                return
            event = event_from_json(envelope["e"])
        except (ValueError, KeyError, TypeError):
            log.warning("room fan-out: malformed message dropped")
            return
        RECEIVED.inc()
        self.ingest(event)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            hubs = list(self._hubs.values())
            for hub in hubs:  # heartbeats first: they must not wait for PostgreSQL
                for sub in list(hub.subscribers):
                    sub.tick()
            for hub in hubs:
                try:
                    await self._tick(hub)
                except Exception:
                    log.warning("room tick failed", exc_info=True)

    async def _tick(self, hub: RoomHub) -> None:
        last = await self._last_seq(hub.room_id)
        # What PostgreSQL held at the previous tick and still has not arrived was lost on the
        # way (events committed since are most likely still in flight through Redis).
        due = hub.tick_last
        hub.tick_last = last
        if due is not None and due > hub.head and hub.filling is None:
            hub.filling = asyncio.create_task(self._fill(hub, upto=due))
        entries = [(s.user_id, s.conn_id) for s in hub.subscribers]
        for user_id in await self.presence.refresh(hub.room_id, entries):
            await self.publish(presence_event(hub.room_id, user_id, online=False))


def presence_event(room_id: UUID, user_id: UUID, *, online: bool) -> RoomEvent:
    return RoomEvent(
        room_id=room_id, seq=0, time=datetime.now(UTC), body=PresenceUpdate(user_id, online)
    )


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
