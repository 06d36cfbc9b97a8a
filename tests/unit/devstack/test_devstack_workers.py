"""`make dev` also runs the notification dispatcher and the bots (when a bot token is set)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from bots.registry import BOTS
from server.config import ServicePrincipalConfig
from server.devstack.stack import DEV_PRINCIPALS, DevStack, worker_command
from tests.support.devstack import dev_settings

HERE = Path(__file__).parent
FAKE_SERVER = [sys.executable, str(HERE / "fake_server.py")]
NOOP = [sys.executable, "-c", "print('migrated')"]


def _worker(name: str) -> list[str]:
    return [sys.executable, str(HERE / "fake_worker.py"), name]


def _wait_file(path: Path, timeout: float = 20.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    value: dict[str, str] = json.loads(path.read_text())
    return value


def test_helpers() -> None:
    # The dev stack names the service tokens as the server reads them.
    variable = ServicePrincipalConfig.token_variable
    assert variable("login-bot") == "SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT"
    assert variable("dispatcher") == "SWITCHBOARD_SERVICE_TOKEN_DISPATCHER"
    bots = worker_command("bots")
    assert bots is not None
    assert bots[1:] == ["-m", "bots"]


def test_a_data_key_from_the_environment_is_used_and_none_generated(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    given = DevStack(settings, environ={"SWITCHBOARD_DATA_KEY": "from-env"}, out=io.StringIO())
    assert given.server_env()["SWITCHBOARD_DATA_KEY"] == "from-env"
    assert not (settings.data_dir / "data_key").exists()
    made = DevStack(settings, environ={"SWITCHBOARD_DATA_KEY": ""}, out=io.StringIO())
    key = made.server_env()["SWITCHBOARD_DATA_KEY"]
    assert key == (settings.data_dir / "data_key").read_text().strip()
    assert stat.S_IMODE((settings.data_dir / "data_key").stat().st_mode) == 0o600
    assert stat.S_IMODE((settings.data_dir / "service_tokens").stat().st_mode) == 0o700


def test_workers_start_with_the_dev_service_tokens_and_stop(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    outdir = tmp_path / "workers"
    outdir.mkdir()
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "FAKE_WORKER_OUT": str(outdir),
        "SWITCHBOARD_LOGIN_BOT_TOKEN": "123:fake-token",
    }
    out = io.StringIO()
    stack = DevStack(
        settings,
        server_cmd=FAKE_SERVER,
        migrate_cmd=NOOP,
        environ=environ,
        out=out,
        worker_cmds={"dispatcher": _worker("dispatcher"), "bots": _worker("bots")},
    )
    try:
        stack.start()
        assert list(stack.workers) == ["dispatcher", "bots"]
        server_env = stack.server_env()
        for name in ("dispatcher", "bots"):
            env = _wait_file(outdir / f"{name}.json")
            assert env["SWITCHBOARD_SERVER_ADDR"] == settings.grpc_addr
            assert "SWITCHBOARD_METRICS_ADDR" not in env  # the server's port, not theirs
            assert env["SWITCHBOARD_LOGIN_BOT_TOKEN"] == "123:fake-token"
            for principal in DEV_PRINCIPALS:
                key = ServicePrincipalConfig.token_variable(principal)
                assert env[key] == server_env[key]
                assert len(env[key]) >= 32
        token_file = settings.data_dir / "service_tokens" / "login-bot"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        summary = stack.summary()
        assert f"pid {stack.workers['bots'].pid}, log .data/logs/bots.log" in summary or (
            "logs/bots.log" in summary
        )
        assert stack.dead_child() is None
        # A worker that dies on its own is noticed (and `make dev` then stops everything).
        stack.workers["dispatcher"].send_signal(signal.SIGKILL)
        stack.workers["dispatcher"].wait()
        dead = stack.dead_child()
        assert dead is not None
        assert dead.startswith("dispatcher exited with -9")
        bots = stack.workers["bots"]
    finally:
        stack.stop()
    assert bots.poll() == 0  # SIGTERM, graceful
    assert stack.workers == {}
    assert "worker stopped" in (settings.data_dir / "logs" / "bots.log").read_text()
    assert not (settings.data_dir / "run" / "bots.pid").exists()

    # The tokens are kept across runs; an explicit variable wins.
    again = DevStack(
        settings,
        environ={"SWITCHBOARD_SERVICE_TOKEN_DISPATCHER": "from-env"},
        worker_cmds={},
    )
    env = again.server_env()
    assert (
        env["SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT"]
        == server_env["SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT"]
    )
    assert env["SWITCHBOARD_SERVICE_TOKEN_DISPATCHER"] == "from-env"


def test_bots_need_a_token_and_workers_can_be_disabled(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    outdir = tmp_path / "workers"
    outdir.mkdir()
    base = {"PATH": os.environ.get("PATH", ""), "FAKE_WORKER_OUT": str(outdir)}
    cmds = {"dispatcher": _worker("dispatcher"), "bots": _worker("bots")}
    stack = DevStack(
        settings, server_cmd=FAKE_SERVER, migrate_cmd=NOOP, environ=base, worker_cmds=cmds,
        out=io.StringIO(),
    )  # fmt: skip
    try:
        stack.start()
        assert list(stack.workers) == ["dispatcher"]
        assert "Bots          not started (no SWITCHBOARD_<BOT>_BOT_TOKEN set)" in stack.summary()
    finally:
        stack.stop()

    disabled = DevStack(
        settings, server_cmd=FAKE_SERVER, migrate_cmd=NOOP,
        environ={**base, "SWITCHBOARD_DEV_NO_WORKERS": "1", "SWITCHBOARD_LOGIN_BOT_TOKEN": "1:x"},
        worker_cmds=cmds, out=io.StringIO(),
    )  # fmt: skip
    try:
        disabled.start()
        assert disabled.workers == {}
        assert "not started (SWITCHBOARD_DEV_NO_WORKERS is set)" in disabled.summary()
    finally:
        disabled.stop()


def test_python_m_bots_without_a_token_says_so_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_BOT_TOKEN")}
    result = subprocess.run(
        [sys.executable, "-m", "bots"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    names = ", ".join(spec.token_env for spec in BOTS)  # login, booking, ...
    assert lines == [f"bots: no bot token is set (set {names}); nothing to run"]
