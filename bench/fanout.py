"""Room fan-out benchmark: ``python -m bench.fanout`` (``--seconds 5`` for a quick run).

A room of 200 members, each subscribed with ``RoomService.SubscribeRoom``: half of the streams on
one server replica, half on a second replica sharing PostgreSQL and Redis. One member sends
``SendMessage`` to the first replica at 100 msg/s (open loop: sends are started on a fixed
schedule, not after the previous answer) for 30 s. Every subscriber records which messages it
got and when, so the run reports:

- delivered / expected (expected = acknowledged messages x subscribers), duplicates, and
  events seen out of room-sequence order, per stream;
- end-to-end latency, from just before the SendMessage call to the subscriber decoding the
  event (both on CLOCK_MONOTONIC, one machine), p50/p95/p99/max, also split into subscribers
  on the sending replica and on the other one (through Redis);
- the physical floor in the same run: the same number of subscribers, each its own connection
  to the same Redis with ``SUBSCRIBE``, a publisher at the same rate publishing an encoded
  ``RoomEvent`` of the same size, and the same measurements. Ratios switchboard / floor;
- cores busy per process group and CPU microseconds per delivered event (/proc), and the
  replicas' own fan-out counters (published, received, gap fills, overflows) from /metrics.

Subscribers run in ``--workers`` processes (default: the CPU count) so that the client side is
not the bottleneck of one Python process; the sender and the publisher run in this process.
Results go to stdout and ``.build/bench-fanout.json``. Like ``bench.run``, it reports and does
not gate (``--strict``: exit 1 when a goal is missed).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis
import uvloop
from google.protobuf import timestamp_pb2
from switchboard.rooms.v1 import rooms_pb2 as pb
from switchboard.rooms.v1 import rooms_pb2_grpc as pb_grpc

from bench import procstat
from bench.clients import CHANNEL_OPTIONS, widget_login
from bench.load import percentile
from bench.run import (
    add_output_arguments,
    log,
    machine,
    run_on_platform,
    scrape,
    serve,
    start_infra,
)
from server.devstack.processes import ServerProcess
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID, Infra, Secrets, server_env

P99_GOAL_MS = 100.0
FLOOR_CHANNEL = "bench:fanout:floor"
FIRST_TELEGRAM_ID = 710_000_001
STREAMS_PER_CHANNEL = 25
# Generous: an overloaded replica answers late, and a send that gave up is not counted.
SEND_TIMEOUT_S = 30.0
# What the sender writes: "fanout <message number> <CLOCK_MONOTONIC ns before the send>".
TEXT_PREFIX = "fanout"


# --- subscriber workers (separate processes) ---------------------------------------------------
@dataclass(frozen=True)
class Subscriber:
    index: int
    replica: int  # 0: the replica the sender talks to, 1: the other one
    addr: str  # gRPC address, or the Redis URL for the floor
    token: str = ""


@dataclass(frozen=True)
class WorkerSpec:
    kind: str  # "grpc" | "redis"
    room_id: str
    subscribers: tuple[Subscriber, ...]


@dataclass
class StreamResult:
    subscriber: int
    replica: int
    unique: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    error: str = ""


@dataclass
class WorkerResult:
    streams: list[StreamResult]
    # Latencies in ms, per replica of the subscriber (array('d') bytes, to cross the pipe).
    latencies: dict[int, bytes]
    # Message numbers each stream received, for delivered/expected against the acked set.
    received: dict[int, bytes]


def parse_text(text: str) -> tuple[int, int] | None:
    parts = text.split()
    if len(parts) != 3 or parts[0] != TEXT_PREFIX:
        return None
    return int(parts[1]), int(parts[2])


class Recorder:
    def __init__(self, sub: Subscriber, progress: Synchronized[int]) -> None:
        self.sub = sub
        self.result = StreamResult(sub.index, sub.replica)
        self.seen: set[int] = set()
        self.order = array.array("q")
        self.last_sequence = -1
        self.progress = progress

    def record(
        self, number: int, sent_ns: int, sequence: int, latencies: array.array[float]
    ) -> None:
        now = time.monotonic_ns()
        if number in self.seen:
            self.result.duplicates += 1
            return
        self.seen.add(number)
        self.order.append(number)
        self.result.unique += 1
        # Order is the room's: each stream must see sequences strictly increasing.
        if sequence <= self.last_sequence:
            self.result.out_of_order += 1
        self.last_sequence = max(self.last_sequence, sequence)
        latencies.append((now - sent_ns) / 1e6)
        self.progress.value += 1


async def _grpc_subscriber(
    sub: Subscriber,
    channel: grpc.aio.Channel,
    room_id: str,
    rec: Recorder,
    synced: asyncio.Event,
    latencies: array.array[float],
) -> None:
    stub = pb_grpc.RoomServiceStub(channel)
    call = stub.SubscribeRoom(
        pb.SubscribeRoomRequest(room_id=room_id),
        metadata=(("authorization", f"Bearer {sub.token}"),),
    )
    try:
        async for response in call:
            for event in response.events:  # one write carries every event queued for us
                kind = event.WhichOneof("kind")
                if kind == "message_new":
                    parsed = parse_text(event.message_new.message.text)
                    if parsed is not None:
                        rec.record(parsed[0], parsed[1], event.sequence, latencies)
                elif kind == "synced":
                    synced.set()
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            rec.result.error = f"{exc.code().name}: {exc.details()}"
            synced.set()


async def _redis_subscriber(
    sub: Subscriber, rec: Recorder, synced: asyncio.Event, latencies: array.array[float]
) -> None:
    client = aioredis.Redis.from_url(sub.addr)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(FLOOR_CHANNEL)
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message["type"] == "subscribe":
                synced.set()
            elif message["type"] == "message":
                event = pb.RoomEvent.FromString(message["data"])
                parsed = parse_text(event.message_new.message.text)
                if parsed is not None:
                    rec.record(parsed[0], parsed[1], event.sequence, latencies)
    except Exception as exc:  # reported, not raised: the run goes on
        rec.result.error = repr(exc)
        synced.set()
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()


async def _worker(
    spec: WorkerSpec, ready: mp.Queue[Any], stop: Any, progress: Synchronized[int]
) -> WorkerResult:
    latencies = {0: array.array("d"), 1: array.array("d")}
    recorders = [Recorder(sub, progress) for sub in spec.subscribers]
    synced = [asyncio.Event() for _ in spec.subscribers]
    channels: list[grpc.aio.Channel] = []
    tasks: list[asyncio.Task[None]] = []
    by_addr: dict[str, list[int]] = {}
    for i, sub in enumerate(spec.subscribers):
        by_addr.setdefault(sub.addr, []).append(i)
    for addr, indexes in by_addr.items():
        channel: grpc.aio.Channel | None = None
        for n, i in enumerate(indexes):
            sub = spec.subscribers[i]
            if spec.kind == "grpc":
                if n % STREAMS_PER_CHANNEL == 0:
                    channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
                    channels.append(channel)
                assert channel is not None
                coro = _grpc_subscriber(
                    sub, channel, spec.room_id, recorders[i], synced[i], latencies[sub.replica]
                )
            else:
                coro = _redis_subscriber(sub, recorders[i], synced[i], latencies[sub.replica])
            tasks.append(asyncio.create_task(coro))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in synced)), 60)
    ready.put(("ready", os.getpid()))
    while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing Event, set by the parent
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return WorkerResult(
        streams=[r.result for r in recorders],
        latencies={k: v.tobytes() for k, v in latencies.items()},
        received={r.sub.index: r.order.tobytes() for r in recorders},
    )


def worker_main(
    spec: WorkerSpec,
    ready: mp.Queue[Any],
    results: mp.Queue[Any],
    stop: Any,
    progress: Synchronized[int],
) -> None:
    try:
        result = uvloop.run(_worker(spec, ready, stop, progress))
    except BaseException as exc:
        ready.put(("error", repr(exc)))
        results.put(("error", repr(exc)))
        raise
    results.put(("result", result))


# --- the platform --------------------------------------------------------------------------------
@dataclass
class Platform:
    infra: Infra
    servers: list[ServerProcess]
    secrets: Secrets
    metrics_addrs: list[str] = field(default_factory=list)


FANOUT_COUNTERS = (
    "rooms_fanout_published_total",
    "rooms_fanout_publish_failures_total",
    "rooms_fanout_received_total",
    "rooms_fanout_gap_fills_total",
    "rooms_subscriber_overflows_total",
    "rooms_stream_writes_total",
    "rooms_stream_events_total",
)


def fanout_counters(metrics_addr: str) -> dict[str, float]:
    """The rooms fan-out counters of one replica (Prometheus text format)."""
    return {
        name.removeprefix("rooms_").removesuffix("_total"): value
        for name, value in scrape(metrics_addr, FANOUT_COUNTERS).items()
    }


@contextlib.contextmanager
def platform_up(workdir: Path, replicas: int = 2) -> Iterator[Platform]:
    with contextlib.ExitStack() as stack:
        running, dsn = start_infra(stack, workdir, "switchboard_fanout")
        secrets = Secrets()
        servers = []
        metrics_addrs = []
        for index in range(replicas):
            env = server_env(dsn, running.redis.url, secrets)
            env["SWITCHBOARD_RATE_LIMIT_ENABLED"] = "false"
            log(f"starting server replica {index}")
            server = serve(stack, env, workdir / f"server-{index}.log")
            servers.append(server)
            metrics_addrs.append(env["SWITCHBOARD_METRICS_ADDR"])
        yield Platform(running, servers, secrets, metrics_addrs)


async def login(channel: grpc.aio.Channel, bot_token: str, telegram_id: int) -> str:
    response = await widget_login(channel, bot_token, telegram_id, f"Fan{telegram_id % 1000}")
    return response.session.token


async def setup_room(p: Platform, members: int) -> tuple[str, list[str]]:
    """A text room of ``members`` members; its id and their tokens (the creator's first)."""
    addr = p.servers[0].grpc_addr
    async with grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS) as channel:
        rooms = pb_grpc.RoomServiceStub(channel)
        admin = await login(channel, p.secrets.login_bot_token, SUPER_ADMIN_TELEGRAM_ID)
        room = await rooms.CreateRoom(
            pb.CreateRoomRequest(
                name="fanout",
                kind=pb.ROOM_KIND_TEXT,
                max_members=members,
                request_id=str(uuid.uuid4()),
            ),
            metadata=(("authorization", f"Bearer {admin}"),),
            timeout=30,
        )
        room_id = room.room.id
        semaphore = asyncio.Semaphore(16)

        async def member(i: int) -> str:
            async with semaphore:
                token = await login(channel, p.secrets.login_bot_token, FIRST_TELEGRAM_ID + i)
                await rooms.JoinRoom(
                    pb.JoinRoomRequest(room_id=room_id),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=30,
                )
                return token

        # The creator is the first member (and the sender); the others join.
        tokens = await asyncio.gather(*(member(i) for i in range(members - 1)))
    return room_id, [admin, *tokens]


