"""A fake identity backend (grpc.aio) with canned behaviours, for gateway and client tests.

    backend = FakeBackend()
    server, port = await start_fake_server(backend)
    ...  # point Envoy (gateway.envoy.run_gateway) or a client at 127.0.0.1:port
    await server.stop(None)

AuthService: GetMe answers for `authorization: Bearer good` (sleeps first for `Bearer slow`),
else UNAUTHENTICATED with a google.rpc.ErrorInfo; LoginWithTelegramWidget always fails
INVALID_ARGUMENT with google.rpc.BadRequest field violations; WaitTelegramLogin streams PENDING,
PENDING, CONFIRMED (see its docstring for slower variants). AdminService echoes its bindings.
Every call's metadata is recorded in `FakeBackend.calls`.
"""

from __future__ import annotations

import asyncio
import subprocess  # nosec B404
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from switchboard.identity.v1 import identity_pb2, identity_pb2_grpc
from switchboard.options.v1 import access_pb2

__all__ = [
    "ERROR_DOMAIN",
    "GOOD_TOKEN",
    "SLOW_SECONDS",
    "SLOW_TOKEN",
    "USER_ID",
    "Call",
    "FakeAdminService",
    "FakeAuthService",
    "FakeBackend",
    "canned_session",
    "canned_user",
    "ensure_image",
    "start_fake_server",
]

REPO_ROOT = Path(__file__).resolve().parents[1]

USER_ID = "0b9a3f5e-8d1c-4c57-9a51-1f0e6f1d2a3b"
# Fake bearer tokens understood by the fake GetMe; "slow" sleeps SLOW_SECONDS first.
GOOD_TOKEN = "good"  # noqa: S105  # nosec B105
SLOW_TOKEN = "slow"  # noqa: S105  # nosec B105
SLOW_SECONDS = 1.5
ERROR_DOMAIN = "switchboard.test"


def canned_user() -> identity_pb2.User:
    user = identity_pb2.User(
        id=USER_ID,
        telegram_user_id=1234567890123,
        display_name="Ada Lovelace",
        username="ada",
        role=access_pb2.ROLE_USER,
    )
    user.create_time.FromSeconds(1_700_000_000)
    return user


def canned_session() -> identity_pb2.Session:
    return identity_pb2.Session(
        token="session-token",  # noqa: S106  # nosec B106
        expire_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
    )


def _packed(
    *details: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest,
) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    return packed


async def _abort(
    context: grpc.aio.ServicerContext[object, object],
    code: int,
    message: str,
    *details: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest,
) -> None:
    status = rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=_packed(*details))
    )
    await context.abort(status.code, status.details, status.trailing_metadata)


@dataclass
class Call:
    method: str
    metadata: dict[str, str]
    peer: str


@dataclass
class FakeBackend:
    """Canned behaviours; `calls` records what reached the server (metadata as seen upstream)."""

    calls: list[Call] = field(default_factory=list)

    def record(self, method: str, context: grpc.aio.ServicerContext[object, object]) -> Call:
        metadata = {
            str(key): value if isinstance(value, str) else value.decode(errors="replace")
            for key, value in (context.invocation_metadata() or ())
        }
        call = Call(method, metadata, context.peer())
        self.calls.append(call)
        return call

    def last(self, method: str) -> Call:
        return next(call for call in reversed(self.calls) if call.method == method)


