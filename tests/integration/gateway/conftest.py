"""Real Envoy (rendered from gateway/envoy.yaml.tmpl) in front of an in-process fake grpc.aio server.

Fixtures:
    descriptor_image   the buf image (.build/switchboard.binpb, built with `make image` if missing)
    openapi_file       the OpenAPI document generated from it
    fake_backend       the fake servicers (their `calls` record the metadata each call saw)
    fake_grpc_port     port of the in-process grpc.aio server
    gateway            Envoy in front of it (default timeouts), session-wide
    http               an httpx.AsyncClient on the gateway
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from gateway.envoy import Gateway, run_gateway
from gateway.openapi import write_openapi
from gateway.testing import FakeBackend, ensure_image, start_fake_server


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def descriptor_image() -> Path:
    return ensure_image()


@pytest.fixture(scope="session")
def openapi_file(descriptor_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_openapi(descriptor_image, tmp_path_factory.mktemp("openapi") / "openapi.json")


@pytest.fixture(scope="session")
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fake_grpc_port(fake_backend: FakeBackend) -> AsyncIterator[int]:
    server, port = await start_fake_server(fake_backend)
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture(scope="session")
def gateway(
    fake_grpc_port: int,
    descriptor_image: Path,
    openapi_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    with run_gateway(
        upstream_host="127.0.0.1",
        upstream_port=fake_grpc_port,
        descriptor_path=descriptor_image,
        openapi_path=openapi_file,
        workdir=tmp_path_factory.mktemp("envoy"),
        cors_origins=["https://app.example.com"],
    ) as gw:
        yield gw


@pytest.fixture(scope="session")
def tight_gateway(
    fake_grpc_port: int,
    descriptor_image: Path,
    openapi_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """Envoy with 1 s timeouts: shows streams outlive the unary deadline but not idleness."""
    with run_gateway(
        upstream_host="127.0.0.1",
        upstream_port=fake_grpc_port,
        descriptor_path=descriptor_image,
        openapi_path=openapi_file,
        workdir=tmp_path_factory.mktemp("envoy-tight"),
        unary_timeout=1.0,
        stream_idle_timeout=1.0,
    ) as gw:
        yield gw


@pytest_asyncio.fixture(loop_scope="session")
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10.0) as client:
        yield client