# --- a measured phase ------------------------------------------------------------------------------
@dataclass
class PhaseResult:
    name: str
    subscribers: int
    sent: int
    acked: int
    send_errors: int
    first_send_error: str
    seconds: float
    delivered: int
    expected: int
    duplicates: int
    out_of_order: int
    stream_errors: list[str]
    latencies_ms: dict[str, list[float]] = field(repr=False, default_factory=dict)
    # Cores each group kept busy from the first send until the last delivery (or timeout).
    cores: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    cpu_window_s: float = 0.0
    counters: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float | int]:
            ordered = sorted(values)
            return {
                "samples": len(ordered),
                "p50_ms": round(percentile(ordered, 50), 3),
                "p95_ms": round(percentile(ordered, 95), 3),
                "p99_ms": round(percentile(ordered, 99), 3),
                "max_ms": round(ordered[-1], 3) if ordered else float("nan"),
            }

        return {
            "subscribers": self.subscribers,
            "sent": self.sent,
            "acked": self.acked,
            "send_errors": self.send_errors,
            "first_send_error": self.first_send_error,
            "send_rate_per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "delivered": self.delivered,
            "expected": self.expected,
            "delivered_over_expected": round(self.delivered / self.expected, 6)
            if self.expected
            else 0.0,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "stream_errors": self.stream_errors[:5],
            "stream_error_count": len(self.stream_errors),
            "latency": {name: stats(v) for name, v in self.latencies_ms.items()},
            "server_counters": self.counters,
            "cores": self.cores,
            "machine_busy": round(self.machine_busy, 3),
            # CPU microseconds per delivered event, per group: what the work costs, which
            # load from other jobs on the machine does not change much (latency it does).
            "cpu_us_per_delivery": {
                k: round(1e6 * v * self.cpu_window_s / max(self.delivered, 1), 2)
                for k, v in self.cores.items()
            },
        }


