"""Two server replicas on one PostgreSQL and Redis: what one changes, the other sees at once.

Each replica caches sessions for a few seconds (session_cache_ttl_s); logout, promotion and
deletion on one replica evict the session on every replica through Redis pub/sub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.options.v1 import access_pb2

from server.devstack.embedded import free_port
from tests.conftest import Platform
from tests.support.api import Api
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID, start_server


@pytest.fixture
async def other(platform: Platform) -> AsyncIterator[Api]:
    env = {**platform.env, "SWITCHBOARD_METRICS_ADDR": f"127.0.0.1:{free_port()}"}
    replica = start_server(env, platform.log_path.parent / "server-replica.log")
    try:
        async with grpc.aio.insecure_channel(replica.grpc_addr) as channel:
            yield Api(channel, platform.secrets)
    finally:
        replica.terminate()


async def _within(seconds: float, check: Callable[[], Awaitable[bool]]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_logout_on_one_replica_ends_the_session_on_the_other(api: Api, other: Api) -> None:
    session = await api.login()
    for _ in range(3):  # warm the other replica's cache
        await other.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    await api.auth.Logout(pb.LogoutRequest(), metadata=session.metadata)

    async def refused() -> bool:
        try:
            await other.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    # Well under the 5 s cache TTL: the eviction came through pub/sub.
    assert await _within(1.0, refused)


async def test_promotion_on_one_replica_is_seen_by_the_other(api: Api, other: Api) -> None:
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    target = await api.login()
    me = await other.auth.GetMe(pb.GetMeRequest(), metadata=target.metadata)
    assert me.user.role == access_pb2.ROLE_USER
    await api.admin.PromoteUser(
        pb.PromoteUserRequest(user_id=target.user.id), metadata=boss.metadata
    )

    async def promoted() -> bool:
        me = await other.auth.GetMe(pb.GetMeRequest(), metadata=target.metadata)
        return me.user.role == access_pb2.ROLE_ADMIN

    assert await _within(1.0, promoted)
    await other.admin.ListUsers(pb.ListUsersRequest(), metadata=target.metadata)


async def test_a_bot_acting_as_a_promoted_user_gets_the_new_role_at_once(
    api: Api, other: Api, platform: Platform
) -> None:
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    target = await api.login()
    bot = other.service(
        platform.secrets.login_bot_service_token, act_as=target.user.telegram_user_id
    )

    async def may_list_users() -> bool:
        try:
            await other.admin.ListUsers(pb.ListUsersRequest(), metadata=bot)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
            return False
        return True

    assert not await may_list_users()  # and the acting user is now cached on that replica
    await api.admin.PromoteUser(
        pb.PromoteUserRequest(user_id=target.user.id), metadata=boss.metadata
    )
    assert await _within(1.0, may_list_users)
