"""Logins, sessions and service principals against the real server, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.options.v1 import access_pb2

from tests.conftest import Platform
from tests.support.api import Api, bearer, error_info, field_violations, next_telegram_id
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID
from tests.support.telegram import signed_widget_payload


async def test_widget_login_creates_user_then_reuses_it(api: Api) -> None:
    telegram_id = next_telegram_id()
    first = await api.login(telegram_id, name="Ann")
    assert first.user.telegram_user_id == telegram_id
    assert first.user.display_name == "Ann"
    assert first.user.role == access_pb2.ROLE_USER
    assert first.token.startswith("sbs_")

    second = await api.login(telegram_id, name="Ann B")
    assert second.user.id == first.user.id
    assert second.token != first.token
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=second.metadata)
    assert me.user.display_name == "Ann B"


async def test_configured_super_admin_gets_the_role(api: Api) -> None:
    session = await api.login(SUPER_ADMIN_TELEGRAM_ID, name="Boss")
    assert session.user.role == access_pb2.ROLE_SUPER_ADMIN


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("hash", "TELEGRAM_HASH_MISMATCH"),
        ("name", "TELEGRAM_HASH_MISMATCH"),
        ("stale", "TELEGRAM_AUTH_DATE_EXPIRED"),
        ("future", "TELEGRAM_AUTH_DATE_IN_FUTURE"),
    ],
)
async def test_bad_widget_payloads_are_refused_and_audited(
    api: Api, platform: Platform, tamper: str, reason: str
) -> None:
    telegram_id = next_telegram_id()
    auth_date = None
    if tamper == "stale":
        auth_date = int(time.time()) - 2 * 86_400
    if tamper == "future":
        auth_date = int(time.time()) + 3_600
    payload = signed_widget_payload(
        platform.secrets.login_bot_token, telegram_id, auth_date=auth_date
    )
    if tamper == "hash":
        payload["hash"] = "0" * 64
    if tamper == "name":
        payload["first_name"] = "Mallory"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.LoginWithTelegramWidget(pb.LoginWithTelegramWidgetRequest(**payload))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == reason

    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    events = await api.admin.ListAuditEvents(
        pb.ListAuditEventsRequest(action="auth.login_failed", page_size=50), metadata=boss.metadata
    )
    assert any(
        e.target == f"telegram:{telegram_id}" and e.attributes["reason"] == reason
        for e in events.events
    )
    # Nothing was created for the refused login.
    users = await api.admin.ListUsers(pb.ListUsersRequest(page_size=200), metadata=boss.metadata)
    assert all(u.telegram_user_id != telegram_id for u in users.users)


async def test_malformed_widget_payload_gets_field_violations(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.LoginWithTelegramWidget(pb.LoginWithTelegramWidgetRequest(hash="xyz"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == [
        ("id", "REQUIRED"),
        ("auth_date", "REQUIRED"),
        ("hash", "PATTERN_MISMATCH"),
    ]


async def test_logout_revokes_the_session(api: Api) -> None:
    session = await api.login()
    await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    await api.auth.Logout(pb.LogoutRequest(), metadata=session.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "SESSION_INVALID"


@pytest.mark.parametrize(
    "header", ["Bearer sbs_unknown-token-value-000000000000", "Basic abc", "Bearer"]
)
async def test_bad_credentials_are_unauthenticated(api: Api, header: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.GetMe(pb.GetMeRequest(), metadata=(("authorization", header),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_dev_login_is_disabled_outside_dev(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.DevLogin(pb.DevLoginRequest(telegram_user_id=5, display_name="x"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "DEV_LOGIN_DISABLED"


async def test_service_acting_as_a_user_resolves_or_creates_it(
    api: Api, platform: Platform
) -> None:
    telegram_id = next_telegram_id()
    md = api.service(platform.secrets.login_bot_service_token, act_as=telegram_id)
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=md)
    assert me.user.telegram_user_id == telegram_id
    again = await api.auth.GetMe(pb.GetMeRequest(), metadata=md)
    assert again.user.id == me.user.id


async def test_a_bot_names_the_user_it_creates_by_acting(api: Api, platform: Platform) -> None:
    telegram_id = next_telegram_id()
    md = (
        *api.service(platform.secrets.login_bot_service_token, act_as=telegram_id),
        ("x-telegram-user-name", quote("Иван  Петров\u0007", safe="")),
    )
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=md)
    assert me.user.display_name == "Иван Петров", "decoded, control characters and spaces cleaned"
    bad = (
        *api.service(platform.secrets.login_bot_service_token, act_as=next_telegram_id()),
        ("x-telegram-user-name", "%ff%fe"),
    )
    nameless = await api.auth.GetMe(pb.GetMeRequest(), metadata=bad)
    assert nameless.user.display_name == "", "a name that is not UTF-8 is ignored, not an error"


async def test_a_bot_names_only_nameless_users(api: Api, platform: Platform) -> None:
    def acting(telegram_id: int, name: str) -> tuple[tuple[str, str], ...]:
        return (
            *api.service(platform.secrets.login_bot_service_token, act_as=telegram_id),
            ("x-telegram-user-name", quote(name, safe="")),
        )

    # A user who logged in with the widget keeps the name Telegram signed for them.
    named = await api.login(name="Signed Name")
    telegram_id = named.user.telegram_user_id
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=acting(telegram_id, "Bot Name"))
    assert me.user.display_name == "Signed Name"
    # A user first seen by a bot without a name gets one from the next bot call that has one
    # (once the server's short act-as cache has let go of it).
    nameless_id = next_telegram_id()
    md = api.service(platform.secrets.login_bot_service_token, act_as=nameless_id)
    first = await api.auth.GetMe(pb.GetMeRequest(), metadata=md)
    assert first.user.display_name == ""
    deadline = time.monotonic() + 10
    while True:
        later = await api.auth.GetMe(pb.GetMeRequest(), metadata=acting(nameless_id, "Late Name"))
        if later.user.display_name or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert later.user.display_name == "Late Name"
    assert later.user.id == first.user.id


async def test_act_as_without_the_scope_is_refused(api: Api, platform: Platform) -> None:
    md = api.service(platform.secrets.plain_worker_token, act_as=next_telegram_id())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.GetMe(pb.GetMeRequest(), metadata=md)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value).reason == "ACT_AS_NOT_ALLOWED"


async def test_act_as_with_a_session_token_is_refused(api: Api) -> None:
    session = await api.login()
    md = (*session.metadata, ("x-telegram-user-id", str(next_telegram_id())))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.GetMe(pb.GetMeRequest(), metadata=md)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_bot_handshake_hands_out_one_session(api: Api, platform: Platform) -> None:
    start = await api.auth.StartTelegramLogin(pb.StartTelegramLoginRequest())
    assert start.deep_link.endswith(f"?start={start.code}")
    assert start.deep_link.startswith("https://t.me/")

    wait = api.auth.WaitTelegramLogin(
        pb.WaitTelegramLoginRequest(handshake_token=start.handshake_token)
    )
    stream = wait.__aiter__()
    first = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert first.state == pb.HANDSHAKE_STATE_PENDING

    telegram_id = next_telegram_id()
    bot = api.service(platform.secrets.login_bot_service_token, act_as=telegram_id)
    confirmed = await api.auth.ConfirmTelegramLogin(
        pb.ConfirmTelegramLoginRequest(code=start.code, display_name="Via Bot", username="viabot"),
        metadata=bot,
    )
    assert confirmed.user.telegram_user_id == telegram_id
    # The bot may retry its confirmation; another user may not take the code over.
    await api.auth.ConfirmTelegramLogin(
        pb.ConfirmTelegramLoginRequest(code=start.code), metadata=bot
    )
    other = api.service(platform.secrets.login_bot_service_token, act_as=next_telegram_id())
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await api.auth.ConfirmTelegramLogin(
            pb.ConfirmTelegramLoginRequest(code=start.code), metadata=other
        )
    assert taken.value.code() == grpc.StatusCode.NOT_FOUND

    states = [first.state]
    session_token = ""
    async for update in stream:
        states.append(update.state)
        if update.state == pb.HANDSHAKE_STATE_CONFIRMED:
            session_token = update.session.token
            assert update.user.display_name == "Via Bot"
    assert states[-1] == pb.HANDSHAKE_STATE_CONFIRMED
    platform.secrets.issued.append(session_token)
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=bearer(session_token))
    assert me.user.telegram_user_id == telegram_id

    # The session is handed out once; the code cannot be confirmed twice.
    again = [
        u.state
        async for u in api.auth.WaitTelegramLogin(
            pb.WaitTelegramLoginRequest(handshake_token=start.handshake_token)
        )
    ]
    assert again == [pb.HANDSHAKE_STATE_EXPIRED]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.ConfirmTelegramLogin(
            pb.ConfirmTelegramLoginRequest(code=start.code), metadata=bot
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_confirm_needs_the_bot_scope(api: Api, platform: Platform) -> None:
    start = await api.auth.StartTelegramLogin(pb.StartTelegramLoginRequest())
    user = await api.login()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.ConfirmTelegramLogin(
            pb.ConfirmTelegramLoginRequest(code=start.code), metadata=user.metadata
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_handshake_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in api.auth.WaitTelegramLogin(
            pb.WaitTelegramLoginRequest(handshake_token="sbh_nope")
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_request_id_is_echoed_or_created(api: Api) -> None:
    call = api.auth.StartTelegramLogin(
        pb.StartTelegramLoginRequest(), metadata=(("x-request-id", "test-req-1"),)
    )
    await call
    assert ("x-request-id", "test-req-1") in tuple(await call.trailing_metadata())
    call = api.auth.StartTelegramLogin(pb.StartTelegramLoginRequest())
    await call
    created = dict(await call.trailing_metadata())["x-request-id"]
    assert len(created) == 32


async def test_rate_limit_is_per_principal_over_grpc(api: Api) -> None:
    """configs/test.yaml gives the read class a burst of 30 per principal."""
    noisy, quiet = await api.login(), await api.login()
    results = await asyncio.gather(
        *(api.auth.GetMe(pb.GetMeRequest(), metadata=noisy.metadata) for _ in range(90)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert 30 <= len(results) - len(refused) < 90
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert {error_info(r).reason for r in refused} == {"RATE_LIMITED"}
    # Another principal has its own bucket.
    await api.auth.GetMe(pb.GetMeRequest(), metadata=quiet.metadata)


async def test_the_shared_super_admin_waits_out_its_read_limit_in_tests(api: Api) -> None:
    """tests/support/api.py PatientSuperAdmin: setup reads by the shared super admin never
    fail on its drained bucket (other principals see the limiter as it is, above)."""
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    results = await asyncio.gather(
        *(api.auth.GetMe(pb.GetMeRequest(), metadata=boss.metadata) for _ in range(50))
    )
    assert {r.user.id for r in results} == {boss.user.id}