def _event_bytes(number: int, sent_ns: int, room_id: str, sequence: int) -> bytes:
    """A RoomEvent like the server's message_new, with the sender's stamp in the text."""
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    event = pb.RoomEvent(
        sequence=sequence,
        room_id=room_id,
        time=now,
        message_new=pb.MessageNew(
            message=pb.Message(
                id=str(uuid.uuid4()),
                room_id=room_id,
                sequence=sequence,
                sender_user_id=str(uuid.uuid4()),
                sender_display_name="Fan001",
                text=f"{TEXT_PREFIX} {number} {sent_ns}",
                idempotency_key=str(uuid.uuid4()),
                create_time=now,
            )
        ),
    )
    return event.SerializeToString()


class Sender:
    """Open-loop sends at ``rate`` per second for ``seconds``; remembers which were acked."""

    def __init__(self, rate: float, seconds: float) -> None:
        self.rate = rate
        self.seconds = seconds
        self.acked: set[int] = set()
        self.sent = 0
        self.errors = 0
        self.first_error = ""

    async def run(self, send: Any) -> float:
        loop = asyncio.get_running_loop()
        total = int(self.rate * self.seconds)
        start = loop.time()
        tasks = []
        for number in range(total):
            delay = start + number / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._one(send, number)))
            self.sent += 1
        await asyncio.gather(*tasks)
        return loop.time() - start

    async def _one(self, send: Any, number: int) -> None:
        try:
            await send(number, time.monotonic_ns())
        except Exception as exc:  # counted, the run goes on
            self.errors += 1
            self.first_error = self.first_error or repr(exc)
        else:
            self.acked.add(number)


