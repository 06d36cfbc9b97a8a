"""The `switchboard dev` orchestrator with real PostgreSQL/Redis and stand-ins for the rest."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.devstack._util import can_connect
from server.devstack.embedded import free_port
from server.devstack.processes import check_health
from server.devstack.stack import DevSettings, DevStack, StackError
from tests.support.devstack import dev_settings

HERE = Path(__file__).parent
FAKE_SERVER = [sys.executable, str(HERE / "fake_server.py")]


class FakeGateway:
    """Records the calls; 'Envoy' is a sleeping Python process."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def build_openapi(self, image: Path, out: Path) -> None:
        self.calls.append(("build_openapi", {"image": image, "out": out}))
        out.write_text("{}")

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
    ) -> Path:
        self.calls.append(
            (
                "render_config",
                {
                    "listen": (listen_host, listen_port),
                    "upstream": (upstream_host, upstream_port),
                    "admin_port": admin_port,
                    "cors_origins": cors_origins,
                },
            )
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("static_resources: {}\n")
        return out_path

    def start_envoy(self, config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
        self.calls.append(("start_envoy", {"config": config_path, "log": log_path}))
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        return self.proc

    def wait_ready(self, admin_port: int, timeout: float) -> None:
        self.calls.append(("wait_ready", {"admin_port": admin_port}))

    def stop_envoy(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        self.calls.append(("stop_envoy", {}))
        proc.terminate()
        proc.wait(timeout)


def _settings(tmp_path: Path, *, with_envoy: bool = True) -> DevSettings:
    build = tmp_path / ".build"
    build.mkdir(exist_ok=True)
    (build / "switchboard.binpb").write_bytes(b"")
    return dev_settings(tmp_path, cors_origins=["http://localhost:5173"], with_envoy=with_envoy)


def test_settings_from_env(tmp_path: Path) -> None:
    s = DevSettings.from_env(
        {
            "SWITCHBOARD_DEV_PG_PORT": "6000",
            "SWITCHBOARD_HTTP_ADDR": "127.0.0.1:9000",
            "SWITCHBOARD_CORS_ORIGINS": "http://a, http://b",
        },
        data_dir=tmp_path,
    )
    assert (s.pg_port, s.redis_port) == (6000, 56379)
    assert s.pg_dsn is None
    assert s.grpc_addr == "127.0.0.1:50051"
    assert s.metrics_addr == "127.0.0.1:9464"
    assert s.http_addr == "127.0.0.1:9000"
    assert s.envoy_admin_port == 9901
    assert s.cors_origins == ["http://a", "http://b"]
    with pytest.raises(StackError, match="port number"):
        DevSettings.from_env({"SWITCHBOARD_DEV_REDIS_PORT": "x"})
    with pytest.raises(StackError, match="HOST:PORT"):
        DevSettings.from_env({"SWITCHBOARD_GRPC_ADDR": "50051"})


def test_dev_stack_up_and_down(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    gateway = FakeGateway()
    marker = tmp_path / "migrated.txt"
    migrate = [
        sys.executable,
        "-c",
        "import asyncio, os, pathlib, asyncpg\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(os.environ['SWITCHBOARD_PG_DSN'])\n"
        "    await conn.execute('CREATE TABLE IF NOT EXISTS migrated (id int)')\n"
        "    await conn.close()\n"
        f"    pathlib.Path({str(marker)!r}).write_text(os.environ['SWITCHBOARD_ENV'])\n"
        "asyncio.run(main())\n",
    ]
    out = io.StringIO()
    stack = DevStack(
        settings,
        gateway=gateway,
        server_cmd=FAKE_SERVER,
        migrate_cmd=migrate,
        environ={"PATH": os.environ.get("PATH", ""), "KEEP_ME": "1"},
        out=out,
    )
    try:
        stack.start()
        assert marker.read_text() == "dev"
        assert check_health(settings.grpc_addr) == "SERVING"
        assert stack.pg is not None
        assert stack.pg.dsn.endswith(f":{settings.pg_port}/switchboard")
        assert stack.redis_url == f"redis://127.0.0.1:{settings.redis_port}/0"
        env = stack.server_env()
        assert env["KEEP_ME"] == "1"
        assert env["SWITCHBOARD_METRICS_ADDR"] == settings.metrics_addr
        assert [name for name, _ in gateway.calls] == [
            "build_openapi",
            "render_config",
            "start_envoy",
            "wait_ready",
        ]
        rendered = gateway.calls[1][1]
        assert rendered["upstream"] == ("127.0.0.1", int(settings.grpc_addr.rsplit(":", 1)[1]))
        assert rendered["cors_origins"] == ["http://localhost:5173"]
        summary = stack.summary()
        for expected in (
            settings.grpc_addr,
            f"http://{settings.http_addr}/v1/auth/dev/login",
            f"http://{settings.metrics_addr}/metrics",
            "logs/*.log",
        ):
            assert expected in summary
        assert stack.dead_child() is None

        # A child that dies on its own is noticed.
        assert stack.server is not None
        stack.server.kill()
        dead = stack.dead_child()
        assert dead is not None
        assert dead.startswith("server exited")
    finally:
        stack.stop()
    assert [name for name, _ in gateway.calls][-1] == "stop_envoy"
    assert gateway.proc is not None
    assert gateway.proc.poll() is not None
    assert not can_connect("127.0.0.1", settings.pg_port)
    assert not can_connect("127.0.0.1", settings.redis_port)
    logs = settings.data_dir / "logs"
    assert {"postgres.log", "redis.log", "migrate.log", "server.log"} <= {
        p.name for p in logs.iterdir()
    }
    stack.stop()  # idempotent


def test_busy_port_fails_fast(tmp_path: Path) -> None:
    settings = _settings(tmp_path, with_envoy=False)
    import socket

    with socket.socket() as sock:
        host, port = settings.grpc_addr.rsplit(":", 1)
        sock.bind((host, int(port)))
        sock.listen()
        stack = DevStack(settings, server_cmd=FAKE_SERVER, migrate_cmd=FAKE_SERVER)
        try:
            with pytest.raises(StackError, match=rf"gRPC {settings.grpc_addr}"):
                stack.start()
            assert stack.pg is None  # nothing was started
            # One `switchboard dev` per data directory.
            other = DevStack(settings, server_cmd=FAKE_SERVER, migrate_cmd=FAKE_SERVER)
            with pytest.raises(StackError, match="another `switchboard dev` is running"):
                other.start()
        finally:
            stack.stop()


def _start_dev(
    tmp_path: Path, env: dict[str, str], name: str
) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / f"{name}.out"
    with out.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "fake_dev.py"), "--no-envoy", "--data-dir", ".data"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 60
    while "is running" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"dev stack did not come up:\n{out.read_text()}")
        time.sleep(0.1)
    return proc, out


def _dev_env() -> tuple[dict[str, str], int, int]:
    pg_port, redis_port = free_port(), free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DEV_PG_PORT": str(pg_port),
        "SWITCHBOARD_DEV_REDIS_PORT": str(redis_port),
        "SWITCHBOARD_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "SWITCHBOARD_METRICS_ADDR": f"127.0.0.1:{free_port()}",
    }
    env.pop("SWITCHBOARD_PG_DSN", None)
    env.pop("SWITCHBOARD_REDIS_URL", None)
    return env, pg_port, redis_port


def _server_pid(out: Path) -> int:
    match = re.search(r"server pid (\d+)", out.read_text())
    assert match is not None
    return int(match.group(1))


def test_run_dev_signal_and_child_death(tmp_path: Path) -> None:
    env, pg_port, redis_port = _dev_env()

    # SIGTERM: orderly stop, exit 0.
    proc, out = _start_dev(tmp_path, env, "first")
    assert can_connect("127.0.0.1", pg_port)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, out.read_text()
    text = out.read_text()
    assert "SIGTERM: stopping" in text
    assert text.rstrip().endswith("[dev] stopped")
    assert "graceful stop" in (tmp_path / ".data" / "logs" / "server.log").read_text()
    assert not can_connect("127.0.0.1", pg_port)
    assert not can_connect("127.0.0.1", redis_port)

    # Same data directory again; the server dies on its own: everything stops, exit 1.
    proc, out = _start_dev(tmp_path, env, "second")
    os.kill(_server_pid(out), signal.SIGKILL)
    assert proc.wait(timeout=60) == 1, out.read_text()
    assert "server exited with -9" in out.read_text()
    assert not can_connect("127.0.0.1", pg_port)


def test_run_dev_recovers_after_the_orchestrator_was_killed(tmp_path: Path) -> None:
    env, pg_port, _redis_port = _dev_env()
    proc, out = _start_dev(tmp_path, env, "killed")
    server_pid = _server_pid(out)
    proc.kill()  # SIGKILL: no cleanup; server, PostgreSQL and Redis live on
    proc.wait()
    assert can_connect("127.0.0.1", pg_port)
    os.kill(server_pid, 0)

    proc, out = _start_dev(tmp_path, env, "after")
    assert f"stopping leftover server (pid {server_pid})" in out.read_text()
    assert _server_pid(out) != server_pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, out.read_text()
    assert not can_connect("127.0.0.1", pg_port)
