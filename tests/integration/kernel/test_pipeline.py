"""The interceptor pipeline in-process, with a servicer that misbehaves on purpose."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.identity.v1 import identity_pb2_grpc as pb_grpc

from server.kernel.context import ServicerContext, current_call
from server.kernel.errors import NotFound
from server.kernel.methods import MethodRegistry, contract_services
from server.kernel.pipeline import Pipeline
from server.kernel.principal import Principal
from server.kernel.ratelimit import Bucket, RateLimiter
from tests.support.api import error_info, status_of
from tests.support.stack import Infra

SECRET_DETAIL = "db password is hunter2-internal"  # pragma: allowlist secret


class Anonymous:
    async def authenticate(self, metadata: dict[str, str], request_id: str) -> Principal:
        return Principal()


class Audit:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def record(self, *, actor: str, action: str, target: str, request_id: str,
                     attributes: dict[str, str] | None = None) -> None:  # fmt: skip
        self.events.append(action)


class Faulty(pb_grpc.AuthServiceServicer):
    async def StartTelegramLogin(
        self, request: pb.StartTelegramLoginRequest, context: ServicerContext
    ) -> pb.StartTelegramLoginResponse:
        raise RuntimeError(SECRET_DETAIL)

    async def LoginWithTelegramWidget(
        self, request: pb.LoginWithTelegramWidgetRequest, context: ServicerContext
    ) -> pb.LoginWithTelegramWidgetResponse:
        raise NotFound(
            "NOTHING_HERE", "typed error", metadata={"request_id": current_call().request_id}
        )

    async def DevLogin(
        self, request: pb.DevLoginRequest, context: ServicerContext
    ) -> pb.DevLoginResponse:
        return pb.DevLoginResponse()

    async def WaitTelegramLogin(
        self, request: pb.WaitTelegramLoginRequest, context: ServicerContext
    ) -> AsyncIterator[pb.WaitTelegramLoginResponse]:
        yield pb.WaitTelegramLoginResponse(state=pb.HANDSHAKE_STATE_PENDING)
        raise RuntimeError(SECRET_DETAIL)


@pytest.fixture
async def channel(stack_infra: Infra) -> AsyncIterator[grpc.aio.Channel]:
    redis = Redis.from_url(stack_infra.redis.url)
    await redis.delete(*[k async for k in redis.scan_iter("sb:test:*")] or ["none"])
    limiter = RateLimiter(redis, {"auth": Bucket(rate=0.5, burst=3)}, prefix="sb:test")
    server = grpc.aio.server(
        interceptors=[Pipeline(MethodRegistry(contract_services()), Anonymous(), Audit(), limiter)]
    )
    pb_grpc.add_AuthServiceServicer_to_server(Faulty(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await server.stop(0)
    await redis.aclose()


async def test_unexpected_error_is_internal_with_request_id_and_no_leak(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = pb_grpc.AuthServiceStub(channel)
    with (
        caplog.at_level(logging.ERROR, logger="switchboard.rpc"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await stub.StartTelegramLogin(
            pb.StartTelegramLoginRequest(), metadata=(("x-request-id", "rid-77"),)
        )
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert SECRET_DETAIL not in (error.details() or "")
    assert SECRET_DETAIL not in str(status_of(error))
    assert "rid-77" in (error.details() or "")
    assert dict(error_info(error).metadata) == {"request_id": "rid-77"}
    # The traceback is logged, with the request id, for whoever operates the server.
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert logged
    assert getattr(logged[0], "request_id", None) == "rid-77"
    assert logged[0].exc_info


async def test_error_in_a_stream_after_messages_is_internal(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AuthServiceStub(channel)
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for item in stub.WaitTelegramLogin(pb.WaitTelegramLoginRequest(handshake_token="t")):
            got.append(item.state)
    assert got == [pb.HANDSHAKE_STATE_PENDING]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert SECRET_DETAIL not in (caught.value.details() or "")


async def test_typed_error_keeps_reason(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.LoginWithTelegramWidget(
            pb.LoginWithTelegramWidgetRequest(id=1, auth_date=1, hash="a" * 64)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(caught.value)
    assert info.reason == "NOTHING_HERE"
    assert info.metadata["request_id"]


async def test_rate_limit_is_resource_exhausted_with_retry_info(channel: grpc.aio.Channel) -> None:
    from google.rpc import error_details_pb2

    stub = pb_grpc.AuthServiceStub(channel)
    request = pb.DevLoginRequest(telegram_user_id=1, display_name="x")
    for _ in range(3):
        await stub.DevLogin(request)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.DevLogin(request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(caught.value).reason == "RATE_LIMITED"
    retry = [
        d for d in status_of(caught.value).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    ]
    assert retry


async def test_go_grpc_prometheus_metrics(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AuthServiceStub(channel)
    labels = {
        "grpc_type": "unary",
        "grpc_service": "switchboard.identity.v1.AuthService",
        "grpc_method": "StartTelegramLogin",
    }
    before = (
        REGISTRY.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "INTERNAL"})
        or 0
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.StartTelegramLogin(pb.StartTelegramLoginRequest())
    assert (
        REGISTRY.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "INTERNAL"})
        == before + 1
    )
    assert (REGISTRY.get_sample_value("grpc_server_started_total", labels) or 0) >= 1
    assert (REGISTRY.get_sample_value("grpc_server_handling_seconds_count", labels) or 0) >= 1


async def test_method_without_policy_is_refused(stack_infra: Infra) -> None:
    """A servicer for a service not in the registry has no policy: refused, never called."""
    audit = Audit()
    server = grpc.aio.server(interceptors=[Pipeline(MethodRegistry([]), Anonymous(), audit, None)])
    pb_grpc.add_AuthServiceServicer_to_server(Faulty(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.AuthServiceStub(chan).DevLogin(
                    pb.DevLoginRequest(telegram_user_id=1, display_name="x")
                )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).reason == "NO_POLICY"
        assert audit.events == ["access.denied"]
    finally:
        await server.stop(0)
