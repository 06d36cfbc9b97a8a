"""`switchboard dev` (server/devstack/stack.py) in tests: its settings on free local ports."""

from __future__ import annotations

import os
from pathlib import Path

from server.devstack.embedded import free_port
from server.devstack.stack import DevSettings
from tests.support.stack import ROOT


def dev_settings(
    root: Path,
    *,
    pg_dsn: str | None = None,
    redis_url: str | None = None,
    cors_origins: list[str] | None = None,
    with_envoy: bool = False,
    startup_timeout: float = 30.0,
) -> DevSettings:
    """Dev stack settings with the data in ``root``/.data and the build in ``root``/.build,
    every port a free one (PostgreSQL and Redis embedded unless a DSN / URL is given)."""
    return DevSettings(
        data_dir=root / ".data",
        build_dir=root / ".build",
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        pg_port=free_port(),
        redis_port=free_port(),
        grpc_addr=f"127.0.0.1:{free_port()}",
        metrics_addr=f"127.0.0.1:{free_port()}",
        http_addr=f"127.0.0.1:{free_port()}",
        envoy_admin_port=free_port(),
        cors_origins=cors_origins,
        with_envoy=with_envoy,
        startup_timeout=startup_timeout,
    )


def dev_environ(**extra: str) -> dict[str, str]:
    """The environment of a real dev stack in a test: PATH, the repository's configs, ``extra``."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "SWITCHBOARD_CONFIG_DIR": str(ROOT / "configs"),
        **extra,
    }
