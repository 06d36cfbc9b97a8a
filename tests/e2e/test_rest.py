"""The identity API as REST through Envoy, against the real server, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from switchboard.identity.v1 import identity_pb2 as pb

from gateway.envoy import Gateway
from gateway.grpcweb import encode_request, parse_response
from tests.conftest import Platform
from tests.support.api import next_telegram_id
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID
from tests.support.telegram import signed_widget_payload


async def _login(
    http: httpx.AsyncClient, platform: Platform, telegram_id: int | None = None
) -> dict[str, Any]:
    payload = signed_widget_payload(
        platform.secrets.login_bot_token,
        telegram_id or next_telegram_id(),
        first_name="Rest",
        username="rest_user",
    )
    response = await http.post("/v1/auth/telegram/login", json=payload)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    platform.secrets.issued.append(body["session"]["token"])
    return body


def _auth(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['session']['token']}"}


async def test_telegram_login_and_me(http: httpx.AsyncClient, platform: Platform) -> None:
    body = await _login(http, platform)
    assert body["user"]["role"] == "ROLE_USER"
    assert body["user"]["display_name"] == "Rest"
    me = await http.get("/v1/auth/me", headers=_auth(body))
    assert me.status_code == 200
    assert me.json()["user"]["id"] == body["user"]["id"]
    assert me.json()["user"]["role"] == "ROLE_USER"


async def test_errors_map_to_http_status_with_details(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    missing = await http.get("/v1/auth/me")
    assert missing.status_code == 401
    assert missing.json()["details"][0]["reason"] == "UNAUTHENTICATED"

    user = await _login(http, platform)
    denied = await http.get("/v1/admin/users", headers=_auth(user))
    assert denied.status_code == 403
    assert denied.json()["details"][0]["reason"] == "ACCESS_DENIED"

    tampered = signed_widget_payload(platform.secrets.login_bot_token, next_telegram_id())
    tampered["first_name"] = "Mallory"
    refused = await http.post("/v1/auth/telegram/login", json=tampered)
    assert refused.status_code == 401
    assert refused.json()["details"][0]["reason"] == "TELEGRAM_HASH_MISMATCH"


async def test_validation_error_is_400_with_field_violations(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/auth/telegram/login", json={"first_name": "x", "hash": "zz"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 3
    violations = next(d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest"))
    assert [(v["field"], v["reason"]) for v in violations["field_violations"]] == [
        ("id", "REQUIRED"),
        ("auth_date", "REQUIRED"),
        ("hash", "PATTERN_MISMATCH"),
    ]


async def test_admin_paths(http: httpx.AsyncClient, platform: Platform) -> None:
    boss = await _login(http, platform, SUPER_ADMIN_TELEGRAM_ID)
    target = await _login(http, platform)
    listed = await http.get("/v1/admin/users", params={"page_size": 2}, headers=_auth(boss))
    assert listed.status_code == 200
    assert len(listed.json()["users"]) == 2
    assert listed.json()["next_page_token"]

    promoted = await http.post(
        f"/v1/admin/users/{target['user']['id']}/promote", json={}, headers=_auth(boss)
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["user"]["role"] == "ROLE_ADMIN"
    bad_id = await http.post("/v1/admin/users/not-a-uuid/promote", json={}, headers=_auth(boss))
    assert bad_id.status_code == 400
    missing = await http.post(
        "/v1/admin/users/00000000-0000-4000-8000-000000000000/promote", json={}, headers=_auth(boss)
    )
    assert missing.status_code == 404

    events = await http.get(
        "/v1/admin/audit-events", params={"action": "user.promote"}, headers=_auth(target)
    )
    assert events.status_code == 200
    assert any(e["target"] == f"user:{target['user']['id']}" for e in events.json()["events"])


async def test_logout_over_rest(http: httpx.AsyncClient, platform: Platform) -> None:
    body = await _login(http, platform)
    assert (await http.post("/v1/auth/logout", json={}, headers=_auth(body))).status_code == 200
    assert (await http.get("/v1/auth/me", headers=_auth(body))).status_code == 401


async def test_rate_limit_is_429_over_rest(http: httpx.AsyncClient, platform: Platform) -> None:
    """configs/test.yaml gives the read class a burst of 30 per principal."""
    body = await _login(http, platform)
    statuses = [r.status_code for r in await asyncio.gather(
        *(http.get("/v1/auth/me", headers=_auth(body)) for _ in range(90))
    )]  # fmt: skip
    assert statuses.count(200) >= 30
    assert 429 in statuses
    limited = await http.get("/v1/auth/me", headers=_auth(body))
    if limited.status_code == 429:
        details = limited.json()["details"]
        assert any(d.get("reason") == "RATE_LIMITED" for d in details)
        assert any(d["@type"].endswith("google.rpc.RetryInfo") for d in details)


async def test_handshake_wait_streams_ndjson(http: httpx.AsyncClient, platform: Platform) -> None:
    start = await http.post("/v1/auth/telegram/handshakes", json={})
    assert start.status_code == 200
    handshake = start.json()
    lines: list[dict[str, Any]] = []
    async with http.stream(
        "POST",
        "/v1/auth/telegram/handshakes:wait",
        json={"handshake_token": handshake["handshake_token"]},
    ) as stream:
        async for line in stream.aiter_lines():
            if not line.strip():
                continue
            lines.append(json.loads(line))
            if len(lines) == 1:
                from grpc import aio

                from tests.support.api import Api

                async with aio.insecure_channel(platform.grpc_addr) as channel:
                    api = Api(channel, platform.secrets)
                    await api.auth.ConfirmTelegramLogin(
                        pb.ConfirmTelegramLoginRequest(code=handshake["code"]),
                        metadata=api.service(
                            platform.secrets.login_bot_service_token, act_as=next_telegram_id()
                        ),
                    )
    states = [line["state"] for line in lines]
    assert states[0] == "HANDSHAKE_STATE_PENDING"
    assert states[-1] == "HANDSHAKE_STATE_CONFIRMED"
    token = lines[-1]["session"]["token"]
    platform.secrets.issued.append(token)
    me = await http.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200


async def test_grpc_web_unary_call(
    gateway: Gateway, http: httpx.AsyncClient, platform: Platform
) -> None:
    body = await _login(http, platform)
    response = await http.post(
        "/switchboard.identity.v1.AuthService/GetMe",
        content=encode_request(pb.GetMeRequest().SerializeToString()),
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "authorization": f"Bearer {body['session']['token']}",
        },
    )
    assert response.status_code == 200
    parsed = parse_response(response.content, response.headers)
    assert parsed.status == 0
    me = pb.GetMeResponse.FromString(parsed.messages[0])
    assert me.user.id == body["user"]["id"]


async def test_openapi_is_served(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert "/v1/auth/telegram/login" in document["paths"]
    assert "/v1/admin/users/{user_id}/promote" in document["paths"]
