"""`switchboard dev`: PostgreSQL, Redis, migrations, the server and Envoy on 127.0.0.1.

Order of start: PostgreSQL and Redis (embedded unless ``SWITCHBOARD_PG_DSN`` /
``SWITCHBOARD_REDIS_URL`` point at real ones), ``switchboard migrate``, ``switchboard serve``
(until grpc.health.v1 says SERVING), then Envoy (REST/JSON transcoding in front of gRPC), then
the dev seed (two booking masters, through the gRPC API; see
:mod:`server.devstack.booking_seed`), then
the notification dispatcher (``python -m workers.dispatcher``) and, when any
``SWITCHBOARD_<BOT>_BOT_TOKEN`` is set, the bots (``python -m bots``). Dev service tokens for the
``login-bot``, ``booking-bot`` and ``dispatcher`` principals are generated into ``.data/service_tokens/`` (like
the data key) unless ``SWITCHBOARD_SERVICE_TOKEN_*`` is set, and handed to all of them.
A summary goes to stdout; every child's output goes to ``.data/logs/*.log``.
SIGINT/SIGTERM/SIGHUP stop everything in reverse order (exit 0); a child that dies on its own
stops the rest too (exit 1). Nothing reads stdin, so ``nohup make dev &`` works.

Environment (all optional):

==============================  ==================================================
SWITCHBOARD_PG_DSN              use this PostgreSQL instead of the embedded one
SWITCHBOARD_REDIS_URL           use this Redis instead of the embedded one
SWITCHBOARD_DEV_PG_PORT         embedded PostgreSQL port (55432)
SWITCHBOARD_DEV_REDIS_PORT      embedded Redis port (56379)
SWITCHBOARD_GRPC_ADDR           gRPC listen address (127.0.0.1:50051)
SWITCHBOARD_METRICS_ADDR        Prometheus listen address (127.0.0.1:9464)
SWITCHBOARD_HTTP_ADDR           Envoy REST listen address (127.0.0.1:8080)
SWITCHBOARD_ENVOY_ADMIN_PORT    Envoy admin port on 127.0.0.1 (9901)
SWITCHBOARD_CORS_ORIGINS        comma-separated origins allowed by Envoy's CORS filter
SWITCHBOARD_<BOT>_BOT_TOKEN     start ``python -m bots`` (e.g. SWITCHBOARD_LOGIN_BOT_TOKEN)
SWITCHBOARD_DEV_NO_WORKERS      1: start neither the dispatcher nor the bots
SWITCHBOARD_DEV_NO_SEED         1: skip the dev seed (booking masters)
==============================  ==================================================
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import secrets
import signal
import subprocess  # nosec B404
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

from gateway import envoy
from gateway.openapi import write_openapi
from server.config import ServicePrincipalConfig
from server.devstack import booking_seed
from server.devstack._util import (
    LOOPBACK,
    DirLock,
    pid_start_time,
    port_is_free,
    split_host_port,
    stop_child,
    stop_foreign_pid,
)
from server.devstack.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis
from server.devstack.processes import (
    MigrationError,
    ServerExited,
    ServerNotServing,
    ServerProcess,
    run_migrate,
    server_command,
)
from server.kernel.crypto import generate_key
from workers.dispatcher.settings import bot_tokens

__all__ = ["DevSettings", "DevStack", "GatewayApi", "StackError", "run_dev"]

DEV_DATABASE = "switchboard"
DEFAULT_PG_PORT = 55432
DEFAULT_REDIS_PORT = 56379
DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_METRICS_ADDR = "127.0.0.1:9464"
DEFAULT_HTTP_ADDR = "127.0.0.1:8080"
DEFAULT_ENVOY_ADMIN_PORT = 9901
#: Service principals whose tokens `make dev` generates (configs/dev.yaml service_principals).
DEV_PRINCIPALS = ("login-bot", "booking-bot", "dispatcher")


class StackError(RuntimeError):
    """The dev stack could not be started."""


# --- settings ------------------------------------------------------------------------------------


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {raw!r}") from None


@dataclass(frozen=True)
class DevSettings:
    data_dir: Path
    build_dir: Path
    pg_dsn: str | None  # None: embedded
    redis_url: str | None  # None: embedded
    pg_port: int
    redis_port: int
    grpc_addr: str
    metrics_addr: str
    http_addr: str
    envoy_admin_port: int
    cors_origins: list[str] | None
    with_envoy: bool = True
    startup_timeout: float = 60.0

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def descriptor_path(self) -> Path:
        return self.build_dir / "switchboard.binpb"

    @property
    def openapi_path(self) -> Path:
        return self.build_dir / "openapi.json"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        data_dir: Path = Path(".data"),
        build_dir: Path = Path(".build"),
        with_envoy: bool = True,
        startup_timeout: float = 60.0,
    ) -> DevSettings:
        origins = [o.strip() for o in environ.get("SWITCHBOARD_CORS_ORIGINS", "").split(",")]
        settings = cls(
            data_dir=data_dir.resolve(),
            build_dir=build_dir.resolve(),
            pg_dsn=environ.get("SWITCHBOARD_PG_DSN") or None,
            redis_url=environ.get("SWITCHBOARD_REDIS_URL") or None,
            pg_port=_int_env(environ, "SWITCHBOARD_DEV_PG_PORT", DEFAULT_PG_PORT),
            redis_port=_int_env(environ, "SWITCHBOARD_DEV_REDIS_PORT", DEFAULT_REDIS_PORT),
            grpc_addr=environ.get("SWITCHBOARD_GRPC_ADDR") or DEFAULT_GRPC_ADDR,
            metrics_addr=environ.get("SWITCHBOARD_METRICS_ADDR") or DEFAULT_METRICS_ADDR,
            http_addr=environ.get("SWITCHBOARD_HTTP_ADDR") or DEFAULT_HTTP_ADDR,
            envoy_admin_port=_int_env(
                environ, "SWITCHBOARD_ENVOY_ADMIN_PORT", DEFAULT_ENVOY_ADMIN_PORT
            ),
            cors_origins=[o for o in origins if o] or None,
            with_envoy=with_envoy,
            startup_timeout=startup_timeout,
        )
        for name in ("grpc_addr", "metrics_addr", "http_addr"):
            try:
                split_host_port(getattr(settings, name))
            except ValueError as exc:
                raise StackError(f"{name}: {exc}") from None
        return settings


# --- the gateway seam ----------------------------------------------------------------------------


class GatewayApi(Protocol):
    """What the dev stack needs from the gateway package (Envoy in front of the server)."""

    def build_openapi(self, image: Path, out: Path) -> None: ...

    def render_config(
        self,
        *,
        listen_host: str,
        listen_port: int,
        upstream_host: str,
        upstream_port: int,
        descriptor_path: Path,
        openapi_path: Path,
        admin_port: int,
        out_path: Path,
        cors_origins: list[str] | None,
    ) -> Path: ...

    def start_envoy(self, config_path: Path, log_path: Path) -> subprocess.Popen[bytes]: ...

    def wait_ready(self, admin_port: int, timeout: float) -> None: ...

    def stop_envoy(self, proc: subprocess.Popen[bytes], timeout: float) -> object: ...


class GatewayPackage:
    """:class:`GatewayApi` backed by the ``gateway`` package (the real Envoy)."""

    render_config = staticmethod(envoy.render_config)
    start_envoy = staticmethod(envoy.start_envoy)
    wait_ready = staticmethod(envoy.wait_ready)
    stop_envoy = staticmethod(envoy.stop_envoy)

    def build_openapi(self, image: Path, out: Path) -> None:
        try:
            write_openapi(image, out)
        except (OSError, ValueError) as exc:
            raise StackError(f"OpenAPI generation from {image} failed: {exc}") from exc


# --- workers (dispatcher, bots) ----------------------------------------------------------------


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`; made by `make` and written (file 0o600, folder 0o700) if absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make())
    return path.read_text().strip()


def worker_command(name: str) -> list[str] | None:
    """The command of worker `name` ("dispatcher" or "bots"), or None if its module is absent."""
    module = {"dispatcher": "workers.dispatcher", "bots": "bots"}[name]
    try:
        found = importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        found = False
    return [sys.executable, "-m", module] if found else None


# --- the stack -----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DevStack:
    """Starts and stops the dev platform; :func:`run_dev` adds signals and the wait loop.

    ``server_cmd`` / ``migrate_cmd`` / ``gateway`` replace the real ones (tests);
    ``worker_cmds`` maps "dispatcher" / "bots" to their command (None: do not start it).
    """

    def __init__(
        self,
        settings: DevSettings,
        *,
        gateway: GatewayApi | None = None,
        server_cmd: Sequence[str] | None = None,
        migrate_cmd: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
        out: TextIO | None = None,
        worker_cmds: Mapping[str, Sequence[str] | None] | None = None,
        seed: Callable[[str], list[booking_seed.SeededMaster] | None] | None = None,
    ) -> None:
        self.settings = settings
        self.gateway: GatewayApi = gateway if gateway is not None else GatewayPackage()
        self.server_cmd = list(server_cmd) if server_cmd is not None else server_command("serve")
        self.migrate_cmd = (
            list(migrate_cmd) if migrate_cmd is not None else server_command("migrate")
        )
        self.environ = dict(environ if environ is not None else os.environ)
        self.out = out
        self.pg: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.server: ServerProcess | None = None
        self.envoy: subprocess.Popen[bytes] | None = None
        self.worker_cmds = dict(worker_cmds) if worker_cmds is not None else None
        self.seed = seed if seed is not None else booking_seed.run_seed
        #: What the dev seed made or found (None: not run, skipped or failed).
        self.seeded: list[booking_seed.SeededMaster] | None = None
        #: Running workers by name ("dispatcher", "bots"), in start order.
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        #: Why a worker was not started, by name (for the summary).
        self.skipped: dict[str, str] = {}
        self.pg_dsn = settings.pg_dsn or ""
        self.redis_url = settings.redis_url or ""
        self._lock = DirLock(settings.data_dir / "dev.lock")

    def say(self, message: str) -> None:
        stream = self.out if self.out is not None else sys.stdout
        with suppress(OSError, ValueError):
            print(message, file=stream, flush=True)

    def log_path(self, name: str) -> Path:
        return self.settings.logs_dir / f"{name}.log"

    def server_env(self) -> dict[str, str]:
        """The environment of ``migrate`` and ``serve``: ours plus the dev settings."""
        s = self.settings
        env = dict(self.environ)
        env.update(
            {
                "SWITCHBOARD_ENV": "dev",
                "SWITCHBOARD_PG_DSN": self.pg_dsn,
                "SWITCHBOARD_REDIS_URL": self.redis_url,
                "SWITCHBOARD_GRPC_ADDR": s.grpc_addr,
                "SWITCHBOARD_METRICS_ADDR": s.metrics_addr,
            }
        )
        if not env.get("SWITCHBOARD_DATA_KEY"):
            env["SWITCHBOARD_DATA_KEY"] = self.data_key()
        # The dev seed's admin (DevLogin with its Telegram id) creates the booking masters.
        variable = booking_seed.SUPER_ADMIN_VARIABLE
        env[variable] = booking_seed.super_admin_ids(env.get(variable, ""))
        for principal in DEV_PRINCIPALS:
            name = ServicePrincipalConfig.token_variable(principal)
            if not env.get(name, "").strip():
                env[name] = self.service_token(principal)
        return env

    def worker_env(self) -> dict[str, str]:
        """The environment of the dispatcher and the bots: the server's (same service tokens),
        pointed at the server, without its listen-only settings."""
        env = self.server_env()
        env["SWITCHBOARD_SERVER_ADDR"] = self.settings.grpc_addr
        env.pop("SWITCHBOARD_METRICS_ADDR", None)  # the server's port
        return env

    def service_token(self, principal: str) -> str:
        """A dev service token: generated once into data_dir/service_tokens (owner-only)."""
        path = self.settings.data_dir / "service_tokens" / principal
        return _secret_file(path, lambda: secrets.token_urlsafe(32))

    def data_key(self) -> str:
        """The dev data key: generated once into the data dir (owner-only), kept across runs."""
        return _secret_file(self.settings.data_dir / "data_key", generate_key)

    def _preflight(self) -> None:
        s = self.settings
        # (The embedded servers check their own ports, after stopping their own leftovers.)
        wanted: list[tuple[str, str, int]] = [("gRPC", *split_host_port(s.grpc_addr))]
        wanted.append(("metrics", *split_host_port(s.metrics_addr)))
        if s.with_envoy:
            wanted.append(("Envoy HTTP", *split_host_port(s.http_addr)))
            wanted.append(("Envoy admin", LOOPBACK, s.envoy_admin_port))
            if not s.descriptor_path.exists():
                raise StackError(
                    f"{s.descriptor_path} is missing: run `make image` (or `make gen`) first"
                )
        busy = [
            f"{what} {host}:{port}" for what, host, port in wanted if not port_is_free(host, port)
        ]
        if busy:
            raise StackError(
                "ports already in use: " + ", ".join(busy) + " (is another `make dev` running?)"
            )
        for what, host, _port in wanted:
            if not _is_loopback(host):
                self.say(f"[dev] warning: {what} listens on {host}, not on loopback")

    def start(self) -> None:
        """Bring everything up; on failure what was started stays for :meth:`stop` to take down."""
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except RuntimeError:
            raise StackError(
                f"another `switchboard dev` is running on {s.data_dir} (pid in {self._lock.path})"
            ) from None
        self._stop_leftovers()
        self._preflight()
        s.logs_dir.mkdir(parents=True, exist_ok=True)

        if s.pg_dsn is None:
            t0 = time.monotonic()
            self.pg = EmbeddedPostgres(
                s.data_dir / "postgres",
                port=s.pg_port,
                database=DEV_DATABASE,
                log_path=self.log_path("postgres"),
            )
            self.pg.start()
            self.pg_dsn = self.pg.dsn
            self.say(f"[dev] PostgreSQL  {self.pg_dsn}  ({time.monotonic() - t0:.1f}s)")
        if s.redis_url is None:
            t0 = time.monotonic()
            self.redis = EmbeddedRedis(
                s.data_dir / "redis", port=s.redis_port, log_path=self.log_path("redis")
            )
            self.redis.start()
            self.redis_url = self.redis.url
            self.say(f"[dev] Redis       {self.redis_url}  ({time.monotonic() - t0:.1f}s)")

        t0 = time.monotonic()
        run_migrate(
            self.server_env(),
            log_path=self.log_path("migrate"),
            command=self.migrate_cmd,
            inherit_env=False,
        )
        self.say(f"[dev] migrations applied  ({time.monotonic() - t0:.1f}s)")

        t0 = time.monotonic()
        self.server = ServerProcess(
            self.server_env(),
            grpc_addr=s.grpc_addr,
            log_path=self.log_path("server"),
            command=self.server_cmd,
            inherit_env=False,
        )
        self.server.start(wait=False)
        self._record("server", self.server.pid)
        self.server.wait_serving(timeout=s.startup_timeout)
        self.say(f"[dev] server SERVING on {s.grpc_addr}  ({time.monotonic() - t0:.1f}s)")
        self._seed()

        if s.with_envoy:
            t0 = time.monotonic()
            http_host, http_port = split_host_port(s.http_addr)
            grpc_host, grpc_port = split_host_port(s.grpc_addr)
            self.gateway.build_openapi(s.descriptor_path, s.openapi_path)
            config = self.gateway.render_config(
                listen_host=http_host,
                listen_port=http_port,
                upstream_host=grpc_host,
                upstream_port=grpc_port,
                descriptor_path=s.descriptor_path,
                openapi_path=s.openapi_path,
                admin_port=s.envoy_admin_port,
                out_path=s.data_dir / "envoy" / "envoy.yaml",
                cors_origins=s.cors_origins,
            )
            self.envoy = self.gateway.start_envoy(config, self.log_path("envoy"))
            self._record("envoy", self.envoy.pid)
            self.gateway.wait_ready(s.envoy_admin_port, timeout=min(s.startup_timeout, 20.0))
            self.say(f"[dev] Envoy on http://{s.http_addr}  ({time.monotonic() - t0:.1f}s)")

        self._start_workers()

    def _seed(self) -> None:
        """Seed dev data through the API; a failure is reported, not fatal (the platform
        itself is up and usable)."""
        if self.environ.get("SWITCHBOARD_DEV_NO_SEED", "").strip() in ("1", "true", "yes"):
            return
        t0 = time.monotonic()
        try:
            seeded = self.seed(self.settings.grpc_addr)
        except Exception as exc:  # grpc errors, SeedError: say so and go on
            self.say(f"[dev] warning: the booking seed failed: {type(exc).__name__}: {exc}")
            return
        if seeded is None:
            self.say("[dev] booking seed skipped (the server does not serve booking)")
            return
        self.seeded = seeded
        masters = ", ".join(
            f"{m.display_name} ({'created' if m.created else 'already there'})" for m in seeded
        )
        self.say(f"[dev] booking masters: {masters}  ({time.monotonic() - t0:.1f}s)")

    def _worker_cmd(self, name: str) -> list[str] | None:
        if self.worker_cmds is not None:
            cmd = self.worker_cmds.get(name)
            return list(cmd) if cmd is not None else None
        return worker_command(name)

    def _start_workers(self) -> None:
        if self.environ.get("SWITCHBOARD_DEV_NO_WORKERS", "").strip() in ("1", "true", "yes"):
            self.skipped = {
                "dispatcher": "SWITCHBOARD_DEV_NO_WORKERS is set",
                "bots": "SWITCHBOARD_DEV_NO_WORKERS is set",
            }
            return
        env = self.worker_env()
        for name in ("dispatcher", "bots"):
            cmd = self._worker_cmd(name)
            if cmd is None:
                self.skipped[name] = "not available"
                continue
            if name == "bots" and not bot_tokens(env):
                self.skipped[name] = "no SWITCHBOARD_<BOT>_BOT_TOKEN set"
                continue
            log_path = self.log_path(name)
            with log_path.open("ab") as log:
                proc = subprocess.Popen(  # noqa: S603 # nosec B603
                    cmd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.workers[name] = proc
            self._record(name, proc.pid)
            self.say(f"[dev] {name} started (pid {proc.pid}, log {_display_path(log_path)})")

    # A killed orchestrator (SIGKILL, OOM) leaves its server and Envoy running. Their pids are
    # recorded under data_dir/run/ and the next start, holding dev.lock, stops them.

    def _record(self, name: str, pid: int | None) -> None:
        started = pid_start_time(pid) if pid is not None else None
        if pid is None or started is None:
            return
        run_dir = self.settings.data_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / f"{name}.pid").write_text(f"{pid} {started}\n")

    def _forget(self, name: str) -> None:
        (self.settings.data_dir / "run" / f"{name}.pid").unlink(missing_ok=True)

    def _stop_leftovers(self) -> None:
        run_dir = self.settings.data_dir / "run"
        for name in ("bots", "dispatcher", "envoy", "server"):
            pidfile = run_dir / f"{name}.pid"
            try:
                pid_text, started = pidfile.read_text().split()
                pid = int(pid_text)
            except (OSError, ValueError):
                pidfile.unlink(missing_ok=True)
                continue
            if pid_start_time(pid) == started:  # the very process we started, not a reused pid
                self.say(f"[dev] stopping leftover {name} (pid {pid}) of a previous run")
                stop_foreign_pid(pid, signal.SIGTERM, 30.0)
            pidfile.unlink(missing_ok=True)

    def dead_child(self) -> str | None:
        """A description of the first child that exited on its own, else None."""
        if self.server is not None and self.server.poll() is not None:
            return f"server exited with {self.server.poll()}; log {self.log_path('server')}"
        if self.envoy is not None and self.envoy.poll() is not None:
            return f"Envoy exited with {self.envoy.poll()}; log {self.log_path('envoy')}"
        if self.pg is not None and not self.pg.is_running():
            return f"PostgreSQL exited; log {self.log_path('postgres')}"
        if self.redis is not None and not self.redis.is_running():
            return f"Redis exited; log {self.log_path('redis')}"
        for name, proc in self.workers.items():
            if proc.poll() is not None:
                return f"{name} exited with {proc.poll()}; log {self.log_path(name)}"
        return None

    def stop(self) -> None:
        """The bots and the dispatcher, Envoy, the server (SIGTERM, graceful), then Redis and
        PostgreSQL. Idempotent."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("workers", self._stop_workers),
            ("Envoy", self._stop_envoy),
            ("server", self._stop_server),
            ("Redis", self._stop_redis),
            ("PostgreSQL", self._stop_pg),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # keep going: the rest must still be stopped
                self.say(f"[dev] stopping {name} failed: {exc}")
        self._lock.release()

    def _stop_workers(self) -> None:
        for name in reversed(list(self.workers)):
            proc = self.workers.pop(name)
            try:
                rc = stop_child(proc, signal.SIGTERM, 15.0)
            except Exception as exc:
                self.say(f"[dev] stopping {name} failed: {exc}")
                continue
            finally:
                self._forget(name)
            self.say(f"[dev] {name} stopped ({rc})")

    def _stop_envoy(self) -> None:
        proc, self.envoy = self.envoy, None
        if proc is None:
            return
        try:
            self.gateway.stop_envoy(proc, 10.0)
        finally:
            if proc.poll() is None:  # the gateway's stop did not do it
                stop_child(proc, signal.SIGTERM, 10.0)
            self._forget("envoy")

    def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            rc = server.terminate(timeout=30.0)
            self._forget("server")
            self.say(f"[dev] server stopped ({rc})")

    def _stop_redis(self) -> None:
        redis, self.redis = self.redis, None
        if redis is not None:
            redis.stop()

    def _stop_pg(self) -> None:
        pg, self.pg = self.pg, None
        if pg is not None:
            pg.stop()

    def summary(self) -> str:
        s = self.settings
        data = _display_path(s.data_dir)
        lines = ["", "Switchboard dev platform is running:"]
        if self.server is not None:
            lines.append(f"  gRPC          {s.grpc_addr}  (server pid {self.server.pid})")
        if s.with_envoy:
            lines.append(f"  REST (Envoy)  http://{s.http_addr}/v1/...")
            lines.append(f"  Envoy admin   http://{LOOPBACK}:{s.envoy_admin_port}/")
        lines.append(f"  Metrics       http://{s.metrics_addr}/metrics")
        pg_kind = f"embedded, data in {data}/postgres" if self.pg else "external"
        redis_kind = f"embedded, data in {data}/redis" if self.redis else "external"
        lines.append(f"  PostgreSQL    {self.pg_dsn}  ({pg_kind})")
        lines.append(f"  Redis         {self.redis_url}  ({redis_kind})")
        lines.append(f"  Logs          {data}/logs/*.log")
        if self.seeded:
            names = ", ".join(m.display_name for m in self.seeded)
            lines.append(
                f"  Booking       masters {names} (dev logins: Telegram ids "
                f"{', '.join(str(m.telegram_user_id) for m in booking_seed.MASTERS)}; "
                f"admin {booking_seed.SEED_ADMIN_TELEGRAM_ID})"
            )
        for name in ("dispatcher", "bots"):
            proc = self.workers.get(name)
            label = f"  {name.capitalize():<14}"
            if proc is not None:
                lines.append(f"{label}pid {proc.pid}, log {data}/logs/{name}.log")
            elif name in self.skipped:
                lines.append(f"{label}not started ({self.skipped[name]})")
        if s.with_envoy:
            lines += [
                "",
                "Try:",
                f"  curl -X POST http://{s.http_addr}/v1/auth/dev/login "
                """-d '{"telegram_user_id": 1, "display_name": "Dev"}'""",
            ]
        lines += ["", f"Stop with Ctrl-C or `kill {os.getpid()}`.", ""]
        return "\n".join(lines)


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- signals and the main loop -------------------------------------------------------------------


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _Interrupted(BaseException):
    """Raised from a signal handler while the stack is starting."""


