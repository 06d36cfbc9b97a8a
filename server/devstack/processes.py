"""The platform server as a child process: start, wait for gRPC health SERVING, stop gracefully.

Used by ``switchboard dev`` (:mod:`server.devstack.stack`) and by end-to-end tests. The server is
started as ``python -m server.cli serve`` with the current interpreter (no console script needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess  # nosec B404
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.devstack._util import stop_child, tail

__all__ = [
    "DEFAULT_GRPC_ADDR",
    "MigrationError",
    "ServerExited",
    "ServerNotServing",
    "ServerProcess",
    "check_health",
    "check_health_async",
    "run_migrate",
    "server_command",
]

DEFAULT_GRPC_ADDR = "127.0.0.1:50051"

# grpc honours http_proxy/https_proxy even for loopback targets unless told not to.
_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


class ServerExited(RuntimeError):
    """The server process exited while we waited for it."""


class ServerNotServing(TimeoutError):
    """The server did not report SERVING on grpc.health.v1 in time."""


class MigrationError(RuntimeError):
    """``switchboard migrate`` failed."""


def server_command(*args: str) -> list[str]:
    """``[python, "-m", "server.cli", *args]`` with the running interpreter."""
    return [sys.executable, "-m", "server.cli", *args]


def _status_name(status: int) -> str:
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))


def check_health(addr: str, *, service: str = "", rpc_timeout: float = 1.0) -> str | None:
    """One grpc.health.v1 Health/Check: ``"SERVING"``, ``"NOT_SERVING"``, ... or None if unreachable."""
    with grpc.insecure_channel(addr, options=_CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=rpc_timeout
            )
        except grpc.RpcError:
            return None
        return _status_name(response.status)


async def check_health_async(
    addr: str, *, service: str = "", rpc_timeout: float = 1.0
) -> str | None:
    """Async twin of :func:`check_health`."""
    async with grpc.aio.insecure_channel(addr, options=_CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=rpc_timeout
            )
        except grpc.RpcError:
            return None
        return _status_name(response.status)


def _child_env(env: Mapping[str, str], inherit_env: bool) -> dict[str, str]:
    merged = dict(os.environ) if inherit_env else {}
    merged.update(env)
    return merged


def run_migrate(
    env: Mapping[str, str],
    *,
    log_path: Path | None = None,
    timeout: float = 300.0,
    command: Sequence[str] | None = None,
    inherit_env: bool = True,
    cwd: Path | None = None,
) -> None:
    """Run ``switchboard migrate`` to completion (``SWITCHBOARD_PG_DSN`` must be in ``env``).

    Output goes to ``log_path`` (appended) if given; raises :class:`MigrationError` on failure.
    """
    cmd = list(command) if command is not None else server_command("migrate")
    child_env = _child_env(env, inherit_env)
    log: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
    try:
        result = subprocess.run(  # noqa: S603 # nosec B603
            cmd,
            env=child_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MigrationError(f"migrate did not finish in {timeout:.0f}s") from exc
    finally:
        if log is not None:
            log.close()
    if result.returncode != 0:
        output = (
            tail(log_path)
            if log_path is not None
            else "\n".join((result.stdout or b"").decode("utf-8", "replace").splitlines()[-40:])
        )
        where = f" (log {log_path})" if log_path is not None else ""
        raise MigrationError(f"migrate exited with {result.returncode}{where}:\n{output}")


class ServerProcess:
    """``switchboard serve`` as a child process.

    ``env`` is laid over the current environment (unless ``inherit_env=False``).
    ``SWITCHBOARD_GRPC_ADDR`` is set to ``grpc_addr`` (default: ``env``'s value, else
    127.0.0.1:50051), which is also where health is checked. Output (the server's JSON logs) goes
    to ``log_path`` (appended), or to our own stdout/stderr if None.
    The child runs in its own session, so a terminal's Ctrl-C reaches only the orchestrator.

    Typical use::

        with ServerProcess(env, grpc_addr=f"127.0.0.1:{free_port()}", log_path=log) as server:
            ...  # serving here; SIGTERM and wait on exit
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        grpc_addr: str | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
        command: Sequence[str] | None = None,
        inherit_env: bool = True,
        health_service: str = "",
    ) -> None:
        self.grpc_addr = grpc_addr or env.get("SWITCHBOARD_GRPC_ADDR") or DEFAULT_GRPC_ADDR
        self.env = _child_env(env, inherit_env)
        self.env["SWITCHBOARD_GRPC_ADDR"] = self.grpc_addr
        self.log_path = log_path
        self.cwd = cwd
        self.command = list(command) if command is not None else server_command("serve")
        self.health_service = health_service
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- state --

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def poll(self) -> int | None:
        """None while running (or never started), else the exit code (negative: killed by signal)."""
        return self.returncode

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    # -- lifecycle --

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> Self:
        """Spawn the server; with ``wait`` (default) block until it reports SERVING."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"server already running (pid {self._proc.pid})")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 # nosec B603
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log is not None else None,
            start_new_session=True,
        )
        if wait:
            try:
                self.wait_serving(timeout)
            except BaseException:
                self.kill()
                raise
        return self

    def _exited_error(self) -> ServerExited:
        rc = self._proc.returncode if self._proc is not None else None
        where = f"; log {self.log_path}:\n{self.log_tail()}" if self.log_path else ""
        return ServerExited(f"server exited with {rc}{where}")

    def _not_serving_error(self, timeout: float, last: str | None) -> ServerNotServing:
        where = f"; log {self.log_path}:\n{self.log_tail()}" if self.log_path else ""
        return ServerNotServing(
            f"server at {self.grpc_addr} not SERVING after {timeout:.0f}s "
            f"(last health: {last or 'unreachable'}){where}"
        )

    def wait_serving(self, timeout: float = 30.0) -> None:
        """Block until Health/Check says SERVING; raise if the process exits or time runs out."""
        if self._proc is None:
            raise RuntimeError("server not started")
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            if self._proc.poll() is not None:
                raise self._exited_error()
            last = check_health(self.grpc_addr, service=self.health_service, rpc_timeout=1.0)
            if last == "SERVING":
                return
            if time.monotonic() > deadline:
                raise self._not_serving_error(timeout, last)
            time.sleep(0.1)

    async def wait_serving_async(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Async twin of :meth:`wait_serving` (does not block the event loop)."""
        if self._proc is None:
            raise RuntimeError("server not started")
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            if self._proc.poll() is not None:
                raise self._exited_error()
            last = await check_health_async(
                self.grpc_addr, service=self.health_service, rpc_timeout=1.0
            )
            if last == "SERVING":
                return
            if time.monotonic() > deadline:
                raise self._not_serving_error(timeout, last)
            await asyncio.sleep(0.1)

    def terminate(self, timeout: float = 20.0) -> int | None:
        """Graceful stop: SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        if self._proc is None:
            return None
        try:
            return stop_child(self._proc, signal.SIGTERM, timeout)
        finally:
            self._close_log()

    def kill(self) -> int | None:
        """SIGKILL the server (and anything it spawned in its session) and reap it."""
        if self._proc is None:
            return None
        try:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
            return self._proc.wait()
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()
