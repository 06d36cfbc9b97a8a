"""Booking's own platform: a fresh database and server for this package.

The race tests log in well over a hundred users. On the suite's shared database they would
slow every later test that pages through all users (and drain the super admin's read budget),
so booking gets a database of its own. Everything else is the shared infra (PostgreSQL and
Redis processes, secrets, configs/test.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Platform
from tests.support.stack import Infra, Secrets, migrate, server_env, start_server


@pytest.fixture(scope="package")
def platform(stack_infra: Infra, secrets: Secrets, workdir: Path) -> Iterator[Platform]:
    dsn = stack_infra.fresh_database("switchboard_booking")
    migrate(dsn, workdir / "migrate-booking.log")
    env = server_env(dsn, stack_infra.redis.url, secrets)
    log_path = workdir / "server-booking.log"
    server = start_server(env, log_path)
    try:
        yield Platform(stack_infra, secrets, dsn, env, server, log_path)
    finally:
        server.terminate()