class _SignalCatcher:
    """SIGINT/SIGTERM (and SIGHUP unless ignored, as under nohup) ask the stack to stop.

    While starting, the first signal raises :class:`_Interrupted` to abandon the start; once
    running, it sets :attr:`event`. Later signals are ignored: the shutdown is already under way
    and each of its steps has a timeout.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.raising = True
        self._previous: dict[signal.Signals, _Handler] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        self.event.set()
        if self.raising:
            raise _Interrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[_SignalCatcher]:
        signals = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signals.append(signal.SIGHUP)
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handler)
        try:
            yield self
        finally:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)

    def mute(self) -> None:
        """From now on signals are recorded (first one only) but never raise."""
        self.raising = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard dev",
        description="Run the platform locally: PostgreSQL, Redis, migrations, server, Envoy.",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".data"), help="default: .data")
    parser.add_argument("--build-dir", type=Path, default=Path(".build"), help="default: .build")
    parser.add_argument("--no-envoy", action="store_true", help="skip Envoy (gRPC only)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each part to be ready"
    )
    return parser


_EXPECTED = (StackError, EmbeddedError, MigrationError, ServerExited, ServerNotServing, OSError)


def run(stack: DevStack, *, poll_interval: float = 0.5) -> int:
    """Start ``stack``, print the summary, wait for a signal or a dying child, stop everything."""
    catcher = _SignalCatcher()
    rc = 0
    with catcher.installed():
        try:
            stack.start()
            catcher.mute()
            stack.say(stack.summary())
            while not catcher.event.wait(poll_interval):
                dead = stack.dead_child()
                if dead is not None:
                    _err(f"[dev] {dead}; stopping everything")
                    rc = 1
                    break
        except _Interrupted:
            pass
        except _EXPECTED as exc:
            _err(f"[dev] startup failed: {exc}")
            rc = 1
        except Exception as exc:
            if type(exc).__module__.startswith("gateway."):  # EnvoyError & co: self-explanatory
                _err(f"[dev] startup failed: {type(exc).__name__}: {exc}")
            else:
                _err(f"[dev] startup failed:\n{traceback.format_exc()}")
            rc = 1
        finally:
            catcher.mute()
            if catcher.signum is not None:
                stack.say(f"[dev] {signal.Signals(catcher.signum).name}: stopping")
            stack.stop()
            stack.say("[dev] stopped")
    return rc


def _err(message: str) -> None:
    with suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


def run_dev(argv: list[str] | None = None) -> int:
    """Entry point of ``switchboard dev``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = DevSettings.from_env(
            os.environ,
            data_dir=args.data_dir,
            build_dir=args.build_dir,
            with_envoy=not args.no_envoy,
            startup_timeout=args.timeout,
        )
    except StackError as exc:
        _err(f"[dev] {exc}")
        return 2
    return run(DevStack(settings))
