"""Email-code settings from the environment, and super-admin addresses, on a server of its own."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.options.v1 import access_pb2

from tests.integration.identity.outbox import latest_code
from tests.support.api import Api, error_info
from tests.support.stack import Infra, Secrets, migrate, server_env, start_server


async def test_configured_limits_and_super_admin_emails(stack_infra: Infra, workdir: Path) -> None:
    dsn = stack_infra.fresh_database("email_settings")
    migrate(dsn, workdir / "migrate-email-settings.log")
    secrets = Secrets()
    env = server_env(dsn, stack_infra.redis.url, secrets)
    env["SWITCHBOARD_SUPER_ADMIN_EMAILS"] = "Boss@Example.com"
    env["SWITCHBOARD_EMAIL_CODE_MAX_ATTEMPTS"] = "2"
    env["SWITCHBOARD_EMAIL_CODE_MIN_INTERVAL_S"] = "0"
    env["SWITCHBOARD_EMAIL_CODE_TTL_S"] = "120"
    server = start_server(env, workdir / "server-email-settings.log")
    try:
        async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
            api = Api(channel, secrets)
            response = await api.auth.RequestEmailCode(
                pb.RequestEmailCodeRequest(email="boss@example.com")
            )
            assert response.expire_time.seconds - response.next_request_time.seconds == 120
            code = await latest_code(dsn, secrets.data_key, "boss@example.com")
            bad = f"{(int(code) + 1) % 1_000_000:06d}"
            reasons = []
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await api.auth.VerifyEmailCode(
                        pb.VerifyEmailCodeRequest(email="boss@example.com", code=bad)
                    )
                reasons.append(error_info(caught.value).reason)
            assert reasons == ["EMAIL_CODE_WRONG", "EMAIL_CODE_LOCKED"]

            # No minimum interval here: a new code at once.
            await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email="BOSS@example.com"))
            code = await latest_code(dsn, secrets.data_key, "boss@example.com")
        # Codes live in PostgreSQL only: a restarted server accepts the code sent before.
        server.terminate()
        server = start_server(env, workdir / "server-email-settings.log")
        async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
            api = Api(channel, secrets)
            login = await api.auth.VerifyEmailCode(
                pb.VerifyEmailCodeRequest(email="boss@example.com", code=code)
            )
            secrets.issued.append(login.session.token)
            assert login.user.role == access_pb2.ROLE_SUPER_ADMIN
            assert login.user.email == "boss@example.com"
    finally:
        server.terminate()
