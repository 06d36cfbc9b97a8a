"""Booking benchmark: ``python -m bench.booking`` (``make bench-booking``).

The real server (embedded PostgreSQL and Redis, ``configs/test.yaml``, rate limiter off) with
two masters created through ``BookingAdminService.CreateMaster`` (default hours Mon-Sat
10:00-20:00, lunch 13:00-14:00, 60-minute slots in the shop's zone) and 60 days of bookings
from tomorrow on: each master books ``--fill`` of every working day's slots as manual bookings
(``MasterService.CreateManualBooking``, so all rows go through the server's own rules) and
takes two days off. Then:

1. Consistency: each master's whole 60 days in one ``GetAvailability`` answer must equal what
   ``server.booking.model.free_slots_range`` computes from the bookings made (a check that the
   load below measures real answers).
2. Availability load: ``GetAvailability`` over gRPC from ``--concurrency`` (32) tasks on one
   channel, closed loop, a random master and a random start date of the 60 days per call, for a
   one-day range and a 7-day range. A baseline in the same run: authenticated
   ``AuthService.GetMe`` (the pipeline's floor: no database, no computation). Windows of the
   three targets are interleaved (``--rounds`` x ``--window`` s each, after a warm-up), so
   machine noise hits all of them alike. Reported: req/s, p50/p95/p99, server and PostgreSQL
   CPU ms per call (/proc), the server's own ``booking_availability_seconds`` mean, and p95 /
   goal (goal: p95 < 10 ms).
3. Contention: ``--clients`` (100) users, each with its own session, call ``CreateBooking`` for
   the same free slot at the same moment (``--contention-rounds`` rounds, a new slot and new
   users each). Reported: time until every call has settled, winners (goal: exactly 1), the
   losers' gRPC codes and ErrorInfo reasons, and that the slot is gone from availability.

Results go to stdout and ``.build/bench-booking.json``. Like the other benchmarks it reports
and does not gate (``--strict``: exit 1 when a goal is missed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from switchboard.booking.v1 import booking_pb2 as bpb
from switchboard.booking.v1 import booking_pb2_grpc as bgrpc
from switchboard.identity.v1 import identity_pb2 as id_pb
from switchboard.identity.v1 import identity_pb2_grpc as id_grpc

from bench import procstat
from bench.clients import CHANNEL_OPTIONS, widget_login
from bench.load import Window, WindowOptions, closed_loop, percentile, sequential
from bench.run import (
    add_output_arguments,
    log,
    machine,
    run_on_platform,
    scrape,
    serve,
    start_infra,
)
from server.booking import model
from server.devstack.processes import ServerProcess
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID, Infra, Secrets, server_env

P95_GOAL_MS = 10.0
DAYS = 60
MASTER_TELEGRAM_IDS = (730_000_001, 730_000_002)
CLIENT_TELEGRAM_ID = 730_000_100
FIRST_CONTENDER_TELEGRAM_ID = 731_000_000
SERVICE_ID = "haircut"  # 60 minutes, the default slot length
TARGETS = ("getme", "availability_1d", "availability_7d")

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def timestamp(instant: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant.astimezone(UTC))
    return stamp


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """ "CODE REASON" from a refusal's google.rpc.Status details."""
    reason = "-"
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = info.reason
    return f"{error.code().name} {reason}"


# --- the platform ------------------------------------------------------------------------------
@dataclass
class Platform:
    infra: Infra
    server: ServerProcess
    secrets: Secrets
    metrics_addr: str


@contextlib.contextmanager
def platform_up(workdir: Path) -> Iterator[Platform]:
    with contextlib.ExitStack() as stack:
        running, dsn = start_infra(stack, workdir, "switchboard_booking")
        secrets = Secrets()
        env = server_env(dsn, running.redis.url, secrets)
        env["SWITCHBOARD_RATE_LIMIT_ENABLED"] = "false"
        log("starting the server")
        server = serve(stack, env, workdir / "server.log")
        yield Platform(running, server, secrets, env["SWITCHBOARD_METRICS_ADDR"])


async def login(
    channel: grpc.aio.Channel, bot_token: str, telegram_id: int
) -> id_pb.LoginWithTelegramWidgetResponse:
    return await widget_login(channel, bot_token, telegram_id, f"Bench{telegram_id % 10000}")


