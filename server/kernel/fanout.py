"""Resumable sequenced streams fanned out across replicas over Redis pub/sub.

A domain stores its events first (each with the next sequence of its topic: a room, a
strategy, ...), then hands them to :class:`Fanout`: it delivers them to this replica's
subscribers at once and publishes them on one Redis pub/sub channel (named by the domain) that
every replica listens to. Each replica keeps, per topic that has local subscribers, a
:class:`Hub`: the highest contiguous sequence it has seen (``head``), a buffer of the last
stored events (resumes served without the database), and the subscriptions. An event that
arrives ahead of a gap (a reordered or lost Redis message) is held back and released when the
missing sequence arrives; only a gap that holds ``head`` back for the whole fill delay is read
through the domain's loader. A periodic tick compares ``head`` with the topic's ``last_seq`` at
the previous tick, so subscribers catch up even when Redis is down.

Sequences are per topic, gapless in storage (a committed N implies every sequence below N is
committed too, or removed by retention); sequence 0 marks an ephemeral event, delivered live
only (never buffered, ordered or loaded).

Delivery is paced per topic (``FLUSH_INTERVAL_S``): events are queued on every subscription
at once, and one pass wakes the writers, at most once per interval, so under load a writer
sends everything queued for it as one response.

The domain describes its stream with a :class:`Stream`: the channel name, where an event
belongs (``topic_of``), its JSON encoding (``encode``/``decode``), the loader for gaps
(``load_events(topic, after, upto, limit)``: stored events with after < seq <= upto in
sequence order), ``last_seq(topic)`` and optionally ``last_seqs(topics)`` (the last sequences
of many topics in one query, used by the tick; without it the tick asks ``last_seq`` per topic),
who may see an event (``visible``, given the
subscription's viewer) and its metrics (:meth:`FanoutMetrics.named`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.registry import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.kernel.broadcast import Broadcast

log = logging.getLogger(__name__)

FILL_PAGE = 500
# A topic's subscribers are woken at most once per this interval (the first event after a
# quiet interval goes out at once): under load each wakeup writes every event queued since,
# as one stream message, instead of one write per event per subscriber.
FLUSH_INTERVAL_S = 0.03
# How long the head may stand still behind a gap before the gap is read from the database.
FILL_DELAY_S = 0.05


class Sequenced(Protocol):
    """What the fan-out needs of an event: its sequence in its topic (0: ephemeral)."""

    @property
    def seq(self) -> int: ...


K = TypeVar("K", bound=Hashable)  # a topic's id
E = TypeVar("E", bound=Sequenced)  # an event
V = TypeVar("V")  # who a subscription delivers to (``visible`` decides per event)


@dataclass(frozen=True, slots=True)
class FanoutMetrics:
    published: Counter
    publish_failures: Counter
    received: Counter
    gap_fills: Counter
    overflows: Counter
    subscriptions: Gauge

    @classmethod
    def named(
        cls, prefix: str, noun: str, *, registry: CollectorRegistry | None = REGISTRY
    ) -> FanoutMetrics:
        """``<prefix>_fanout_published_total``, ``<prefix>_fanout_publish_failures_total``,
        ``<prefix>_fanout_received_total``, ``<prefix>_fanout_gap_fills_total``,
        ``<prefix>_subscriber_overflows_total`` and ``<prefix>_subscriptions``; ``noun`` names
        the stream in the help texts (lower case). Create them once per process."""
        title = noun[:1].upper() + noun[1:]
        return cls(
            published=Counter(
                f"{prefix}_fanout_published_total",
                f"{title} events published to Redis for other replicas.",
                registry=registry,
            ),
            publish_failures=Counter(
                f"{prefix}_fanout_publish_failures_total",
                f"{title} events not published to Redis (Redis down); other replicas catch up "
                "from PostgreSQL.",
                registry=registry,
            ),
            received=Counter(
                f"{prefix}_fanout_received_total",
                f"{title} events received from other replicas.",
                registry=registry,
            ),
            gap_fills=Counter(
                f"{prefix}_fanout_gap_fills_total",
                f"Times a replica read missing {noun} events from PostgreSQL.",
                registry=registry,
            ),
            overflows=Counter(
                f"{prefix}_subscriber_overflows_total",
                "Subscribers that fell behind their live queue and were resynchronised from "
                "PostgreSQL.",
                registry=registry,
            ),
            subscriptions=Gauge(
                f"{prefix}_subscriptions",
                f"Open {noun} subscriptions on this replica.",
                registry=registry,
            ),
        )


# Counted nowhere: hubs and fan-outs built without metrics (unit tests).
_UNCOUNTED = FanoutMetrics.named("unregistered", "stream", registry=None)


@dataclass(frozen=True, slots=True)
class Stream(Generic[K, E, V]):
    """One kind of sequenced stream, as its domain defines it."""

    channel: str  # the Redis pub/sub channel every replica listens to
    topic_of: Callable[[E], K]
    encode: Callable[[E], Any]  # to JSON-able data
    decode: Callable[[Any], E]  # raises ValueError, KeyError or TypeError when malformed
    load_events: Callable[[K, int, int, int], Awaitable[list[E]]]  # (topic, after, upto, limit)
    last_seq: Callable[[K], Awaitable[int | None]]
    # Many topics at once ({topic: last_seq}, unknown topics left out): one query per tick.
    last_seqs: Callable[[list[K]], Awaitable[dict[K, int]]] | None = None
    visible: Callable[[E, V], bool] | None = None  # None: every subscriber sees every event
    metrics: FanoutMetrics = _UNCOUNTED


class Overflow(Exception):
    """The subscriber fell too far behind; resynchronise from the database."""


class Closed(Exception):
    """The server is stopping."""


class Subscription(Generic[K, E, V]):
    """One open stream's queue of live events. Heartbeats are due when the ticker finds it
    idle for a whole interval (no timer per wait: waits are cheap on the hot path)."""

    def __init__(
        self, hub: Hub[K, E, V], viewer: V, start: int, limit: int, conn_id: str | None = None
    ) -> None:
        self.hub = hub
        self.viewer = viewer
        self.start = start  # the hub's head when attached: live events come after it
        self.conn_id = conn_id or uuid.uuid4().hex[:12]
        self._limit = limit
        self._visible = hub.visible
        self._overflows = hub.metrics.overflows
        self._items: deque[E] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.active = True  # something was queued since the last tick
        self._beat = False
        self.overflowed = False
        self.closed = False

    @property
    def queued(self) -> bool:
        return bool(self._items)

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, event: E) -> None:
        """Queue an event; the hub wakes the writer (see Hub.flush)."""
        if self.overflowed or (self._visible is not None and not self._visible(event, self.viewer)):
            return
        if len(self._items) >= self._limit:
            self.overflowed = True
            self._items.clear()
            self._overflows.inc()
            self.wake()
        else:
            self._items.append(event)
        self.active = True

    def tick(self) -> None:
        """Called every heartbeat interval: an idle subscription owes its client a heartbeat."""
        if not self.active:
            self._beat = True
            self.wake()
        self.active = False

    def close(self) -> None:
        self.closed = True
        self.wake()

    async def next_batch(self, limit: int = 256) -> list[E] | None:
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


class Hub(Generic[K, E, V]):
    """One topic's live state on this replica."""

    def __init__(
        self,
        topic: K,
        head: int,
        buffer_size: int,
        *,
        ready: bool = True,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        visible: Callable[[E, V], bool] | None = None,
        metrics: FanoutMetrics = _UNCOUNTED,
    ) -> None:
        self.topic = topic
        self.visible = visible
        self.metrics = metrics
        self._flush_interval_s = flush_interval_s
        self._flush_handle: asyncio.Handle | None = None
        self._flush_time = 0.0
        self.head = head
        self.buffer: deque[E] = deque(maxlen=buffer_size)
        self.pending: dict[int, E] = {}
        self.subscribers: set[Subscription[K, E, V]] = set()
        self.filling: asyncio.Task[None] | None = None
        # When ``head`` last moved: a gap is filled from the database only when it has held
        # the head back for the whole fill delay (reordered publishes usually land in between).
        self.progress_time = time.monotonic()
        # The topic's last sequence in the database at the previous tick: in flight through
        # Redis then, so missing it one tick later means it was lost.
        self.tick_last: int | None = None
        # A new hub collects live events while it reads the topic's head from the database,
        # so an event committed meanwhile is not missed.
        self.ready = asyncio.Event()
        self.broken = False
        if ready:
            self.ready.set()

    def open_at(self, head: int) -> bool:
        """The head is known: deliver what arrived meanwhile; True when a gap remains."""
        self.head = max(self.head, head)
        self._drain()
        self.ready.set()
        return bool(self.pending)

    def replayable_from_buffer(self, after: int) -> list[E] | None:
        """Buffered events with seq > after, or None when the buffer does not reach back."""
        if after >= self.head:
            return []
        if not self.buffer or self.buffer[0].seq > after + 1:
            return None
        return [e for e in self.buffer if e.seq > after]

    def _deliver(self, event: E) -> None:
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

    def offer(self, event: E) -> bool:
        """Take an event; False when it is ahead of a gap (kept pending)."""
        if event.seq <= 0:  # ephemeral
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
        self._drain()
        return True

    def _accept(self, event: E) -> None:
        self.head = event.seq
        self.progress_time = time.monotonic()
        self.buffer.append(event)
        self._deliver(event)

    def skip_to(self, seq: int) -> None:
        """Events up to seq are gone from the database too (retention): move on."""
        if seq > self.head:
            self.head = seq
            self._drain()

    def _drain(self) -> None:
        """Release pending events that continue the head; drop those at or below it."""
        while self.head + 1 in self.pending:
            self._accept(self.pending.pop(self.head + 1))
        for seq in [s for s in self.pending if s <= self.head]:
            del self.pending[seq]


