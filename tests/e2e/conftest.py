"""Envoy in front of the real server: REST and gRPC-Web end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.envoy import Gateway, run_gateway
from gateway.openapi import write_openapi
from gateway.testing import ensure_image
from tests.conftest import Platform


@pytest.fixture(scope="session")
def gateway(platform: Platform, workdir: Path) -> Iterator[Gateway]:
    image = ensure_image()
    openapi = write_openapi(image, workdir / "openapi.json")
    host, _, port = platform.grpc_addr.rpartition(":")
    with run_gateway(
        upstream_host=host,
        upstream_port=int(port),
        descriptor_path=image,
        openapi_path=openapi,
        workdir=workdir / "envoy",
    ) as running:
        yield running


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10, trust_env=False) as client:
        yield client