class FakeAuthService(identity_pb2_grpc.AuthServiceServicer):
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    async def GetMe(
        self,
        request: identity_pb2.GetMeRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.GetMeResponse:
        call = self.backend.record("GetMe", context)
        token = call.metadata.get("authorization", "").removeprefix("Bearer ")
        if token == SLOW_TOKEN:
            await asyncio.sleep(SLOW_SECONDS)
        elif token != GOOD_TOKEN:
            await _abort(
                context,
                code_pb2.UNAUTHENTICATED,
                "missing or invalid session",
                error_details_pb2.ErrorInfo(
                    reason="SESSION_INVALID",
                    domain=ERROR_DOMAIN,
                    metadata={"hint": "log in again"},
                ),
            )
        return identity_pb2.GetMeResponse(user=canned_user())

    async def RequestEmailCode(
        self,
        request: identity_pb2.RequestEmailCodeRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.RequestEmailCodeResponse:
        self.backend.record("RequestEmailCode", context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of the gateway fake")
        raise AssertionError("unreachable")

    async def VerifyEmailCode(
        self,
        request: identity_pb2.VerifyEmailCodeRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.VerifyEmailCodeResponse:
        self.backend.record("VerifyEmailCode", context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of the gateway fake")
        raise AssertionError("unreachable")

    async def LoginWithTelegramWidget(
        self,
        request: identity_pb2.LoginWithTelegramWidgetRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.LoginWithTelegramWidgetResponse:
        self.backend.record("LoginWithTelegramWidget", context)
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field="hash", description="must match ^[0-9a-f]{64}$", reason="PATTERN"
            ),
            error_details_pb2.BadRequest.FieldViolation(
                field="auth_date", description="is required", reason="REQUIRED"
            ),
        ]
        await _abort(
            context,
            code_pb2.INVALID_ARGUMENT,
            "invalid LoginWithTelegramWidgetRequest",
            error_details_pb2.BadRequest(field_violations=violations),
            error_details_pb2.ErrorInfo(reason="VALIDATION_FAILED", domain=ERROR_DOMAIN),
        )
        raise AssertionError("unreachable")

    async def WaitTelegramLogin(
        self,
        request: identity_pb2.WaitTelegramLoginRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[identity_pb2.WaitTelegramLoginResponse]:
        """Streams PENDING heartbeats then CONFIRMED.

        handshake_token "beat:<n>:<seconds>" sends n heartbeats <seconds> apart before the
        confirmation; "silent:<seconds>" sends one heartbeat then stays silent that long.
        """
        self.backend.record("WaitTelegramLogin", context)
        beats, interval = 2, 0.0
        kind, _, rest = request.handshake_token.partition(":")
        if kind == "beat":
            count, _, seconds = rest.partition(":")
            beats, interval = int(count), float(seconds)
        elif kind == "silent":
            beats = 1
        pending = identity_pb2.WaitTelegramLoginResponse(state=identity_pb2.HANDSHAKE_STATE_PENDING)
        for index in range(beats):
            if index and interval:
                await asyncio.sleep(interval)
            yield pending
        if kind == "silent":
            await asyncio.sleep(float(rest))
        yield identity_pb2.WaitTelegramLoginResponse(
            state=identity_pb2.HANDSHAKE_STATE_CONFIRMED,
            session=canned_session(),
            user=canned_user(),
        )

    async def StartTelegramLogin(
        self,
        request: identity_pb2.StartTelegramLoginRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.StartTelegramLoginResponse:
        self.backend.record("StartTelegramLogin", context)
        return identity_pb2.StartTelegramLoginResponse(
            code="abcdefgh12", deep_link="https://t.me/switchboard_bot?start=abcdefgh12"
        )

    async def Logout(
        self,
        request: identity_pb2.LogoutRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.LogoutResponse:
        self.backend.record("Logout", context)
        return identity_pb2.LogoutResponse()

    async def ConfirmTelegramLogin(
        self,
        request: identity_pb2.ConfirmTelegramLoginRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.ConfirmTelegramLoginResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")
        raise AssertionError("unreachable")

    async def DevLogin(
        self,
        request: identity_pb2.DevLoginRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.DevLoginResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")
        raise AssertionError("unreachable")


class FakeAdminService(identity_pb2_grpc.AdminServiceServicer):
    """Echoes what the transcoder put into the request, to check query and path bindings."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    async def ListUsers(
        self,
        request: identity_pb2.ListUsersRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.ListUsersResponse:
        self.backend.record("ListUsers", context)
        return identity_pb2.ListUsersResponse(
            users=[canned_user()],
            next_page_token=f"size={request.page_size};token={request.page_token}",
        )

    async def PromoteUser(
        self,
        request: identity_pb2.PromoteUserRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.PromoteUserResponse:
        self.backend.record("PromoteUser", context)
        user = canned_user()
        user.id = request.user_id
        user.role = access_pb2.ROLE_ADMIN
        return identity_pb2.PromoteUserResponse(user=user)

    async def DeleteUser(
        self,
        request: identity_pb2.DeleteUserRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.DeleteUserResponse:
        self.backend.record("DeleteUser", context)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"user {request.user_id} not found")
        raise AssertionError("unreachable")

    async def ListAuditEvents(
        self,
        request: identity_pb2.ListAuditEventsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> identity_pb2.ListAuditEventsResponse:
        self.backend.record("ListAuditEvents", context)
        event = identity_pb2.AuditEvent(
            id="e1", actor="anonymous", action=request.action, attributes={"ip": "127.0.0.1"}
        )
        return identity_pb2.ListAuditEventsResponse(events=[event])


async def start_fake_server(
    backend: FakeBackend, host: str = "127.0.0.1"
) -> tuple[grpc.aio.Server, int]:
    """Starts a grpc.aio server with both fake services on a free port."""
    server = grpc.aio.server()
    identity_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuthService(backend), server)
    identity_pb2_grpc.add_AdminServiceServicer_to_server(FakeAdminService(backend), server)
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    return server, port


def ensure_image(repo_root: Path = REPO_ROOT) -> Path:
    """The descriptor image (.build/switchboard.binpb), built with `make image` when missing."""
    image = repo_root / ".build" / "switchboard.binpb"
    if not image.exists():
        # Fixed argv, `make` from PATH: the same command a developer runs.
        subprocess.run(["make", "image"], cwd=repo_root, check=True, timeout=300)  # noqa: S607  # nosec B603 B607
    return image
