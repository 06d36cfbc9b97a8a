"""Entrypoint of the gateway image: render the Envoy config from the environment, then exec Envoy.

    gateway_entrypoint.py run      render, then exec Envoy (the container's main process)
    gateway_entrypoint.py render   render and print the config path
    gateway_entrypoint.py check    render, then `envoy --mode validate` (exit 1 if invalid)
    gateway_entrypoint.py health   exit 0 when Envoy's admin /ready says LIVE (the healthcheck)

The config comes from the one template, gateway/envoy.yaml.tmpl, through
gateway.envoy.render_config(); every value is an environment variable:

    GATEWAY_UPSTREAM_HOST          the gRPC server's host name (required)
    GATEWAY_UPSTREAM_PORT          its port (50051)
    GATEWAY_LISTEN_HOST            REST / gRPC-Web / gRPC listener address (0.0.0.0)
    GATEWAY_LISTEN_PORT            its port (8080)
    GATEWAY_ADMIN_PORT             Envoy admin port, always on 127.0.0.1 (9901)
    GATEWAY_CORS_ORIGINS           comma-separated allowed origins, '*' or 'regex:<RE2>' entries;
                                   empty: localhost on any port only
    GATEWAY_XFF_NUM_TRUSTED_HOPS   trusted proxies (load balancers) in front of Envoy (0)
    GATEWAY_UNARY_TIMEOUT_S        deadline of unary routes (30)
    GATEWAY_STREAM_IDLE_TIMEOUT_S  idle limit of streaming routes (60)
    GATEWAY_CONCURRENCY            Envoy worker threads (empty: one per CPU of the host)
    GATEWAY_LOG_LEVEL              Envoy log level (info)
    GATEWAY_DESCRIPTOR             descriptor image (/opt/switchboard/switchboard.binpb)
    GATEWAY_OPENAPI                OpenAPI document (/opt/switchboard/openapi.json)
    GATEWAY_CONFIG_OUT             where the config is written (/tmp/envoy/envoy.yaml)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, str] = {
    "GATEWAY_UPSTREAM_PORT": "50051",
    "GATEWAY_LISTEN_HOST": "0.0.0.0",  # noqa: S104 - a container listens on all its interfaces
    "GATEWAY_LISTEN_PORT": "8080",
    "GATEWAY_ADMIN_PORT": "9901",
    "GATEWAY_CORS_ORIGINS": "",
    "GATEWAY_XFF_NUM_TRUSTED_HOPS": "0",
    "GATEWAY_UNARY_TIMEOUT_S": "30",
    "GATEWAY_STREAM_IDLE_TIMEOUT_S": "60",
    "GATEWAY_CONCURRENCY": "",
    "GATEWAY_LOG_LEVEL": "info",
    "GATEWAY_DESCRIPTOR": "/opt/switchboard/switchboard.binpb",
    "GATEWAY_OPENAPI": "/opt/switchboard/openapi.json",
    "GATEWAY_CONFIG_OUT": "/tmp/envoy/envoy.yaml",  # noqa: S108 - tmpfs / emptyDir in deploys
}
REQUIRED = ("GATEWAY_UPSTREAM_HOST",)
COMMANDS = ("run", "render", "check", "health")


class SettingError(Exception):
    """A GATEWAY_* variable is missing or invalid; the message names it."""


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """DEFAULTS overridden by the environment (an empty value keeps the default)."""
    values = dict(DEFAULTS)
    for name in (*DEFAULTS, *REQUIRED):
        if environ.get(name, "").strip():
            values[name] = environ[name].strip()
    for name in REQUIRED:
        if name not in values:
            raise SettingError(f"{name} is required")
    return values


def _int(values: Mapping[str, str], name: str) -> int:
    try:
        return int(values[name])
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {values[name]!r}") from None


def _float(values: Mapping[str, str], name: str) -> float:
    try:
        return float(values[name])
    except ValueError:
        raise SettingError(f"{name} must be a number, got {values[name]!r}") from None


def render_options(values: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for gateway.envoy.render_config()."""
    origins = [o.strip() for o in values["GATEWAY_CORS_ORIGINS"].split(",") if o.strip()]
    return {
        "listen_host": values["GATEWAY_LISTEN_HOST"],
        "listen_port": _int(values, "GATEWAY_LISTEN_PORT"),
        "upstream_host": values["GATEWAY_UPSTREAM_HOST"],
        "upstream_port": _int(values, "GATEWAY_UPSTREAM_PORT"),
        "admin_port": _int(values, "GATEWAY_ADMIN_PORT"),
        "descriptor_path": Path(values["GATEWAY_DESCRIPTOR"]),
        "openapi_path": Path(values["GATEWAY_OPENAPI"]),
        "out_path": Path(values["GATEWAY_CONFIG_OUT"]),
        "cors_origins": origins or None,
        "xff_num_trusted_hops": _int(values, "GATEWAY_XFF_NUM_TRUSTED_HOPS"),
        "unary_timeout": _float(values, "GATEWAY_UNARY_TIMEOUT_S"),
        "stream_idle_timeout": _float(values, "GATEWAY_STREAM_IDLE_TIMEOUT_S"),
    }


def render(values: Mapping[str, str]) -> Path:
    from gateway.envoy import render_config

    try:
        return render_config(**render_options(values))
    except (ValueError, OSError) as exc:
        raise SettingError(str(exc)) from None


def envoy_argv(values: Mapping[str, str], config: Path) -> list[str]:
    from gateway.envoy import envoy_binary

    # No hot restart: one Envoy per container, no shared memory region to set up.
    argv = [str(envoy_binary()), "-c", str(config), "--disable-hot-restart"]
    argv += ["--log-level", values["GATEWAY_LOG_LEVEL"]]
    if values["GATEWAY_CONCURRENCY"]:
        argv += ["--concurrency", str(_int(values, "GATEWAY_CONCURRENCY"))]
    return argv


def healthy(admin_port: int, timeout: float = 3.0) -> bool:
    from gateway.envoy import admin_ready

    return admin_ready(admin_port, timeout)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    if command not in COMMANDS or len(argv) > 1:
        print(f"usage: gateway_entrypoint.py [{'|'.join(COMMANDS)}]", file=sys.stderr)
        return 2
    try:
        values = settings(os.environ)
        if command == "health":
            return 0 if healthy(_int(values, "GATEWAY_ADMIN_PORT")) else 1
        config = render(values)
        if command == "render":
            print(config)
            return 0
        if command == "check":
            from gateway.envoy import EnvoyError, validate_config

            try:
                validate_config(config)
            except EnvoyError as exc:
                print(f"gateway: {exc}", file=sys.stderr)
                return 1
            print(f"gateway: {config} is valid")
            return 0
        args = envoy_argv(values, config)
    except SettingError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    # Envoy replaces this process: it receives the container's signals itself.
    os.execv(args[0], args)  # noqa: S606  # nosec B606 - fixed binary, argv from settings
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
