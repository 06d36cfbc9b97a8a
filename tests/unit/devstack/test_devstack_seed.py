"""The dev seed's place in `switchboard dev`: when it runs, what a failure does, the seed
admin in the server's environment (the seed itself against a real server: tests/e2e)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from server.devstack import booking_seed
from server.devstack.booking_seed import SeededMaster, super_admin_ids
from server.devstack.stack import DevSettings, DevStack
from tests.support.devstack import dev_settings

HERE = Path(__file__).parent
FAKE_SERVER = [sys.executable, str(HERE / "fake_server.py")]
NO_MIGRATE = [sys.executable, "-c", "pass"]

MASTERS = [
    SeededMaster("m1", "u1", "Алексей", True),
    SeededMaster("m2", "u2", "Марина", False),
]


def _settings(tmp_path: Path) -> DevSettings:
    # external: nothing embedded is started
    return dev_settings(
        tmp_path, pg_dsn="postgresql://127.0.0.1:1/unused", redis_url="redis://127.0.0.1:1/0"
    )


def _run(tmp_path: Path, seed: object, **environ: str) -> tuple[DevStack, str]:
    out = io.StringIO()
    stack = DevStack(
        _settings(tmp_path),
        server_cmd=FAKE_SERVER,
        migrate_cmd=NO_MIGRATE,
        environ={"SWITCHBOARD_DEV_NO_WORKERS": "1", **environ},
        out=out,
        seed=seed,  # type: ignore[arg-type]
    )
    try:
        stack.start()
        stack.say(stack.summary())
    finally:
        stack.stop()
    return stack, out.getvalue()


def test_the_seed_runs_once_the_server_serves(tmp_path: Path) -> None:
    calls: list[str] = []

    def seed(addr: str) -> list[SeededMaster]:
        calls.append(addr)
        return MASTERS

    stack, out = _run(tmp_path, seed)
    assert calls == [stack.settings.grpc_addr]
    assert stack.seeded == MASTERS
    assert "[dev] booking masters: Алексей (created), Марина (already there)" in out
    assert out.index("server SERVING") < out.index("booking masters")
    assert "Booking       masters Алексей, Марина" in out
    assert "700000001, 700000002; admin 700000000" in out


def test_a_failing_seed_is_reported_and_the_platform_stays_up(tmp_path: Path) -> None:
    def seed(addr: str) -> list[SeededMaster]:
        raise booking_seed.SeedError("CreateMaster Алексей: INTERNAL")

    stack, out = _run(tmp_path, seed)
    assert "[dev] warning: the booking seed failed: SeedError: CreateMaster" in out
    assert "Switchboard dev platform is running" in out
    assert stack.seeded is None
    assert "Booking " not in out


def test_a_server_without_booking_skips_the_seed(tmp_path: Path) -> None:
    # The real seed against the stand-in server (health only): DevLogin is UNIMPLEMENTED.
    stack, out = _run(tmp_path, booking_seed.run_seed)
    assert "[dev] booking seed skipped (the server does not serve booking)" in out
    assert stack.seeded is None


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_the_seed_can_be_turned_off(tmp_path: Path, value: str) -> None:
    calls: list[str] = []
    _, out = _run(tmp_path, calls.append, SWITCHBOARD_DEV_NO_SEED=value)
    assert calls == []
    assert "booking" not in out.lower()


def test_the_seed_admin_joins_the_configured_super_admins(tmp_path: Path) -> None:
    assert super_admin_ids("") == "700000000"
    assert super_admin_ids(" 1, 2 ,") == "1,2,700000000"
    assert super_admin_ids("700000000,5") == "700000000,5"
    stack = DevStack(_settings(tmp_path), environ={"SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS": "42"})
    assert stack.server_env()["SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS"] == "42,700000000"
    assert (
        DevStack(_settings(tmp_path), environ={}).server_env()[
            "SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS"
        ]
        == "700000000"
    )


def test_seed_masters_are_fixed() -> None:
    # Fixed Telegram ids and request ids: every run asks for the same two masters.
    assert [(m.telegram_user_id, m.display_name) for m in booking_seed.MASTERS] == [
        (700000001, "Алексей"),
        (700000002, "Марина"),
    ]
    assert len({m.request_id for m in booking_seed.MASTERS}) == 2