# --- setup ---------------------------------------------------------------------------------------
@dataclass
class Shop:
    tz: ZoneInfo
    first_day: date
    masters: list[bpb.Master]
    master_tokens: list[str]
    client_token: str
    # Per master id: the bookings made (UTC intervals) and the days off.
    busy: dict[str, list[model.Interval]] = field(default_factory=dict)
    days_off: dict[str, set[date]] = field(default_factory=dict)
    setup_seconds: float = 0.0
    bookings: int = 0


def domain_master(master: bpb.Master) -> model.Master:
    hours = tuple(
        model.WorkingHours(h.iso_weekday, model.MinuteRange.parse(h.start_time, h.end_time))
        for h in master.working_hours
    )
    lunch = None
    if master.lunch.start_time:
        lunch = model.MinuteRange.parse(master.lunch.start_time, master.lunch.end_time)
    return model.Master(
        id=uuid.UUID(master.id),
        user_id=uuid.UUID(master.user_id),
        display_name=master.display_name,
        working_hours=hours,
        lunch=lunch,
        active=master.active,
        create_time=master.create_time.ToDatetime(tzinfo=UTC),
    )


async def setup(p: Platform, opts: Options) -> Shop:
    started = time.monotonic()
    rng = random.Random(opts.seed)
    async with grpc.aio.insecure_channel(p.server.grpc_addr, options=CHANNEL_OPTIONS) as channel:
        admin_stub = bgrpc.BookingAdminServiceStub(channel)
        booking = bgrpc.BookingServiceStub(channel)
        master_stub = bgrpc.MasterServiceStub(channel)
        admin = (
            await login(channel, p.secrets.login_bot_token, SUPER_ADMIN_TELEGRAM_ID)
        ).session.token
        client = (await login(channel, p.secrets.login_bot_token, CLIENT_TELEGRAM_ID)).session.token
        masters, tokens = [], []
        for index, telegram_id in enumerate(MASTER_TELEGRAM_IDS):
            session = await login(channel, p.secrets.login_bot_token, telegram_id)
            created = await admin_stub.CreateMaster(
                bpb.CreateMasterRequest(
                    user_id=session.user.id,
                    display_name=f"Мастер {index + 1}",
                    request_id=str(uuid.uuid4()),
                ),
                metadata=bearer(admin),
                timeout=30,
            )
            masters.append(created.master)
            tokens.append(session.session.token)
        profile = await booking.GetBookingProfile(
            bpb.GetBookingProfileRequest(), metadata=bearer(client), timeout=30
        )
        tz = ZoneInfo(profile.time_zone)
        first_day = datetime.now(tz).date() + timedelta(days=1)
        shop = Shop(tz, first_day, masters, tokens, client)
        semaphore = asyncio.Semaphore(16)

        async def book(
            token: str, start: datetime, end: datetime, busy: list[model.Interval]
        ) -> None:
            async with semaphore:
                await master_stub.CreateManualBooking(
                    bpb.CreateManualBookingRequest(
                        service_id=SERVICE_ID,
                        start_time=timestamp(start),
                        client_name="Клиент",
                        client_phone="+7 900 000-00-00",
                        request_id=str(uuid.uuid4()),
                    ),
                    metadata=bearer(token),
                    timeout=30,
                )
            busy.append(model.Interval(start, end))

        for master, token in zip(masters, tokens, strict=True):
            who = domain_master(master)
            busy: list[model.Interval] = []
            days_off: set[date] = set()
            # Two days off, set before any booking on them.
            for offset in rng.sample(range(2, DAYS), 2):
                day = first_day + timedelta(days=offset)
                await master_stub.SetDayOff(
                    bpb.SetDayOffRequest(date=day.isoformat(), note="bench"),
                    metadata=bearer(token),
                    timeout=30,
                )
                days_off.add(day)
            calls: list[Awaitable[None]] = []
            for day in model.date_range(first_day, first_day + timedelta(days=DAYS - 1)):
                free = model.free_slots(
                    day=day,
                    tz=tz,
                    master=who,
                    day_off=day in days_off,
                    busy=(),
                    duration=timedelta(minutes=opts.slot_minutes),
                    step=timedelta(minutes=opts.slot_minutes),
                    now=datetime.now(UTC),
                ).slots
                chosen = rng.sample(list(free), round(len(free) * opts.fill))
                calls += [book(token, slot.start, slot.end, busy) for slot in chosen]
            await asyncio.gather(*calls)
            shop.busy[master.id] = busy
            shop.days_off[master.id] = days_off
            shop.bookings += len(busy)
    shop.setup_seconds = time.monotonic() - started
    return shop


