"""Booking's own platform: a fresh database and server for this package.

The race tests log in well over a hundred users. On the suite's shared database they would
slow every later test that pages through all users (and drain the super admin's read budget),
so booking gets a database of its own. Everything else is the shared infra (PostgreSQL and
Redis processes, secrets, configs/test.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Platform, serve
from tests.support.stack import Infra, Secrets


@pytest.fixture(scope="package")
def platform(stack_infra: Infra, secrets: Secrets, workdir: Path) -> Iterator[Platform]:
    with serve(stack_infra, secrets, workdir, "switchboard_booking", logs="-booking") as running:
        yield running
