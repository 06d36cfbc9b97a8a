"""No token or secret reaches a log: the server's, Envoy's or the migration's."""

from __future__ import annotations

import grpc
import httpx
import pytest
from switchboard.identity.v1 import identity_pb2 as pb

from tests.conftest import Platform
from tests.support.api import Api, bearer, next_telegram_id
from tests.support.leaks import leaked
from tests.support.telegram import signed_widget_payload


async def test_tokens_and_secrets_stay_out_of_logs(
    api: Api, http: httpx.AsyncClient, platform: Platform
) -> None:
    # Exercise every path a token takes: logins, good and bad bearer headers, service
    # tokens acting as users, a revoked session, a failed widget login, REST and gRPC.
    session = await api.login()
    await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    rest = await http.post(
        "/v1/auth/telegram/login",
        json=signed_widget_payload(platform.secrets.login_bot_token, next_telegram_id()),
    )
    platform.secrets.issued.append(rest.json()["session"]["token"])
    await http.get(
        "/v1/auth/me", headers={"Authorization": f"Bearer {rest.json()['session']['token']}"}
    )
    await api.auth.GetMe(
        pb.GetMeRequest(),
        metadata=api.service(platform.secrets.login_bot_service_token, act_as=next_telegram_id()),
    )
    await api.auth.Logout(pb.LogoutRequest(), metadata=session.metadata)
    with pytest.raises(grpc.aio.AioRpcError):
        await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    with pytest.raises(grpc.aio.AioRpcError):
        await api.auth.GetMe(
            pb.GetMeRequest(), metadata=bearer(platform.secrets.plain_worker_token)
        )
    await http.get("/v1/auth/me", headers={"Authorization": f"Bearer {session.token}"})

    logs = platform.log_path.parent
    assert any(logs.rglob("*.log")), "expected server and Envoy logs to scan"
    assert platform.log_path.read_text().count('"msg": "rpc"') > 5
    assert leaked(platform.secrets.all(), logs) == []
