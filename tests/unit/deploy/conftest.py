"""Fixtures for the deploy/ checks: the descriptor image, openapi.json, compose and Helm output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.openapi import write_openapi
from gateway.testing import ensure_image
from tests.unit.deploy import support


@pytest.fixture(scope="session")
def descriptor_image() -> Path:
    return ensure_image()


@pytest.fixture(scope="session")
def openapi_json(descriptor_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's openapi.json, built the way the Dockerfile builds it."""
    return write_openapi(descriptor_image, tmp_path_factory.mktemp("openapi") / "openapi.json")


# A placeholder, never a deployment's.
COMPOSE_TEST_PASSWORD = "compose-config-test-only"  # pragma: allowlist secret


def compose_config(
    *, env_file: str = ".env.example", dotenv: Path = support.ENV_EXAMPLE, **extra_env: str
) -> dict[str, Any]:
    """`docker compose config`: the resolved project, as JSON, with `dotenv` (default
    .env.example) as deploy/.env and `env_file` as the containers' env file."""
    env = support.base_env() | {
        "ENV_FILE": env_file,
        "POSTGRES_PASSWORD": COMPOSE_TEST_PASSWORD,
        **extra_env,
    }
    result = subprocess.run(
        [
            str(support.compose_binary()),
            "--file",
            str(support.COMPOSE),
            "--env-file",
            str(dotenv),
            "config",
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="session")
def compose_resolved() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="session")
def compose_all() -> dict[str, Any]:
    """Every service, the optional ones (profiles) included."""
    return compose_config(COMPOSE_PROFILES="bots")


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    raw: dict[str, Any] = support.load_yaml(support.COMPOSE.read_text(encoding="utf-8"))
    return raw