def expected_days(
    shop: Shop, master: bpb.Master, opts: Options, now: datetime
) -> list[tuple[str, list[str]]]:
    days = model.free_slots_range(
        first=shop.first_day,
        last=shop.first_day + timedelta(days=DAYS - 1),
        tz=shop.tz,
        master=domain_master(master),
        days_off=shop.days_off[master.id],
        busy=shop.busy[master.id],
        duration=timedelta(minutes=opts.slot_minutes),
        step=timedelta(minutes=opts.slot_minutes),
        now=now,
    )
    return [(d.day.isoformat(), [s.start.isoformat() for s in d.slots]) for d in days]


async def consistency(p: Platform, shop: Shop, opts: Options) -> dict[str, Any]:
    """Each master's 60 days in one answer, against the model's computation."""
    out: dict[str, Any] = {"matches": True, "free_slots": 0, "mismatched_days": []}
    async with grpc.aio.insecure_channel(p.server.grpc_addr, options=CHANNEL_OPTIONS) as channel:
        booking = bgrpc.BookingServiceStub(channel)
        for master in shop.masters:
            answer = await booking.GetAvailability(
                bpb.GetAvailabilityRequest(
                    master_id=master.id,
                    start_date=shop.first_day.isoformat(),
                    end_date=(shop.first_day + timedelta(days=DAYS - 1)).isoformat(),
                    service_id=SERVICE_ID,
                ),
                metadata=bearer(shop.client_token),
                timeout=30,
            )
            got = [
                (d.date, [s.start_time.ToDatetime(tzinfo=UTC).isoformat() for s in d.slots])
                for d in answer.days
            ]
            want = expected_days(shop, master, opts, datetime.now(UTC))
            out["free_slots"] += sum(len(slots) for _, slots in got)
            if got != want:
                out["matches"] = False
                bad = [g[0] for g, w in zip(got, want, strict=False) if g != w]
                out["mismatched_days"].append(
                    {
                        "master": master.id,
                        "days": bad[:5],
                        "got_days": len(got),
                        "want_days": len(want),
                    }
                )
    return out


# --- availability load -------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    call: Callable[[], Awaitable[Any]]
    window: Window = field(default_factory=Window)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per group, summed
    # booking_availability_seconds (sum, count) accumulated over the target's windows.
    histogram: list[float] = field(default_factory=lambda: [0.0, 0.0])
    single: Window = field(default_factory=Window)  # one call at a time