def _split(subscribers: Sequence[Subscriber], workers: int) -> list[tuple[Subscriber, ...]]:
    return [tuple(subscribers[w::workers]) for w in range(workers)]


async def run_phase(
    name: str,
    kind: str,
    room_id: str,
    subscribers: Sequence[Subscriber],
    send: Any,
    *,
    workers: int,
    rate: float,
    seconds: float,
    drain_timeout: float,
    groups: dict[str, tuple[int, bool]],
) -> PhaseResult:
    ctx = mp.get_context("spawn")
    ready: mp.Queue[Any] = ctx.Queue()
    results: mp.Queue[Any] = ctx.Queue()
    stop = ctx.Event()
    progress = [ctx.Value("q", 0, lock=False) for _ in range(workers)]
    procs = [
        ctx.Process(
            target=worker_main,
            args=(WorkerSpec(kind, room_id, part), ready, results, stop, progress[w]),
            daemon=True,
        )
        for w, part in enumerate(_split(subscribers, workers))
    ]
    loop = asyncio.get_running_loop()
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            status, detail = await loop.run_in_executor(None, ready.get, True, 120)
            if status != "ready":
                raise RuntimeError(f"{name}: a subscriber worker failed: {detail}")
        log(f"{name}: {len(subscribers)} subscribers ready; sending {rate:g}/s for {seconds:g} s")
        meter = procstat.CpuMeter(
            {
                **groups,
                **{f"subscribers{w}": (_alive(proc.pid), False) for w, proc in enumerate(procs)},
            }
        )
        sender = Sender(rate, seconds)
        before, window_start = meter.snapshot(), time.monotonic()
        elapsed = await sender.run(send)
        expected = len(sender.acked) * len(subscribers)
        deadline = time.monotonic() + drain_timeout
        # Counters in shared memory, written by the workers: polling is the way to read them.
        while sum(int(v.value) for v in progress) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        cpu = procstat.usage(before, meter.snapshot())
        window = time.monotonic() - window_start
        stop.set()
        collected: list[WorkerResult] = []
        for _ in procs:
            status, payload = await loop.run_in_executor(None, results.get, True, 60)
            if status != "result":
                raise RuntimeError(f"{name}: a subscriber worker failed: {payload}")
            collected.append(payload)
    finally:
        stop.set()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        with contextlib.suppress(queue.Empty, OSError):
            ready.close()
            results.close()
    result = collect(name, subscribers, sender, elapsed, collected)
    cores: dict[str, float] = {}
    for group, busy in cpu.seconds.items():
        key = "subscribers" if group.startswith("subscribers") else group
        cores[key] = round(cores.get(key, 0.0) + busy / window, 3)
    result.cores = dict(sorted(cores.items()))
    result.machine_busy = cpu.machine_busy
    result.cpu_window_s = window
    return result


