"""Each kind of caller x each RPC: allowed, or refused with the right code.

The expectations are written out here by hand (not derived from the contract), so a policy
changed by mistake in a .proto file fails this test.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as pb

from tests.conftest import Platform
from tests.support.api import Api, Metadata, error_info, next_telegram_id
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

CALLERS = ["anonymous", "user", "admin", "super_admin", "bot", "bot_as_user", "worker"]
OK, UNAUTH, DENIED = "ok", "unauthenticated", "denied"

# caller -> expected outcome, per RPC.
EXPECTED: dict[str, dict[str, str]] = {
    "AuthService/LoginWithTelegramWidget": dict.fromkeys(CALLERS, OK),
    "AuthService/StartTelegramLogin": dict.fromkeys(CALLERS, OK),
    "AuthService/WaitTelegramLogin": dict.fromkeys(CALLERS, OK),
    "AuthService/DevLogin": dict.fromkeys(CALLERS, OK),
    "AuthService/RequestEmailCode": dict.fromkeys(CALLERS, OK),
    "AuthService/VerifyEmailCode": dict.fromkeys(CALLERS, OK),
    "AuthService/ConfirmTelegramLogin": {
        "anonymous": UNAUTH, "user": DENIED, "admin": DENIED, "super_admin": DENIED,
        "bot": OK, "bot_as_user": OK, "worker": DENIED,
    },
    "AuthService/Logout": {
        "anonymous": UNAUTH, "user": OK, "admin": OK, "super_admin": OK,
        "bot": DENIED, "bot_as_user": OK, "worker": DENIED,
    },
    "AuthService/GetMe": {
        "anonymous": UNAUTH, "user": OK, "admin": OK, "super_admin": OK,
        "bot": DENIED, "bot_as_user": OK, "worker": DENIED,
    },
    "AdminService/ListUsers": {
        "anonymous": UNAUTH, "user": DENIED, "admin": OK, "super_admin": OK,
        "bot": DENIED, "bot_as_user": DENIED, "worker": DENIED,
    },
    "AdminService/ListAuditEvents": {
        "anonymous": UNAUTH, "user": DENIED, "admin": OK, "super_admin": OK,
        "bot": DENIED, "bot_as_user": DENIED, "worker": DENIED,
    },
    "AdminService/PromoteUser": {
        "anonymous": UNAUTH, "user": DENIED, "admin": DENIED, "super_admin": OK,
        "bot": DENIED, "bot_as_user": DENIED, "worker": DENIED,
    },
    "AdminService/DeleteUser": {
        "anonymous": UNAUTH, "user": DENIED, "admin": DENIED, "super_admin": OK,
        "bot": DENIED, "bot_as_user": DENIED, "worker": DENIED,
    },
}  # fmt: skip


def test_matrix_covers_every_rpc() -> None:
    names = {
        f"{s.name}/{m.name}" for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods
    }
    assert names == set(EXPECTED)


async def _callers(api: Api, platform: Platform) -> dict[str, Metadata]:
    admin = await api.login()
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    await api.admin.PromoteUser(
        pb.PromoteUserRequest(user_id=admin.user.id), metadata=boss.metadata
    )
    return {
        "anonymous": (),
        "user": (await api.login()).metadata,
        "admin": admin.metadata,
        "super_admin": (await api.login(SUPER_ADMIN_TELEGRAM_ID)).metadata,
        "bot": api.service(platform.secrets.login_bot_service_token),
        "bot_as_user": api.service(
            platform.secrets.login_bot_service_token, act_as=next_telegram_id()
        ),
        "worker": api.service(platform.secrets.plain_worker_token),
    }


def _calls(api: Api) -> dict[str, Callable[[Metadata], Awaitable[Any]]]:
    async def wait(md: Metadata) -> None:
        async for _ in api.auth.WaitTelegramLogin(
            pb.WaitTelegramLoginRequest(handshake_token="sbh_unknown"), metadata=md
        ):
            pass

    missing_user = str(uuid.uuid4())
    return {
        "AuthService/LoginWithTelegramWidget": lambda md: api.auth.LoginWithTelegramWidget(
            pb.LoginWithTelegramWidgetRequest(id=1, auth_date=1, hash="0" * 64), metadata=md
        ),
        "AuthService/StartTelegramLogin": lambda md: api.auth.StartTelegramLogin(
            pb.StartTelegramLoginRequest(), metadata=md
        ),
        "AuthService/WaitTelegramLogin": wait,
        "AuthService/DevLogin": lambda md: api.auth.DevLogin(
            pb.DevLoginRequest(telegram_user_id=1, display_name="x"), metadata=md
        ),
        "AuthService/ConfirmTelegramLogin": lambda md: api.auth.ConfirmTelegramLogin(
            pb.ConfirmTelegramLoginRequest(code="unknown-code-123"), metadata=md
        ),
        "AuthService/RequestEmailCode": lambda md: api.auth.RequestEmailCode(
            pb.RequestEmailCodeRequest(email=f"matrix-{uuid.uuid4().hex}@example.com"), metadata=md
        ),
        "AuthService/VerifyEmailCode": lambda md: api.auth.VerifyEmailCode(
            pb.VerifyEmailCodeRequest(email="nobody@example.com", code="000000"), metadata=md
        ),
        "AuthService/Logout": lambda md: api.auth.Logout(pb.LogoutRequest(), metadata=md),
        "AuthService/GetMe": lambda md: api.auth.GetMe(pb.GetMeRequest(), metadata=md),
        "AdminService/ListUsers": lambda md: api.admin.ListUsers(
            pb.ListUsersRequest(), metadata=md
        ),
        "AdminService/ListAuditEvents": lambda md: api.admin.ListAuditEvents(
            pb.ListAuditEventsRequest(), metadata=md
        ),
        "AdminService/PromoteUser": lambda md: api.admin.PromoteUser(
            pb.PromoteUserRequest(user_id=missing_user), metadata=md
        ),
        "AdminService/DeleteUser": lambda md: api.admin.DeleteUser(
            pb.DeleteUserRequest(user_id=missing_user), metadata=md
        ),
    }


async def _outcome(call: Callable[[Metadata], Awaitable[Any]], md: Metadata) -> str:
    try:
        await call(md)
    except grpc.aio.AioRpcError as exc:
        if (
            exc.code() == grpc.StatusCode.UNAUTHENTICATED
            and error_info(exc).reason == "UNAUTHENTICATED"
        ):
            return UNAUTH
        if (
            exc.code() == grpc.StatusCode.PERMISSION_DENIED
            and error_info(exc).reason == "ACCESS_DENIED"
        ):
            return DENIED
        # Any other answer (not found, bad signature, dev login disabled ...) means the call
        # got past authorization to the handler.
    return OK


@pytest.mark.parametrize("rpc", sorted(EXPECTED))
async def test_authorization_matrix(api: Api, platform: Platform, rpc: str) -> None:
    callers = await _callers(api, platform)
    call = _calls(api)[rpc]
    got = {caller: await _outcome(call, md) for caller, md in callers.items()}
    assert got == EXPECTED[rpc]


async def test_denied_calls_are_audited(api: Api) -> None:
    user = await api.login()
    with pytest.raises(grpc.aio.AioRpcError):
        await api.admin.ListUsers(pb.ListUsersRequest(), metadata=user.metadata)
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    events = await api.admin.ListAuditEvents(
        pb.ListAuditEventsRequest(action="access.denied"), metadata=boss.metadata
    )
    assert any(
        e.actor == f"user:{user.user.id}"
        and e.target.endswith("AdminService/ListUsers")
        and e.request_id
        for e in events.events
    )
