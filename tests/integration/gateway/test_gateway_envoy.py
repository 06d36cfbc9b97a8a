"""The real Envoy gateway in front of a fake grpc.aio server: REST, gRPC-Web, gRPC, CORS, docs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from switchboard.identity.v1 import identity_pb2, identity_pb2_grpc

from gateway import grpcweb
from gateway.envoy import EnvoyError, Gateway, free_port, run_gateway
from gateway.testing import ERROR_DOMAIN, GOOD_TOKEN, SLOW_TOKEN, USER_ID, FakeBackend

ORIGIN = "https://app.example.com"
GET_ME = "/switchboard.identity.v1.AuthService/GetMe"
WAIT = "/switchboard.identity.v1.AuthService/WaitTelegramLogin"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def _detail(body: dict[str, object], type_url: str) -> dict[str, object]:
    details = body["details"]
    assert isinstance(details, list)
    return next(d for d in details if d["@type"] == type_url)


# --- REST/JSON -----------------------------------------------------------------------------------
async def test_rest_get_me_returns_snake_case_json(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/auth/me", headers={"authorization": f"Bearer {GOOD_TOKEN}"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    user = response.json()["user"]
    assert user["id"] == USER_ID
    assert user["display_name"] == "Ada Lovelace"  # proto field names, not lowerCamelCase
    assert user["telegram_user_id"] == "1234567890123"  # int64 as a string
    assert user["role"] == "ROLE_USER"  # enums as names
    assert user["create_time"] == "2023-11-14T22:13:20Z"
    assert user["email"] == ""  # primitive fields always printed
    assert "last_login_time" not in user  # unset messages are not


async def test_rest_unauthenticated_is_401_with_error_info(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/auth/me", headers={"authorization": "Bearer nope"})

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == 16
    assert body["message"] == "missing or invalid session"
    info = _detail(body, ERROR_INFO)
    assert info["reason"] == "SESSION_INVALID"
    assert info["domain"] == ERROR_DOMAIN
    assert info["metadata"] == {"hint": "log in again"}


async def test_rest_invalid_argument_is_400_with_field_violations(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/auth/telegram/login", json={"id": "42", "hash": "xyz"})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 3
    violations = _detail(body, BAD_REQUEST)["field_violations"]
    assert violations == [
        {"field": "hash", "description": "must match ^[0-9a-f]{64}$", "reason": "PATTERN"},
        {"field": "auth_date", "description": "is required", "reason": "REQUIRED"},
    ]
    assert _detail(body, ERROR_INFO)["reason"] == "VALIDATION_FAILED"


async def test_rest_not_found_status_from_server(http: httpx.AsyncClient) -> None:
    response = await http.delete(f"/v1/admin/users/{USER_ID}")

    assert response.status_code == 404
    assert response.json()["code"] == 5


async def test_rest_server_stream_is_ndjson(http: httpx.AsyncClient) -> None:
    lines: list[dict[str, object]] = []
    async with http.stream(
        "POST", "/v1/auth/telegram/handshakes:wait", json={"handshake_token": "t"}
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.strip():
                lines.append(json.loads(line))

    assert [line["state"] for line in lines] == [
        "HANDSHAKE_STATE_PENDING",
        "HANDSHAKE_STATE_PENDING",
        "HANDSHAKE_STATE_CONFIRMED",
    ]
    assert lines[-1]["session"] == {"token": "session-token", "expire_time": "2027-01-15T08:00:00Z"}


async def test_rest_query_and_path_bindings(http: httpx.AsyncClient) -> None:
    listed = await http.get("/v1/admin/users", params={"page_size": 5, "page_token": "a b"})
    assert listed.status_code == 200
    assert listed.json()["next_page_token"] == "size=5;token=a b"

    promoted = await http.post(f"/v1/admin/users/{USER_ID}/promote", json={})
    assert promoted.status_code == 200
    assert (
        promoted.json()["user"] | {"id": USER_ID, "role": "ROLE_ADMIN"} == promoted.json()["user"]
    )

    events = await http.get("/v1/admin/audit-events", params={"action": "auth.login"})
    assert events.json()["events"][0]["attributes"] == {"ip": "127.0.0.1"}  # map -> object


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/v1/nope", {}, 404, 5),  # no http rule: rejected, never sent upstream
        ("POST", "/v1/auth/me", {}, 404, 5),  # wrong verb
        ("GET", "/v1/admin/users?pagesize=5", {}, 400, 3),  # unknown query parameter
        ("POST", "/v1/auth/logout", {"content": b"{not json"}, 400, 3),
        # the path says one user, the body another
        ("POST", f"/v1/admin/users/{USER_ID}/promote", {"json": {"user_id": "x"}}, 400, 3),
    ],
)
async def test_rest_rejections_are_status_json(
    http: httpx.AsyncClient,
    fake_backend: FakeBackend,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: int,
) -> None:
    calls = len(fake_backend.calls)
    response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert body["message"]
    assert len(fake_backend.calls) == calls


async def test_forwarded_headers_reach_the_server(
    http: httpx.AsyncClient, fake_backend: FakeBackend
) -> None:
    response = await http.get(
        "/v1/auth/me",
        headers={
            "authorization": f"Bearer {GOOD_TOKEN}",
            "x-request-id": "req-123",
            "x-forwarded-for": "203.0.113.7",  # client-supplied: kept, but not trustworthy
            "x-envoy-internal": "true",  # x-envoy-* from clients are stripped
        },
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-123"
    seen = fake_backend.last("GetMe").metadata
    assert seen["authorization"] == f"Bearer {GOOD_TOKEN}"
    assert seen["x-request-id"] == "req-123"
    # Envoy appended the peer it saw (for a loopback peer: its own host address); only that
    # rightmost entry is trustworthy. The client's claim stays to its left.
    hops = [hop.strip() for hop in seen["x-forwarded-for"].split(",")]
    assert len(hops) == 2
    assert hops[0] == "203.0.113.7"
    assert hops[1] != "203.0.113.7"
    assert seen["x-envoy-external-address"] == "127.0.0.1"
    assert "x-envoy-internal" not in seen


async def test_request_id_is_generated_when_absent(
    http: httpx.AsyncClient, fake_backend: FakeBackend
) -> None:
    response = await http.get("/v1/auth/me", headers={"authorization": f"Bearer {GOOD_TOKEN}"})

    generated = response.headers["x-request-id"]
    assert len(generated) >= 32
    assert fake_backend.last("GetMe").metadata["x-request-id"] == generated


# --- CORS ----------------------------------------------------------------------------------------
async def test_cors_preflight_for_allowed_origin(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/v1/auth/me",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization, x-request-id",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"]
    for header in ("authorization", "x-request-id", "x-grpc-web", "content-type"):
        assert header in allowed
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_preflight_for_other_origin_gets_no_grant(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/v1/auth/me",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )

    assert "access-control-allow-origin" not in response.headers


async def test_cors_exposes_grpc_and_request_id_headers(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/auth/me", headers={"origin": ORIGIN})

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert exposed >= {"grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"}


# --- gRPC-Web ------------------------------------------------------------------------------------
def _grpc_web_headers(token: str | None = None) -> dict[str, str]:
    headers = {"content-type": grpcweb.CONTENT_TYPE, "x-grpc-web": "1", "origin": ORIGIN}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


async def test_grpc_web_unary(http: httpx.AsyncClient) -> None:
    body = grpcweb.encode_request(identity_pb2.GetMeRequest().SerializeToString())
    response = await http.post(GET_ME, content=body, headers=_grpc_web_headers(GOOD_TOKEN))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/grpc-web")
    parsed = grpcweb.parse_response(response.content, response.headers)
    assert parsed.status == 0
    assert len(parsed.messages) == 1
    assert identity_pb2.GetMeResponse.FromString(parsed.messages[0]).user.id == USER_ID


async def test_grpc_web_error_keeps_status_details(http: httpx.AsyncClient) -> None:
    body = grpcweb.encode_request(identity_pb2.GetMeRequest().SerializeToString())
    response = await http.post(GET_ME, content=body, headers=_grpc_web_headers("bad"))

    parsed = grpcweb.parse_response(response.content, response.headers)
    assert parsed.status == 16
    assert parsed.message == "missing or invalid session"
    raw = parsed.trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    assert status.code == 16
    assert status.details[0].type_url == ERROR_INFO


async def test_grpc_web_server_stream(http: httpx.AsyncClient) -> None:
    request = identity_pb2.WaitTelegramLoginRequest(handshake_token="t")
    response = await http.post(
        WAIT,
        content=grpcweb.encode_request(request.SerializeToString()),
        headers=_grpc_web_headers(),
    )

    parsed = grpcweb.parse_response(response.content, response.headers)
    assert parsed.status == 0
    states = [identity_pb2.WaitTelegramLoginResponse.FromString(m).state for m in parsed.messages]
    assert states == [
        identity_pb2.HANDSHAKE_STATE_PENDING,
        identity_pb2.HANDSHAKE_STATE_PENDING,
        identity_pb2.HANDSHAKE_STATE_CONFIRMED,
    ]


# --- native gRPC through Envoy (h2c) -------------------------------------------------------------
async def test_native_grpc_passes_through(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.listen_port}") as channel:
        stub = identity_pb2_grpc.AuthServiceStub(channel)
        me = await stub.GetMe(
            identity_pb2.GetMeRequest(), metadata=(("authorization", f"Bearer {GOOD_TOKEN}"),)
        )
        assert me.user.id == USER_ID
        states = [
            message.state
            async for message in stub.WaitTelegramLogin(
                identity_pb2.WaitTelegramLoginRequest(handshake_token="t")
            )
        ]
        assert states[-1] == identity_pb2.HANDSHAKE_STATE_CONFIRMED
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetMe(identity_pb2.GetMeRequest())
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- timeouts (an Envoy with 1 s limits) ---------------------------------------------------------
async def test_stream_outlives_the_unary_deadline_while_heartbeats_flow(
    tight_gateway: Gateway,
) -> None:
    # 4 heartbeats 0.5 s apart: 1.5 s in total > the 1 s unary timeout, each gap < 1 s idle.
    async with (
        httpx.AsyncClient(base_url=tight_gateway.base_url, timeout=10.0) as client,
        client.stream(
            "POST", "/v1/auth/telegram/handshakes:wait", json={"handshake_token": "beat:4:0.5"}
        ) as response,
    ):
        lines = [json.loads(line) async for line in response.aiter_lines() if line.strip()]

    assert response.status_code == 200
    assert len(lines) == 5
    assert lines[-1]["state"] == "HANDSHAKE_STATE_CONFIRMED"


async def test_silent_stream_is_cut_by_the_idle_timeout(tight_gateway: Gateway) -> None:
    lines: list[str] = []
    async with httpx.AsyncClient(base_url=tight_gateway.base_url, timeout=10.0) as client:
        with pytest.raises(httpx.HTTPError):  # the chunked body ends without its terminator
            async with client.stream(
                "POST", "/v1/auth/telegram/handshakes:wait", json={"handshake_token": "silent:2"}
            ) as response:
                lines.extend([line async for line in response.aiter_lines() if line.strip()])

    assert len(lines) <= 1  # the first heartbeat, never the confirmation


async def test_slow_unary_call_hits_the_deadline(tight_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=tight_gateway.base_url, timeout=10.0) as client:
        response = await client.get(
            "/v1/auth/me", headers={"authorization": f"Bearer {SLOW_TOKEN}"}
        )

    assert response.status_code == 504
    assert response.json()["code"] == 4  # DEADLINE_EXCEEDED


# --- docs and lifecycle --------------------------------------------------------------------------
async def test_openapi_document_is_served(http: httpx.AsyncClient, openapi_file: Path) -> None:
    expected = json.loads(openapi_file.read_bytes())  # noqa: ASYNC240 - tiny local file
    response = await http.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected
    assert "/v1/auth/me" in response.json()["paths"]


def test_upstream_down_is_503_json(
    descriptor_image: Path, openapi_file: Path, tmp_path: Path
) -> None:
    with run_gateway(
        upstream_host="127.0.0.1",
        upstream_port=free_port(),
        descriptor_path=descriptor_image,
        openapi_path=openapi_file,
        workdir=tmp_path,
    ) as gw:
        rest = httpx.get(gw.url("/v1/auth/me"), timeout=10.0)
        web = httpx.post(
            gw.url(GET_ME),
            content=grpcweb.encode_request(b""),
            headers={"content-type": grpcweb.CONTENT_TYPE},
            timeout=10.0,
        )

    assert rest.status_code == 503
    assert rest.json()["code"] == 14
    # gRPC-Web keeps a gRPC error (the JSON rewrite only applies to REST requests).
    assert grpcweb.parse_response(web.content, web.headers).status == 14
    assert not web.headers["grpc-message"].startswith("{")


def test_envoy_startup_failure_reports_the_log(descriptor_image: Path, tmp_path: Path) -> None:
    with (
        pytest.raises(EnvoyError, match="does not exist"),
        run_gateway(
            upstream_host="127.0.0.1",
            upstream_port=free_port(),
            descriptor_path=descriptor_image,
            openapi_path=tmp_path / "missing-openapi.json",
            workdir=tmp_path,
        ),
    ):
        pass


def test_hot_restart_base_id_instance(
    descriptor_image: Path, openapi_file: Path, tmp_path: Path
) -> None:
    # A deploy-style instance with its own base id runs next to the --disable-hot-restart ones.
    with run_gateway(
        upstream_host="127.0.0.1",
        upstream_port=free_port(),
        descriptor_path=descriptor_image,
        openapi_path=openapi_file,
        workdir=tmp_path,
        base_id=40000 + free_port() % 20000,
    ) as gw:
        assert httpx.get(gw.url("/openapi.json"), timeout=10.0).status_code == 200
    assert gw.proc.returncode is not None
