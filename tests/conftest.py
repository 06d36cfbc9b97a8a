"""Shared fixtures: one real platform (PostgreSQL, Redis, server) per test run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from server.devstack.processes import ServerProcess
from tests.support.api import Api, PatientSuperAdmin
from tests.support.fake_telegram import FakeBotApi
from tests.support.leaks import leaked
from tests.support.stack import Infra, Secrets, infra, migrate, server_env, start_server


@dataclass
class Platform:
    infra: Infra
    secrets: Secrets
    pg_dsn: str
    env: dict[str, str]
    server: ServerProcess
    log_path: Path

    @property
    def grpc_addr(self) -> str:
        return self.server.grpc_addr

    @property
    def metrics_addr(self) -> str:
        return self.env["SWITCHBOARD_METRICS_ADDR"]


# What the end-of-session secret scan needs (set by the fixtures below).
_RUN: dict[str, object] = {}


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stack")
    _RUN["workdir"] = path
    return path


@pytest.fixture(scope="session")
def stack_infra(workdir: Path) -> Iterator[Infra]:
    with infra(workdir) as running:
        yield running


@pytest.fixture(scope="session")
def secrets() -> Secrets:
    value = Secrets()
    _RUN["secrets"] = value
    return value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every test: no token or secret of this run may appear in any log it wrote."""
    workdir, run_secrets = _RUN.get("workdir"), _RUN.get("secrets")
    if not isinstance(workdir, Path) or not isinstance(run_secrets, Secrets):
        return
    found = leaked(run_secrets.all(), workdir)
    if found:
        for path, prefix in found:
            print(f"SECRET LEAK: {prefix} in {path}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@contextmanager
def serve(
    stack_infra: Infra,
    secrets: Secrets,
    workdir: Path,
    database: str,
    *,
    logs: str = "",
    env: Mapping[str, str] | None = None,
) -> Iterator[Platform]:
    """A fresh, migrated database ``database`` and a server on it (``env`` on top of the
    test settings), terminated at the end. Logs: migrate{logs}.log and server{logs}.log."""
    dsn = stack_infra.fresh_database(database)
    migrate(dsn, workdir / f"migrate{logs}.log")
    server_environ = {**server_env(dsn, stack_infra.redis.url, secrets), **(env or {})}
    log_path = workdir / f"server{logs}.log"
    server = start_server(server_environ, log_path)
    try:
        yield Platform(stack_infra, secrets, dsn, server_environ, server, log_path)
    finally:
        server.terminate()


@asynccontextmanager
async def connect(platform: Platform) -> AsyncIterator[Api]:
    """The test client on a channel to ``platform``'s server (the super admin waits out its
    read limit)."""
    patient = PatientSuperAdmin()
    async with grpc.aio.insecure_channel(
        platform.grpc_addr, options=[("grpc.enable_http_proxy", 0)], interceptors=[patient]
    ) as channel:
        yield Api(channel, platform.secrets, patient)


@pytest.fixture(scope="session")
def platform(stack_infra: Infra, secrets: Secrets, workdir: Path) -> Iterator[Platform]:
    with serve(stack_infra, secrets, workdir, "switchboard_test") as running:
        yield running


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with connect(platform) as value:
        yield value


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    """The fake Telegram Bot API (tests/support/fake_telegram.py), one per test."""
    async with FakeBotApi() as api:
        yield api