async def load(p: Platform, shop: Shop, opts: Options) -> dict[str, Any]:
    rng = random.Random(opts.seed + 1)
    meter = procstat.CpuMeter(
        {
            "server": (p.server.pid or 0, True),
            "postgres": (p.infra.postgres.pid or 0, True),
            "client": (os.getpid(), False),
        }
    )
    async with grpc.aio.insecure_channel(p.server.grpc_addr, options=CHANNEL_OPTIONS) as channel:
        booking = bgrpc.BookingServiceStub(channel)
        auth = id_grpc.AuthServiceStub(channel)
        metadata = bearer(shop.client_token)
        master_ids = [m.id for m in shop.masters]

        def availability(days: int) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                first = shop.first_day + timedelta(days=rng.randrange(0, DAYS - days + 1))
                answer = await booking.GetAvailability(
                    bpb.GetAvailabilityRequest(
                        master_id=rng.choice(master_ids),
                        start_date=first.isoformat(),
                        end_date=(first + timedelta(days=days - 1)).isoformat(),
                        service_id=SERVICE_ID,
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                if len(answer.days) != days:
                    raise RuntimeError(f"{len(answer.days)} days in the answer, asked for {days}")
                return answer

            return call

        async def getme() -> Any:
            return await auth.GetMe(id_pb.GetMeRequest(), metadata=metadata, timeout=30)

        targets = [
            Target("getme", getme),
            Target("availability_1d", availability(1)),
            Target("availability_7d", availability(7)),
        ]
        for target in targets:
            log(f"warm-up {target.name} ({opts.warmup:g} s)")
            await closed_loop(target.call, opts.concurrency, opts.warmup)
        metric_names = ("booking_availability_seconds_sum", "booking_availability_seconds_count")
        for round_no in range(opts.rounds):
            order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
            for target in order:
                metrics_before = scrape(p.metrics_addr, metric_names)
                before = meter.snapshot()
                window = await closed_loop(target.call, opts.concurrency, opts.window)
                used = procstat.usage(before, meter.snapshot())
                metrics_after = scrape(p.metrics_addr, metric_names)
                target.window.merge(window)
                for group, seconds in used.seconds.items():
                    target.cpu[group] = target.cpu.get(group, 0.0) + seconds
                for index, name in enumerate(metric_names):
                    target.histogram[index] += metrics_after.get(name, 0.0) - metrics_before.get(
                        name, 0.0
                    )
                log(
                    f"round {round_no + 1}/{opts.rounds} {target.name}: {window.rate:.0f} req/s, "
                    f"p95 {window.percentile_ms(95):.1f} ms, errors {window.errors}"
                )
        log(f"one call at a time: {opts.single_calls} per target in batches of 50, interleaved")
        for _ in range(max(1, opts.single_calls // 50)):
            for target in targets:
                target.single.merge(await sequential(target.call, 50))
    out: dict[str, Any] = {}
    for target in targets:
        summary: dict[str, Any] = dict(target.window.summary())
        summary["first_error"] = target.window.first_error
        summary["one_at_a_time"] = target.single.summary()
        total, count = target.histogram
        summary["server_histogram_mean_ms"] = round(1000.0 * total / count, 3) if count else None
        requests = max(target.window.requests + target.window.errors, 1)
        summary["cpu_ms_per_call"] = {
            group: round(1000.0 * seconds / requests, 3)
            for group, seconds in sorted(target.cpu.items())
        }
        summary["cores_busy"] = {
            group: round(seconds / max(target.window.seconds, 1e-9), 2)
            for group, seconds in sorted(target.cpu.items())
        }
        out[target.name] = summary
    return out


# --- contention --------------------------------------------------------------------------------
async def contend(
    booking: bgrpc.BookingServiceAsyncStub,
    master_id: str,
    start: timestamp_pb2.Timestamp,
    tokens: list[str],
) -> tuple[list[tuple[str, float]], float]:
    """Every session books ``start`` at once: (outcome, seconds to answer) each, and the time
    until the last answer. The calls wait on one event, so they leave back to back."""
    outcomes: list[tuple[str, float]] = []
    go = asyncio.Event()
    t0 = 0.0

    async def attempt(token: str) -> None:
        request = bpb.CreateBookingRequest(
            master_id=master_id,
            service_id=SERVICE_ID,
            start_time=start,
            request_id=str(uuid.uuid4()),
        )
        await go.wait()
        try:
            await booking.CreateBooking(request, metadata=bearer(token), timeout=60)
            outcomes.append(("OK", time.perf_counter() - t0))
        except grpc.aio.AioRpcError as error:
            outcomes.append((error_reason(error), time.perf_counter() - t0))

    tasks = [asyncio.ensure_future(attempt(token)) for token in tokens]
    await asyncio.sleep(0.05)  # every task is waiting on the event
    t0 = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return outcomes, time.perf_counter() - t0


async def contention(p: Platform, shop: Shop, opts: Options) -> list[dict[str, Any]]:
    rounds = []
    master = shop.masters[0]
    async with grpc.aio.insecure_channel(p.server.grpc_addr, options=CHANNEL_OPTIONS) as channel:
        booking = bgrpc.BookingServiceStub(channel)
        semaphore = asyncio.Semaphore(16)

        async def session(telegram_id: int) -> str:
            async with semaphore:
                return (await login(channel, p.secrets.login_bot_token, telegram_id)).session.token

        for round_no in range(opts.contention_rounds):
            # A slot that is still free: the first of a day with one, a week apart per round.
            first = shop.first_day + timedelta(days=3 + 7 * round_no)
            answer = await booking.GetAvailability(
                bpb.GetAvailabilityRequest(
                    master_id=master.id,
                    start_date=first.isoformat(),
                    end_date=(first + timedelta(days=6)).isoformat(),
                    service_id=SERVICE_ID,
                ),
                metadata=bearer(shop.client_token),
                timeout=30,
            )
            with_free = [d for d in answer.days if d.slots]
            if not with_free:
                log(f"contention round {round_no + 1}: no free slot in the week from {first}")
                continue
            day, slot = date.fromisoformat(with_free[0].date), with_free[0].slots[0]
            first_id = FIRST_CONTENDER_TELEGRAM_ID + round_no * opts.clients
            tokens = await asyncio.gather(*(session(first_id + i) for i in range(opts.clients)))
            outcomes, settle = await contend(booking, master.id, slot.start_time, list(tokens))
            after = await booking.GetAvailability(
                bpb.GetAvailabilityRequest(
                    master_id=master.id, start_date=day.isoformat(), service_id=SERVICE_ID
                ),
                metadata=bearer(shop.client_token),
                timeout=30,
            )
            still_listed = any(s.start_time == slot.start_time for d in after.days for s in d.slots)
            times = sorted(t for _, t in outcomes)
            rounds.append(
                {
                    "slot": slot.start_time.ToDatetime(tzinfo=UTC).isoformat(),
                    "local": f"{day.isoformat()} {slot.local_time}",
                    "clients": opts.clients,
                    "winners": sum(1 for outcome, _ in outcomes if outcome == "OK"),
                    "outcomes": dict(Counter(outcome for outcome, _ in outcomes)),
                    "settle_ms": round(1000 * settle, 1),
                    "answer_p50_ms": round(1000 * percentile(times, 50), 1),
                    "answer_max_ms": round(1000 * times[-1], 1),
                    "slot_still_listed": still_listed,
                }
            )
            log(f"contention round {round_no + 1}: {rounds[-1]}")
    return rounds


# --- results -----------------------------------------------------------------------------------
@dataclass
class Options(WindowOptions):
    clients: int
    contention_rounds: int
    fill: float
    slot_minutes: int
    seed: int
    single_calls: int


async def measure(p: Platform, opts: Options) -> dict[str, Any]:
    log("creating 2 masters and 60 days of bookings")
    shop = await setup(p, opts)
    log(f"{shop.bookings} bookings in {shop.setup_seconds:.1f} s; checking availability answers")
    checked = await consistency(p, shop, opts)
    log(f"consistency: {checked}")
    targets = await load(p, shop, opts)
    contended = await contention(p, shop, opts)
    out: dict[str, Any] = {
        "machine": machine(),
        "options": opts.__dict__,
        "setup": {
            "masters": len(shop.masters),
            "days": DAYS,
            "bookings": shop.bookings,
            "days_off": sum(len(d) for d in shop.days_off.values()),
            "seconds": round(shop.setup_seconds, 1),
            "time_zone": str(shop.tz),
            "first_day": shop.first_day.isoformat(),
        },
        "consistency": checked,
        "availability": targets,
        "contention": contended,
    }
    goals = [
        {
            "name": "availability answers = model computation",
            "value": "yes" if checked["matches"] else "NO",
            "goal": "yes",
            "met": bool(checked["matches"]),
        }
    ]
    for name in ("availability_1d", "availability_7d"):
        p95 = targets[name]["p95_ms"]
        goals.append(
            {
                "name": f"GetAvailability {name[-2:]} p95 / {P95_GOAL_MS:g} ms",
                "value": f"{p95 / P95_GOAL_MS:.2f}",
                "goal": "< 1",
                "met": p95 < P95_GOAL_MS and targets[name]["errors"] == 0,
            }
        )
    goals.append(
        {
            "name": f"contention: exactly 1 winner of {opts.clients}, every round",
            "value": ",".join(str(r["winners"]) for r in contended) or "-",
            "goal": "1 each",
            "met": bool(contended)
            and all(r["winners"] == 1 and not r["slot_still_listed"] for r in contended),
        }
    )
    out["goals"] = goals
    return out


def table(r: dict[str, Any]) -> str:
    o, a = r["options"], r["availability"]
    lines = [
        "",
        f"booking benchmark: {r['setup']['masters']} masters, {r['setup']['days']} days, "
        f"{r['setup']['bookings']} bookings ({r['setup']['time_zone']}), "
        f"setup {r['setup']['seconds']} s; commit {r['machine']['commit']}, "
        f"{r['machine']['nproc']} CPUs",
        "",
        f"GetAvailability, {o['concurrency']} calls in flight on one channel, "
        f"{o['rounds']} x {o['window']:g} s per target, interleaved",
        f"{'target':<18}{'req/s':>8}{'p50':>7}{'p95':>7}{'p99':>7}  p95/goal | CPU ms/call "
        "server     pg client | other cores | errors",
    ]
    for name in TARGETS:
        t = a[name]
        cpu = t["cpu_ms_per_call"]
        ratio = f"{t['p95_ms'] / P95_GOAL_MS:8.2f}" if name != "getme" else f"{'(floor)':>8}"
        lines.append(
            f"{name:<18}{t['req_per_s']:>8.0f}{t['p50_ms']:>7.1f}{t['p95_ms']:>7.1f}"
            f"{t['p99_ms']:>7.1f}  {ratio} |        {cpu.get('server', 0):>7.3f}{cpu.get('postgres', 0):>7.3f}"
            f"{cpu.get('client', 0):>7.3f} | {t['cores_busy'].get('other', 0):>11.2f} | {t['errors']}"
        )
    getme = a["getme"]
    for name in ("availability_1d", "availability_7d"):
        t = a[name]
        lines.append(
            f"  {name} / getme: throughput {t['req_per_s'] / max(getme['req_per_s'], 1e-9):.2f}, "
            f"p95 {t['p95_ms'] / max(getme['p95_ms'], 1e-9):.2f}"
        )
    for name in ("availability_1d", "availability_7d"):
        if a[name].get("server_histogram_mean_ms") is not None:
            lines.append(
                f"  {name}: server-side booking_availability_seconds mean "
                f"{a[name]['server_histogram_mean_ms']} ms (queries + slots, incl. waiting)"
            )
    lines += ["", f"one call at a time ({o['single_calls']} calls per target, interleaved batches)"]
    for name in TARGETS:
        t = a[name]["one_at_a_time"]
        lines.append(
            f"  {name:<18}p50 {t['p50_ms']:>6.2f}  p95 {t['p95_ms']:>6.2f}  p99 {t['p99_ms']:>6.2f} ms"
            f"  p95/goal {t['p95_ms'] / P95_GOAL_MS:.2f}  errors {t['errors']}"
        )
    lines += ["", f"contention: {o['clients']} clients, CreateBooking of one slot at once"]
    for index, c in enumerate(r["contention"]):
        lines.append(
            f"  round {index + 1} ({c['local']}): winners {c['winners']}, settled in "
            f"{c['settle_ms']} ms (answer p50 {c['answer_p50_ms']} ms), outcomes {c['outcomes']}, "
            f"slot still listed: {c['slot_still_listed']}"
        )
    lines += ["", "goals"]
    for goal in r["goals"]:
        verdict = "PASS" if goal["met"] else "MISS"
        lines.append(f"  {goal['name']:<48}{goal['value']:>8}   goal {goal['goal']:<7} {verdict}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.booking", description=__doc__)
    WindowOptions.add_arguments(parser, warmup=2.0)
    parser.add_argument("--clients", type=int, default=100, help="contenders for one slot")
    parser.add_argument("--contention-rounds", type=int, default=3)
    parser.add_argument("--fill", type=float, default=0.6, help="share of slots booked per day")
    parser.add_argument("--slot-minutes", type=int, default=60, help="the server's slot length")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--single-calls", type=int, default=500, help="one-at-a-time calls per target"
    )
    add_output_arguments(parser, "bench-booking")
    args = parser.parse_args(argv)
    opts = Options(
        **WindowOptions.from_args(args),
        clients=args.clients,
        contention_rounds=args.contention_rounds,
        fill=args.fill,
        slot_minutes=args.slot_minutes,
        seed=args.seed,
        single_calls=args.single_calls,
    )
    return run_on_platform(args, platform_up, lambda p: measure(p, opts), table)


if __name__ == "__main__":
    sys.exit(main())