def _alive(pid: int | None) -> int:
    if not pid:
        raise RuntimeError("a process of the benchmark is not running")
    return pid


def collect(
    name: str,
    subscribers: Sequence[Subscriber],
    sender: Sender,
    elapsed: float,
    collected: Sequence[WorkerResult],
) -> PhaseResult:
    delivered = duplicates = out_of_order = 0
    errors: list[str] = []
    by_replica: dict[int, list[float]] = {0: [], 1: []}
    for result in collected:
        for stream in result.streams:
            duplicates += stream.duplicates
            out_of_order += stream.out_of_order
            if stream.error:
                errors.append(f"subscriber {stream.subscriber}: {stream.error}")
        for index, raw in result.received.items():
            numbers = array.array("q")
            numbers.frombytes(raw)
            delivered += sum(1 for n in numbers if n in sender.acked)
            del index
        for replica, raw in result.latencies.items():
            values = array.array("d")
            values.frombytes(raw)
            by_replica[replica].extend(values)
    latencies = {"all": by_replica[0] + by_replica[1]}
    if by_replica[1]:
        latencies["same_replica"] = by_replica[0]
        latencies["other_replica"] = by_replica[1]
    return PhaseResult(
        name=name,
        subscribers=len(subscribers),
        sent=sender.sent,
        acked=len(sender.acked),
        send_errors=sender.errors,
        first_send_error=sender.first_error,
        seconds=elapsed,
        delivered=delivered,
        expected=len(sender.acked) * len(subscribers),
        duplicates=duplicates,
        out_of_order=out_of_order,
        stream_errors=errors,
        latencies_ms=latencies,
    )


# --- the two phases ----------------------------------------------------------------------------------
async def redis_floor(p: Platform, opts: Options, room_id: str) -> PhaseResult:
    subscribers = [
        Subscriber(i, i % 2, p.infra.redis.url) for i in range(opts.members)
    ]  # "replica" is only a label here: one Redis
    # One connection, commands in call order (its lock is FIFO): the floor's "sequence" is the
    # publish order, as the server's is its commit order.
    client = aioredis.Redis.from_url(p.infra.redis.url, single_connection_client=True)
    counter = iter(range(1, 1 << 62))

    async def publish(number: int, sent_ns: int) -> None:
        payload = _event_bytes(number, sent_ns, room_id, next(counter))
        await client.publish(FLOOR_CHANNEL, payload)

    try:
        result = await run_phase(
            "redis_floor",
            "redis",
            room_id,
            subscribers,
            publish,
            workers=opts.workers,
            rate=opts.rate,
            seconds=opts.seconds,
            drain_timeout=opts.drain_timeout,
            groups={
                "sender": (os.getpid(), False),
                "redis": (_alive(p.infra.redis.pid), True),
            },
        )
    finally:
        await client.aclose()
    # One Redis: the per-replica split means nothing for the floor.
    result.latencies_ms = {"all": result.latencies_ms["all"]}
    return result