# Called every tick with every topic that has local subscribers (and those subscribers).
TickHook = Callable[[dict[K, list[Subscription[K, E, V]]]], Awaitable[None]]


class Fanout(Generic[K, E, V]):
    """Sequenced streams of one kind (one Redis channel) on this replica."""

    def __init__(
        self,
        redis: Redis,
        stream: Stream[K, E, V],
        *,
        buffer_size: int,
        tick_s: float,
        queue_limit: int = 10_000,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._channel = stream.channel
        self._metrics = stream.metrics
        self._queue_limit = max(queue_limit, buffer_size)
        self._buffer_size = buffer_size
        self._tick_s = tick_s
        self._flush_interval_s = flush_interval_s
        self._on_tick: TickHook[K, E, V] | None = None
        self.origin = uuid.uuid4().hex
        self._hubs: dict[K, Hub[K, E, V]] = {}
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=100_000)
        self._closed = False

    # --- subscriptions -----------------------------------------------------------------------

    async def attach(
        self, topic: K, viewer: V, conn_id: str | None = None
    ) -> Subscription[K, E, V]:
        while True:
            if self._closed:
                raise Closed
            hub = self._hubs.get(topic)
            if hub is None:
                hub = self._hubs[topic] = Hub(
                    topic,
                    0,
                    self._buffer_size,
                    ready=False,
                    flush_interval_s=self._flush_interval_s,
                    visible=self._stream.visible,
                    metrics=self._metrics,
                )
                try:
                    head = await self._stream.last_seq(topic) or 0
                except BaseException:
                    hub.broken = True
                    if self._hubs.get(topic) is hub:
                        del self._hubs[topic]
                    hub.ready.set()  # waiters retry
                    raise
                if hub.open_at(head) and hub.filling is None:
                    hub.filling = asyncio.create_task(self._fill(hub, delay=FILL_DELAY_S))
            elif not hub.ready.is_set():
                await hub.ready.wait()
                if hub.broken or self._hubs.get(topic) is not hub:
                    continue  # its creator failed, or it was dropped meanwhile
            break
        sub = Subscription(hub, viewer, hub.head, self._queue_limit, conn_id)
        hub.subscribers.add(sub)
        self._metrics.subscriptions.inc()
        return sub

    def detach(self, sub: Subscription[K, E, V]) -> None:
        hub = sub.hub
        if sub in hub.subscribers:
            hub.subscribers.discard(sub)
            self._metrics.subscriptions.dec()
        if not hub.subscribers and self._hubs.get(hub.topic) is hub:
            del self._hubs[hub.topic]
            if hub.filling is not None:
                hub.filling.cancel()
            hub.cancel_flush()

    def head(self, topic: K) -> int | None:
        hub = self._hubs.get(topic)
        return hub.head if hub is not None else None

    def close(self) -> None:
        """The server is stopping: every open subscription ends."""
        self._closed = True
        for hub in list(self._hubs.values()):
            for sub in list(hub.subscribers):
                sub.close()

    # --- ingestion ---------------------------------------------------------------------------

    def ingest(self, event: E) -> None:
        hub = self._hubs.get(self._stream.topic_of(event))
        if hub is None:
            return
        if not hub.offer(event) and hub.filling is None:
            hub.filling = asyncio.create_task(self._fill(hub, delay=FILL_DELAY_S))

    async def publish(self, event: E) -> None:
        """Deliver locally now; other replicas through Redis (never fails the caller)."""
        self.ingest(event)
        payload = json.dumps({"o": self.origin, "e": self._stream.encode(event)})
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self._metrics.publish_failures.inc()

    async def _fill(
        self, hub: Hub[K, E, V], *, delay: float = 0.0, upto: int | None = None
    ) -> None:
        """Read missing events from the database. Every sequence below a committed one is
        committed too, so what the database lacks in the range is gone for good (retention)
        and is skipped."""
        try:
            while delay:
                # Reordered arrivals usually land meanwhile and release what waits for them;
                # the database only when the head has not moved for the whole delay.
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
                self._metrics.gap_fills.inc()
                events = await self._stream.load_events(hub.topic, hub.head, target, FILL_PAGE)
                for event in events:
                    if event.seq > hub.head + 1:
                        hub.skip_to(event.seq - 1)
                    hub.offer(event)
                if len(events) < FILL_PAGE and hub.head < target:
                    hub.skip_to(target - 1 if target in hub.pending else target)
        except Exception:
            log.warning("fan-out gap fill failed", extra={"channel": self._channel}, exc_info=True)
        finally:
            hub.filling = None

    # --- background --------------------------------------------------------------------------

    async def run(self, on_tick: TickHook[K, E, V] | None = None) -> None:
        """Redis listener, publisher and the periodic tick, until cancelled. ``on_tick`` runs
        every tick, once, with every topic that has local subscribers, after the catch-up
        check (for upkeep such as presence, batched across topics)."""
        self._on_tick = on_tick
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
                        pipe.publish(self._channel, payload)
                    await pipe.execute()
                self._metrics.published.inc(len(batch))
            except (RedisError, OSError) as exc:
                self._metrics.publish_failures.inc(len(batch))
                log.warning(
                    "fan-out publish failed",
                    extra={"channel": self._channel, "error": type(exc).__name__},
                )

    async def _listen(self) -> None:
        await Broadcast(self._redis, self._channel).listen(self._on_message, retry_s=0.5)

    def _on_message(self, data: str | bytes) -> None:
        try:
            envelope = json.loads(data)
            if envelope.get("o") == self.origin:
                return
            event = self._stream.decode(envelope["e"])
        except (ValueError, KeyError, TypeError):
            log.warning("fan-out: malformed message dropped", extra={"channel": self._channel})
            return
        self._metrics.received.inc()
        self.ingest(event)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                await self._tick_all()
            except Exception:
                log.warning("fan-out tick failed", extra={"channel": self._channel}, exc_info=True)

    async def _tick_all(self) -> None:
        """One tick: heartbeats, then one ``last_seqs`` query for every watched topic, then
        the tick hook once for all of them (a tick must stay short with many topics)."""
        hubs = list(self._hubs.values())
        for hub in hubs:  # heartbeats first: they must not wait for the database
            for sub in list(hub.subscribers):
                sub.tick()
        if not hubs:
            return
        try:
            lasts = await self._last_seqs([hub.topic for hub in hubs])
        except Exception:
            log.warning(
                "fan-out tick: last sequences failed",
                extra={"channel": self._channel},
                exc_info=True,
            )
        else:
            for hub in hubs:
                self._catch_up(hub, lasts.get(hub.topic))
        if self._on_tick is not None:
            watched = {hub.topic: list(hub.subscribers) for hub in hubs if hub.subscribers}
            if watched:
                await self._on_tick(watched)

    async def _last_seqs(self, topics: list[K]) -> dict[K, int]:
        if self._stream.last_seqs is not None:
            return await self._stream.last_seqs(topics)
        out: dict[K, int] = {}
        for topic in topics:
            last = await self._stream.last_seq(topic)
            if last is not None:
                out[topic] = last
        return out

    def _catch_up(self, hub: Hub[K, E, V], last: int | None) -> None:
        # What the database held at the previous tick and still has not arrived was lost on
        # the way (events stored since are most likely still in flight through Redis).
        due = hub.tick_last
        hub.tick_last = last
        if due is not None and due > hub.head and hub.filling is None:
            hub.filling = asyncio.create_task(self._fill(hub, upto=due))
