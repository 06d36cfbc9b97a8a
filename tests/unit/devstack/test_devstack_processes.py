"""ServerProcess and run_migrate against a stand-in gRPC server (grpc.health.v1 only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from server.devstack.embedded import free_port
from server.devstack.processes import (
    MigrationError,
    ServerExited,
    ServerNotServing,
    ServerProcess,
    check_health,
    check_health_async,
    run_migrate,
    server_command,
)

FAKE_SERVER = [sys.executable, str(Path(__file__).with_name("fake_server.py"))]


def _addr() -> str:
    return f"127.0.0.1:{free_port()}"


def test_server_command_uses_this_interpreter() -> None:
    assert server_command("serve") == [sys.executable, "-m", "server.cli", "serve"]


def test_start_serving_then_graceful_terminate(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    addr = _addr()
    assert check_health(addr) is None
    with ServerProcess(
        {"SWITCHBOARD_PG_DSN": "postgresql://x@127.0.0.1:1/db"},
        grpc_addr=addr,
        log_path=log,
        command=FAKE_SERVER,
    ) as server:
        assert server.is_running()
        assert check_health(addr) == "SERVING"
        assert server.env["SWITCHBOARD_GRPC_ADDR"] == addr
        assert "PATH" in server.env  # the rest of the environment is passed through
    assert server.returncode == 0
    text = log.read_text()
    assert "serving postgresql://x@127.0.0.1:1/db" in text
    assert "graceful stop" in text


async def test_async_wait_and_kill(tmp_path: Path) -> None:
    addr = _addr()
    server = ServerProcess(
        {"FAKE_DELAY": "0.3"}, grpc_addr=addr, log_path=tmp_path / "s.log", command=FAKE_SERVER
    )
    server.start(wait=False)
    try:
        await server.wait_serving_async(timeout=20)
        assert await check_health_async(addr) == "SERVING"
    finally:
        rc = server.kill()
    assert rc is not None
    assert rc < 0


def test_terminate_falls_back_to_kill(tmp_path: Path) -> None:
    server = ServerProcess(
        {"FAKE_IGNORE_TERM": "1"},
        grpc_addr=_addr(),
        log_path=tmp_path / "s.log",
        command=FAKE_SERVER,
    ).start(timeout=20)
    rc = server.terminate(timeout=0.5)
    assert rc is not None
    assert rc < 0


def test_exit_during_start_is_reported_with_log(tmp_path: Path) -> None:
    server = ServerProcess(
        {},
        grpc_addr=_addr(),
        log_path=tmp_path / "s.log",
        command=[sys.executable, "-c", "print('boom: bad settings'); raise SystemExit(3)"],
    )
    with pytest.raises(ServerExited, match=r"(?s)exited with 3.*boom: bad settings"):
        server.start(timeout=20)


def test_not_serving_in_time(tmp_path: Path) -> None:
    server = ServerProcess(
        {},
        grpc_addr=_addr(),
        command=[sys.executable, "-c", "import time; time.sleep(30)"],
    )
    with pytest.raises(ServerNotServing, match="unreachable"):
        server.start(timeout=0.5)
    assert not server.is_running()  # a failed start does not leave the child behind


def test_run_migrate(tmp_path: Path) -> None:
    out = tmp_path / "dsn.txt"
    code = f"import os, pathlib; pathlib.Path({str(out)!r}).write_text(os.environ['SWITCHBOARD_PG_DSN'])"
    run_migrate(
        {"SWITCHBOARD_PG_DSN": "postgresql://u@127.0.0.1:5/db"},
        command=[sys.executable, "-c", code],
        log_path=tmp_path / "migrate.log",
    )
    assert out.read_text() == "postgresql://u@127.0.0.1:5/db"

    with pytest.raises(MigrationError, match=r"(?s)exited with 2.*no such revision"):
        run_migrate(
            {},
            command=[sys.executable, "-c", "print('no such revision'); raise SystemExit(2)"],
        )