async def switchboard(
    p: Platform, opts: Options, room_id: str, tokens: Sequence[str]
) -> PhaseResult:
    subscribers = [
        Subscriber(i, i % 2, p.servers[i % 2].grpc_addr, tokens[i]) for i in range(len(tokens))
    ]
    channel = grpc.aio.insecure_channel(p.servers[0].grpc_addr, options=CHANNEL_OPTIONS)
    rooms = pb_grpc.RoomServiceStub(channel)
    metadata = (("authorization", f"Bearer {tokens[0]}"),)
    counters_before = [fanout_counters(addr) for addr in p.metrics_addrs]

    async def send(number: int, sent_ns: int) -> None:
        await rooms.SendMessage(
            pb.SendMessageRequest(
                room_id=room_id,
                idempotency_key=f"fanout-{number}",
                text=f"{TEXT_PREFIX} {number} {sent_ns}",
            ),
            metadata=metadata,
            timeout=SEND_TIMEOUT_S,
        )

    try:
        result = await run_phase(
            "switchboard",
            "grpc",
            room_id,
            subscribers,
            send,
            workers=opts.workers,
            rate=opts.rate,
            seconds=opts.seconds,
            drain_timeout=opts.drain_timeout,
            groups={
                "sender": (os.getpid(), False),
                "server0": (_alive(p.servers[0].pid), True),
                "server1": (_alive(p.servers[1].pid), True),
                "redis": (_alive(p.infra.redis.pid), True),
                "postgres": (_alive(p.infra.postgres.pid), True),
            },
        )
    finally:
        await channel.close()
    # What the replicas' own counters say about the run (gap fills: events that arrived
    # through Redis ahead of a missing one and were completed from PostgreSQL).
    for index, addr in enumerate(p.metrics_addrs):
        after = fanout_counters(addr)
        result.counters[f"replica{index}"] = {
            k: v - counters_before[index].get(k, 0.0) for k, v in sorted(after.items())
        }
    return result


@dataclass
class Options:
    members: int
    rate: float
    seconds: float
    workers: int
    drain_timeout: float
    only: str


async def measure(p: Platform, opts: Options) -> dict[str, Any]:
    phases: dict[str, PhaseResult] = {}
    if opts.only in ("", "switchboard"):
        log(f"creating a room of {opts.members} members")
        room_id, tokens = await setup_room(p, opts.members)
        p.secrets.issued.extend(tokens)
    else:
        room_id, tokens = str(uuid.uuid4()), []
    if opts.only in ("", "redis"):
        phases["redis_floor"] = await redis_floor(p, opts, room_id)
    if opts.only in ("", "switchboard"):
        phases["switchboard"] = await switchboard(p, opts, room_id, tokens)
    return results(phases, opts)


def results(phases: dict[str, PhaseResult], opts: Options) -> dict[str, Any]:
    summaries = {name: phase.summary() for name, phase in phases.items()}
    out: dict[str, Any] = {
        "machine": machine(),
        "options": opts.__dict__,
        "phases": summaries,
    }
    goals = []
    if "switchboard" in summaries:
        sb = summaries["switchboard"]
        goals += [
            {
                "name": "fan-out delivered / expected",
                "value": sb["delivered_over_expected"],
                "goal": "1.0 and no duplicates",
                "met": sb["delivered"] == sb["expected"] and sb["duplicates"] == 0,
            },
            {
                "name": "fan-out p99 end-to-end latency, ms",
                "value": sb["latency"]["all"]["p99_ms"],
                "goal": f"< {P99_GOAL_MS:g}",
                "met": sb["latency"]["all"]["p99_ms"] < P99_GOAL_MS,
            },
        ]
    if "switchboard" in summaries and "redis_floor" in summaries:
        sb, floor = summaries["switchboard"], summaries["redis_floor"]
        out["ratios"] = {
            "delivered_ratio_switchboard_over_floor": round(
                sb["delivered_over_expected"] / floor["delivered_over_expected"], 6
            )
            if floor["delivered_over_expected"]
            else None,
            "latency_p50_switchboard_over_floor": round(
                sb["latency"]["all"]["p50_ms"] / floor["latency"]["all"]["p50_ms"], 2
            ),
            "latency_p99_switchboard_over_floor": round(
                sb["latency"]["all"]["p99_ms"] / floor["latency"]["all"]["p99_ms"], 2
            ),
        }
    out["goals"] = goals
    return out


