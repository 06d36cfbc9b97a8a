"""Super admins named in the configuration, by Telegram id or by email, get the role at start."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import grpc
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.options.v1 import access_pb2

from tests.support.api import Api
from tests.support.stack import Infra, Secrets, migrate, server_env, start_server


async def test_existing_users_named_in_config_become_super_admins(
    stack_infra: Infra, workdir: Path
) -> None:
    dsn = stack_infra.fresh_database("bootstrap")
    migrate(dsn, workdir / "migrate-bootstrap.log")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO identity_users (telegram_user_id, display_name, email) VALUES
                (501, 'by id', NULL), (502, 'by email', 'Boss@Example.com'), (503, 'other', NULL)
            """
        )
    finally:
        await conn.close()

    secrets = Secrets()
    env = server_env(dsn, stack_infra.redis.url, secrets)
    env["SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS"] = "501"
    env["SWITCHBOARD_SUPER_ADMIN_EMAILS"] = "boss@example.com"
    server = start_server(env, workdir / "server-bootstrap.log")
    try:
        async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
            api = Api(channel, secrets)
            roles = {}
            for telegram_id in (501, 502, 503):
                session = await api.login(telegram_id)
                me = await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
                roles[telegram_id] = me.user.role
            assert roles == {
                501: access_pb2.ROLE_SUPER_ADMIN,
                502: access_pb2.ROLE_SUPER_ADMIN,
                503: access_pb2.ROLE_USER,
            }
            boss = await api.login(501)
            events = await api.admin.ListAuditEvents(
                pb.ListAuditEventsRequest(action="user.promote"), metadata=boss.metadata
            )
            assert sorted(e.actor for e in events.events) == ["config", "config"]
    finally:
        server.terminate()
