"""Telegram chat binding, email verification and language, against the real server."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import grpc
import pytest
from switchboard.identity.v1 import channels_pb2 as cpb
from switchboard.identity.v1 import channels_pb2_grpc as cpb_grpc
from switchboard.identity.v1 import identity_pb2 as pb

from tests.conftest import Platform
from tests.integration.identity.outbox import execute, fetch, latest_code, queued
from tests.support.api import Api, Metadata, Session, error_info, field_violations

# Chat ids unique within a run and across runs sharing a database.
_chats = itertools.count(7_000_000_000 + uuid.uuid4().int % 10**6 * 1000)


def next_chat_id() -> int:
    return next(_chats)


@pytest.fixture
def channels(api: Api) -> cpb_grpc.ChannelServiceAsyncStub:
    return cpb_grpc.ChannelServiceStub(api.channel)


def bot(platform: Platform) -> Metadata:
    return (("authorization", f"Bearer {platform.secrets.login_bot_service_token}"),)


async def start_binding(
    channels: cpb_grpc.ChannelServiceAsyncStub, user: Session
) -> cpb.StartTelegramChannelBindingResponse:
    response: cpb.StartTelegramChannelBindingResponse = await channels.StartTelegramChannelBinding(
        cpb.StartTelegramChannelBindingRequest(), metadata=user.metadata
    )
    return response


async def confirm(
    channels: cpb_grpc.ChannelServiceAsyncStub,
    md: Metadata,
    code: str,
    chat_id: int,
    bot_name: str = "",
) -> cpb.ConfirmTelegramChannelBindingResponse:
    response: cpb.ConfirmTelegramChannelBindingResponse = (
        await channels.ConfirmTelegramChannelBinding(
            cpb.ConfirmTelegramChannelBindingRequest(code=code, chat_id=chat_id, bot=bot_name),
            metadata=md,
        )
    )
    return response


async def list_channels(
    channels: cpb_grpc.ChannelServiceAsyncStub, user: Session, page_size: int = 0, token: str = ""
) -> cpb.ListChannelsResponse:
    response: cpb.ListChannelsResponse = await channels.ListChannels(
        cpb.ListChannelsRequest(page_size=page_size, page_token=token), metadata=user.metadata
    )
    return response


async def outbox_count(platform: Platform) -> int:
    [row] = await fetch(platform.pg_dsn, "SELECT count(*) AS n FROM notifications_outbox")
    return int(row["n"])


async def test_bind_a_chat_through_the_bot(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    user = await api.login()
    updated = await channels.SetLanguage(
        cpb.SetLanguageRequest(language="ru"), metadata=user.metadata
    )
    assert updated.user.language == "ru"
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=user.metadata)
    assert me.user.language == "ru"

    started = await start_binding(channels, user)
    assert started.deep_link == f"https://t.me/switchboard_login_bot?start=bind_{started.code}"
    assert len(f"bind_{started.code}") <= 64  # Telegram's /start parameter limit
    chat_id = next_chat_id()
    confirmed = await confirm(channels, bot(platform), f"bind_{started.code}", chat_id)
    assert confirmed.user.id == user.user.id
    assert confirmed.channel.telegram_chat_id == chat_id
    assert confirmed.channel.bot == "login"
    assert confirmed.channel.kind == cpb.CHANNEL_KIND_TELEGRAM
    assert confirmed.channel.HasField("confirm_time")

    listed = await list_channels(channels, user)
    assert [(c.id, c.telegram_chat_id, c.HasField("confirm_time")) for c in listed.channels] == [
        (confirmed.channel.id, chat_id, True)
    ]
    [notice] = await queued(platform.pg_dsn, platform.secrets.data_key, chat_id=chat_id)
    assert notice.template == "identity.telegram_channel_bound"
    assert (notice.channel, notice.bot, notice.language) == ("telegram", "login", "ru")
    assert notice.dedup_key == f"identity.telegram_channel_bound:{confirmed.channel.id}"

    # The bot retrying the same confirmation gets the same answer, and nothing is sent twice.
    again = await confirm(channels, bot(platform), started.code, chat_id)
    assert again.channel.id == confirmed.channel.id
    assert len(await queued(platform.pg_dsn, platform.secrets.data_key, chat_id=chat_id)) == 1

    boss_events = await fetch(
        platform.pg_dsn,
        "SELECT actor FROM identity_audit_events WHERE action = 'channel.telegram_bound'"
        " AND target = $1",
        f"user:{user.user.id}",
    )
    assert [e["actor"] for e in boss_events] == ["service:login-bot"]


async def test_bad_codes_are_refused_and_change_nothing(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    user = await api.login()
    started = await start_binding(channels, user)
    used_chat = next_chat_id()
    await confirm(channels, bot(platform), started.code, used_chat)

    expired = await start_binding(channels, user)
    await execute(
        platform.pg_dsn,
        "UPDATE identity_telegram_binding_codes SET create_time = now() - interval '1 hour',"
        " expire_time = now() - interval '1 minute' WHERE expire_time > now()",
    )
    before_outbox = await outbox_count(platform)
    before_channels = await list_channels(channels, user)
    other_chat = next_chat_id()
    for code in ("unknownCode123", started.code, expired.code):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await confirm(channels, bot(platform), code, other_chat)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(caught.value).reason == "BINDING_CODE_NOT_FOUND"
    assert await outbox_count(platform) == before_outbox
    assert await list_channels(channels, user) == before_channels
    assert not await fetch(
        platform.pg_dsn, "SELECT 1 FROM identity_telegram_channels WHERE chat_id = $1", other_chat
    )

    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await confirm(channels, bot(platform), "bad code!", other_chat)
    assert ("code", "PATTERN_MISMATCH") in field_violations(malformed.value)


async def test_only_a_service_with_the_scope_may_confirm(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    user = await api.login()
    started = await start_binding(channels, user)
    chat_id = next_chat_id()
    callers = {
        "the user": user.metadata,
        "a worker without the scope": api.service(platform.secrets.plain_worker_token),
        "anonymous": (),
    }
    for name, md in callers.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await confirm(channels, md, started.code, chat_id)
        assert caught.value.code() in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAUTHENTICATED,
        ), name
    # The code is still good for the bot.
    confirmed = await confirm(channels, bot(platform), started.code, chat_id)
    assert confirmed.user.id == user.user.id


async def test_a_chat_belongs_to_one_user_per_bot(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    alice, bob = await api.login(), await api.login()
    chat_id = next_chat_id()
    a = await confirm(channels, bot(platform), (await start_binding(channels, alice)).code, chat_id)
    bob_code = (await start_binding(channels, bob)).code
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await confirm(channels, bot(platform), bob_code, chat_id)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(caught.value).reason == "TELEGRAM_CHAT_BOUND_ELSEWHERE"
    # Another bot may talk to the same chat for Bob.
    other = await confirm(channels, bot(platform), bob_code, chat_id, "shop")
    assert other.channel.bot == "shop"

    # Once Alice unbinds it, Bob can bind the chat for the login bot too.
    await channels.DeleteChannel(
        cpb.DeleteChannelRequest(channel_id=a.channel.id), metadata=alice.metadata
    )
    assert (await list_channels(channels, alice)).channels == []
    moved = await confirm(
        channels, bot(platform), (await start_binding(channels, bob)).code, chat_id
    )
    assert moved.user.id == bob.user.id


async def test_concurrent_confirmations_for_one_chat_bind_it_once(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    users = [await api.login() for _ in range(4)]
    codes = [(await start_binding(channels, u)).code for u in users]
    chat_id = next_chat_id()
    results = await asyncio.gather(
        *(confirm(channels, bot(platform), c, chat_id) for c in codes), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, cpb.ConfirmTelegramChannelBindingResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1
    assert {error_info(e).reason for e in lost} == {"TELEGRAM_CHAT_BOUND_ELSEWHERE"}
    rows = await fetch(
        platform.pg_dsn,
        "SELECT user_id FROM identity_telegram_channels WHERE chat_id = $1 AND delete_time IS NULL",
        chat_id,
    )
    assert [str(r["user_id"]) for r in rows] == [won[0].user.id]
    assert len(await queued(platform.pg_dsn, platform.secrets.data_key, chat_id=chat_id)) == 1


async def test_delete_channel_rules(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    owner, stranger = await api.login(), await api.login()
    bound = await confirm(
        channels, bot(platform), (await start_binding(channels, owner)).code, next_chat_id()
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channels.DeleteChannel(
            cpb.DeleteChannelRequest(channel_id=bound.channel.id), metadata=stranger.metadata
        )
    assert error_info(caught.value).reason == "CHANNEL_NOT_FOUND"
    for _ in range(2):  # deleting again succeeds (safe to retry)
        await channels.DeleteChannel(
            cpb.DeleteChannelRequest(channel_id=bound.channel.id), metadata=owner.metadata
        )
    assert (await list_channels(channels, owner)).channels == []
    with pytest.raises(grpc.aio.AioRpcError) as email:
        await channels.DeleteChannel(
            cpb.DeleteChannelRequest(channel_id="email"), metadata=owner.metadata
        )
    assert error_info(email.value).reason == "EMAIL_CHANNEL_NOT_DELETABLE"
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await channels.DeleteChannel(
            cpb.DeleteChannelRequest(channel_id="nope"), metadata=owner.metadata
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_channels_pages(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    user = await api.login()
    bound = []
    for _ in range(5):
        code = (await start_binding(channels, user)).code
        bound.append((await confirm(channels, bot(platform), code, next_chat_id())).channel.id)
    seen: list[str] = []
    token = ""
    while True:
        page = await list_channels(channels, user, page_size=2, token=token)
        assert len(page.channels) <= 2
        seen.extend(c.id for c in page.channels)
        token = page.next_page_token
        if not token:
            break
    assert seen == bound

    # With a verified email, it comes first, also on pages of one.
    await execute(
        platform.pg_dsn,
        "UPDATE identity_users SET email = $2, email_verify_time = now() WHERE id = $1",
        uuid.UUID(user.user.id),
        f"pages-{uuid.uuid4().hex[:8]}@example.org",
    )
    seen, token = [], ""
    while True:
        page = await list_channels(channels, user, page_size=1, token=token)
        assert len(page.channels) == 1
        seen.extend(c.id for c in page.channels)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["email", *bound]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await list_channels(channels, user, token="garbage")
    assert error_info(caught.value).reason == "INVALID_PAGE_TOKEN"


async def test_verify_an_email_for_a_telegram_user(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    user = await api.login()
    email = f"verify-{uuid.uuid4().hex[:10]}@example.org"
    await channels.StartEmailVerification(
        cpb.StartEmailVerificationRequest(email=email), metadata=user.metadata
    )
    code = await latest_code(platform.pg_dsn, platform.secrets.data_key, email)
    # A login code request cannot use the verification code, nor another user.
    with pytest.raises(grpc.aio.AioRpcError) as as_login:
        await api.auth.VerifyEmailCode(pb.VerifyEmailCodeRequest(email=email, code=code))
    assert error_info(as_login.value).reason == "EMAIL_CODE_NOT_FOUND"
    stranger = await api.login()
    with pytest.raises(grpc.aio.AioRpcError) as other_user:
        await channels.ConfirmEmailVerification(
            cpb.ConfirmEmailVerificationRequest(email=email, code=code), metadata=stranger.metadata
        )
    assert error_info(other_user.value).reason == "EMAIL_CODE_NOT_FOUND"

    confirmed = await channels.ConfirmEmailVerification(
        cpb.ConfirmEmailVerificationRequest(email=email, code=code), metadata=user.metadata
    )
    assert confirmed.user.email == email
    listed = await list_channels(channels, user)
    assert [(c.id, c.kind, c.email) for c in listed.channels] == [
        ("email", cpb.CHANNEL_KIND_EMAIL, email)
    ]
    mails = await queued(platform.pg_dsn, platform.secrets.data_key, email=email)
    assert [m.template for m in mails] == ["identity.email_code", "identity.email_verified"]

    # Logging in by that address now reaches the same (Telegram) user.
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '2 minutes'"
        " WHERE email = $1",
        email,
    )
    await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email))
    login = await api.auth.VerifyEmailCode(
        pb.VerifyEmailCodeRequest(
            email=email, code=await latest_code(platform.pg_dsn, platform.secrets.data_key, email)
        )
    )
    platform.secrets.issued.append(login.session.token)
    assert login.user.id == user.user.id
    assert login.user.telegram_user_id == user.user.telegram_user_id

    # Another user cannot take the address.
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '2 minutes'"
        " WHERE email = $1",
        email,
    )
    await channels.StartEmailVerification(
        cpb.StartEmailVerificationRequest(email=email), metadata=stranger.metadata
    )
    taken_code = await latest_code(platform.pg_dsn, platform.secrets.data_key, email)
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await channels.ConfirmEmailVerification(
            cpb.ConfirmEmailVerificationRequest(email=email, code=taken_code),
            metadata=stranger.metadata,
        )
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(taken.value).reason == "EMAIL_IN_USE"


async def test_set_language_rules(
    api: Api, platform: Platform, channels: cpb_grpc.ChannelServiceAsyncStub
) -> None:
    user = await api.login()
    # A Telegram sign-up chose no language: empty in the API, NULL in the database.
    assert user.user.language == ""
    [row] = await fetch(
        platform.pg_dsn,
        "SELECT language FROM identity_users WHERE id = $1",
        uuid.UUID(user.user.id),
    )
    assert row["language"] is None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channels.SetLanguage(cpb.SetLanguageRequest(language="de"), metadata=user.metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("language", "PATTERN_MISMATCH") in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await channels.SetLanguage(cpb.SetLanguageRequest(language=""), metadata=user.metadata)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for language in ("fr", "en"):
        response = await channels.SetLanguage(
            cpb.SetLanguageRequest(language=language), metadata=user.metadata
        )
        assert response.user.language == language
    # English chosen explicitly is kept as a choice, distinct from "never chose".
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=user.metadata)
    assert me.user.language == "en"
    [row] = await fetch(
        platform.pg_dsn,
        "SELECT language FROM identity_users WHERE id = $1",
        uuid.UUID(user.user.id),
    )
    assert row["language"] == "en"