def table(r: dict[str, Any]) -> str:
    m, o = r["machine"], r["options"]
    lines = [
        "",
        f"Room fan-out: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}; "
        f"{o['members']} subscribers, {o['rate']:g} msg/s for {o['seconds']:g} s, "
        f"{o['workers']} subscriber processes",
        "",
        f"{'phase / subscribers':<32}{'sent':>7}{'acked':>7}{'delivered':>11}{'expected':>10}"
        f"{'dup':>5}{'ooo':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}",
        f"{'':<32}{'':>7}{'':>7}{'':>11}{'':>10}{'':>5}{'':>5}{'ms':>9}{'ms':>9}{'ms':>9}{'ms':>9}",
    ]
    for name, ph in r["phases"].items():
        for part, lat in ph["latency"].items():
            label = f"{name} ({part})"
            if part == "all":
                lines.append(
                    f"{label:<32}{ph['sent']:>7}{ph['acked']:>7}{ph['delivered']:>11}"
                    f"{ph['expected']:>10}{ph['duplicates']:>5}{ph['out_of_order']:>5}"
                    f" {lat['p50_ms']:>8.2f} {lat['p95_ms']:>8.2f} {lat['p99_ms']:>8.2f}"
                    f" {lat['max_ms']:>8.1f}"
                )
            else:
                lines.append(
                    f"{label:<32}{'':>7}{'':>7}{lat['samples']:>11}{'':>10}{'':>5}{'':>5}"
                    f" {lat['p50_ms']:>8.2f} {lat['p95_ms']:>8.2f} {lat['p99_ms']:>8.2f}"
                    f" {lat['max_ms']:>8.1f}"
                )
        cores = " ".join(f"{k} {v:.2f}" for k, v in ph["cores"].items())
        lines.append(f"  cores busy: {cores} (machine {m['nproc'] * ph['machine_busy']:.2f})")
        per = " ".join(f"{k} {v:.1f}" for k, v in ph["cpu_us_per_delivery"].items() if k != "other")
        lines.append(f"  CPU us per delivered event: {per}")
        for replica, counters in ph.get("server_counters", {}).items():
            values = " ".join(f"{k} {v:g}" for k, v in counters.items())
            lines.append(f"  {replica} counters: {values}")
        if ph["send_errors"] or ph["stream_error_count"]:
            lines.append(
                f"  errors: {ph['send_errors']} sends ({ph['first_send_error']}), "
                f"{ph['stream_error_count']} streams {ph['stream_errors'][:2]}"
            )
    if "ratios" in r:
        lines += ["", "ratios (switchboard / bare Redis pub/sub floor)"]
        lines += [f"  {k:<50}{v}" for k, v in r["ratios"].items()]
    if r["goals"]:
        lines += ["", "goals"]
        for goal in r["goals"]:
            verdict = "PASS" if goal["met"] else "MISS"
            lines.append(
                f"  {goal['name']:<45}{goal['value']:>10}   goal {goal['goal']}  {verdict}"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--members", type=int, default=200, help="room members = subscribers")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("FANOUT_SECONDS", "30")),
        help="sending time per phase (env FANOUT_SECONDS; default 30)",
    )
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="how long to wait for stragglers after the last send (ends early when all arrived)",
    )
    parser.add_argument("--only", choices=["", "redis", "switchboard"], default="")
    add_output_arguments(parser, "bench-fanout")
    args = parser.parse_args(argv)
    opts = Options(
        members=args.members,
        rate=args.rate,
        seconds=args.seconds,
        workers=max(1, args.workers),
        drain_timeout=args.drain_timeout,
        only=args.only,
    )
    replicas = 0 if opts.only == "redis" else 2
    return run_on_platform(
        args, lambda workdir: platform_up(workdir, replicas), lambda p: measure(p, opts), table
    )


if __name__ == "__main__":
    sys.exit(main())
