"""Start, stop and dependency failures of the real server process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as pb

from server.devstack.embedded import EmbeddedRedis, free_port
from server.devstack.processes import check_health_async, server_command
from server.migrate import head_revision
from tests.support.api import Api, error_info
from tests.support.stack import ROOT, Infra, Secrets, migrate, server_env, start_server

AUTH = "switchboard.identity.v1.AuthService"


def _migrate_process(dsn: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        server_command("migrate"),
        env={**os.environ, "SWITCHBOARD_PG_DSN": dsn},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_two_migrations_at_once_both_succeed(stack_infra: Infra) -> None:
    dsn = stack_infra.fresh_database("migrate_race")
    runners = [_migrate_process(dsn) for _ in range(2)]
    outputs = [r.communicate(timeout=120)[0].decode() for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs
    assert all("schema at" in out for out in outputs)

    async def version() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval("SELECT version_num FROM alembic_version"))
        finally:
            await conn.close()

    assert asyncio.run(version()) == head_revision()


def test_server_refuses_a_stale_schema(stack_infra: Infra, workdir: Path) -> None:
    dsn = stack_infra.fresh_database("stale_schema")
    env = {**os.environ, **server_env(dsn, stack_infra.redis.url, Secrets())}
    result = subprocess.run(
        server_command("serve"), env=env, cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 2
    err = result.stderr.decode().strip()
    assert err.count("\n") == 0, err
    assert "schema" in err
    assert "switchboard migrate" in err


def test_invalid_setting_stops_with_one_line(stack_infra: Infra) -> None:
    env = {
        **os.environ,
        **server_env("postgresql://x@127.0.0.1:1/x", stack_infra.redis.url, Secrets()),
    }
    env["SWITCHBOARD_SHUTDOWN_GRACE_S"] = "soon"
    result = subprocess.run(
        server_command("serve"), env=env, cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "switchboard: invalid setting shutdown_grace_s: "
        "Input should be a valid number, unable to parse string as a number"
    )


async def test_sigterm_lets_an_in_flight_call_finish_and_ends_streams(
    stack_infra: Infra, workdir: Path
) -> None:
    dsn = stack_infra.fresh_database("graceful")
    migrate(dsn, workdir / "migrate-graceful.log")
    secrets = Secrets()
    server = start_server(
        server_env(dsn, stack_infra.redis.url, secrets), workdir / "server-graceful.log"
    )
    try:
        async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
            api = Api(channel, secrets)
            session = await api.login()
            start = await api.auth.StartTelegramLogin(pb.StartTelegramLoginRequest())
            stream = api.auth.WaitTelegramLogin(
                pb.WaitTelegramLoginRequest(handshake_token=start.handshake_token)
            )
            first = await stream.read()
            assert isinstance(first, pb.WaitTelegramLoginResponse)
            assert first.state == pb.HANDSHAKE_STATE_PENDING

            blocker = await asyncpg.connect(dsn)
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE identity_sessions IN EXCLUSIVE MODE")
            logout = asyncio.ensure_future(
                api.auth.Logout(pb.LogoutRequest(), metadata=session.metadata)
            )
            await asyncio.sleep(0.5)
            assert not logout.done(), "the call should be stuck behind the lock"

            os.kill(server.pid or 0, signal.SIGTERM)
            # The open stream ends promptly and tells the client to come back.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                while True:
                    message = await asyncio.wait_for(stream.read(), timeout=5)
                    if message is grpc.aio.EOF:
                        break
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(caught.value).reason == "SHUTTING_DOWN"

            await asyncio.sleep(0.5)
            await tx.rollback()  # release the lock: the in-flight call completes
            await blocker.close()
            await asyncio.wait_for(logout, timeout=10)

            # New calls are refused once the server is stopping.
            deadline = time.monotonic() + 15
            while server.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        assert server.poll() == 0
    finally:
        server.kill()


async def test_health_follows_redis(stack_infra: Infra, workdir: Path) -> None:
    dsn = stack_infra.fresh_database("health")
    migrate(dsn, workdir / "migrate-health.log")
    redis = EmbeddedRedis(workdir / "redis-health", port=free_port()).start()
    server = start_server(server_env(dsn, redis.url, Secrets()), workdir / "server-health.log")
    try:
        assert await check_health_async(server.grpc_addr, service=AUTH) == "SERVING"
        redis.stop()
        assert await _wait_health(server.grpc_addr, AUTH, "NOT_SERVING")
        assert await check_health_async(server.grpc_addr) == "NOT_SERVING"
        redis.start()
        assert await _wait_health(server.grpc_addr, AUTH, "SERVING")
    finally:
        server.terminate()
        redis.stop()


async def _wait_health(addr: str, service: str, want: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check_health_async(addr, service=service) == want:
            return True
        await asyncio.sleep(0.25)
    return False


def test_reflection_lists_the_contract(platform: object) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(platform.grpc_addr) as channel:  # type: ignore[attr-defined]
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {AUTH, "switchboard.identity.v1.AdminService", "grpc.health.v1.Health"} <= names
