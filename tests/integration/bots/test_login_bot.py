"""The login bot, driven as a user would drive it: real server, fake Bot API."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as pb

from bots.login import SPEC as LOGIN
from tests.conftest import Platform
from tests.integration.bots.conftest import StartBots, say
from tests.support.api import Api, next_telegram_id
from tests.support.fake_telegram import FakeBotApi


async def test_login_handshake_through_the_bot(
    api: Api, platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    start = await api.auth.StartTelegramLogin(pb.StartTelegramLoginRequest())
    stream = api.auth.WaitTelegramLogin(
        pb.WaitTelegramLoginRequest(handshake_token=start.handshake_token)
    ).__aiter__()
    assert (await asyncio.wait_for(stream.__anext__(), 5)).state == pb.HANDSHAKE_STATE_PENDING

    user_id = next_telegram_id()
    answer = await say(fake, token, user_id, f"/start {start.code}", language_code="fr")
    assert answer == "Vous êtes connecté. Vous pouvez retourner sur le site."

    async def confirmed() -> pb.WaitTelegramLoginResponse:
        async for update in stream:
            if update.state == pb.HANDSHAKE_STATE_CONFIRMED:
                return update
        raise AssertionError("the handshake was not confirmed")

    update = await asyncio.wait_for(confirmed(), 10)
    platform.secrets.issued.append(update.session.token)
    assert update.user.telegram_user_id == user_id
    assert update.user.display_name == "Test"
    me = await api.auth.GetMe(
        pb.GetMeRequest(), metadata=(("authorization", f"Bearer {update.session.token}"),)
    )
    assert me.user.telegram_user_id == user_id

    # The code is used: a second /start with it is refused politely.
    again = await say(fake, token, user_id, f"/start {start.code}")
    assert again == "This login link is invalid or has expired. Please start again on the website."


async def test_welcome_is_localized_with_english_fallback(
    platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    ru = await say(fake, token, next_telegram_id(), "/start", language_code="ru")
    assert ru.startswith("Здравствуйте! Я бот входа Switchboard.")
    de = await say(fake, token, next_telegram_id(), "/start", language_code="de")
    assert de.startswith("Hello! I am the Switchboard login bot.")
    none = await say(fake, token, next_telegram_id(), "hi", language_code=None)
    assert none == "I only understand /start. Open a link from the website to sign in."
    # The commands menu is set per language.
    menus = {
        c.params.get("language_code"): c.params["commands"] for c in fake.calls_of("setMyCommands")
    }
    assert menus[None][0] == {"command": "start", "description": "Start / sign in"}
    assert menus["fr"][0]["description"] == "Démarrer / se connecter"


async def test_unknown_and_malformed_codes_get_a_short_answer(
    platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    user_id = next_telegram_id()
    expected = "This login link is invalid or has expired. Please start again on the website."
    # Well-formed but unknown: the server says NOT_FOUND (HANDSHAKE_NOT_FOUND).
    assert await say(fake, token, user_id, "/start abcdefgh1234") == expected
    # Malformed: refused without a server call, same answer.
    assert await say(fake, token, user_id, "/start !!") == expected
    bind = await say(fake, token, user_id, "/start bind_x", language_code="ru")
    assert bind == "Ссылка подключения недействительна или устарела. Создайте новую в настройках."
    for params in fake.sent_messages(user_id):
        assert "Traceback" not in params["text"]
        assert "grpc" not in params["text"].lower()


async def test_server_down_becomes_a_short_message(
    platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    from server.devstack.embedded import free_port

    await start_bots(server_addr=f"127.0.0.1:{free_port()}", bot_rpc_timeout=2.0)
    answer = await say(fake, platform.secrets.login_bot_token, next_telegram_id(), "/start")
    assert answer == "The service is temporarily unavailable. Please try again in a minute."


async def test_throttling_answers_once_per_window(
    platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots(bot_throttle_rate=2, bot_throttle_window=30.0)
    token = platform.secrets.login_bot_token
    user_id = next_telegram_id()
    for _ in range(6):
        await fake.user_sends(token, user_id, "/start", language_code="fr")
    throttled = await fake.wait_for_message(
        user_id, lambda p: "trop vite" in p["text"], token=token, timeout=10
    )
    assert throttled["text"].startswith("Vous envoyez des messages trop vite.")
    await asyncio.sleep(1.5)  # let anything else arrive
    texts = [p["text"] for p in fake.sent_messages(user_id, token=token)]
    assert len(texts) == 3, texts
    assert sum("trop vite" in t for t in texts) == 1
    # Another user is not affected.
    other = await say(fake, token, next_telegram_id(), "/start")
    assert other.startswith("Hello!")


async def test_missing_service_token_is_a_config_error(
    platform: Platform, start_bots: StartBots
) -> None:
    from bots.runtime.app import ConfigError

    with pytest.raises(ConfigError, match="SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT"):
        await start_bots(environ={LOGIN.token_env: platform.secrets.login_bot_token})
    with pytest.raises(ConfigError, match="no bot token"):
        await start_bots(environ={})


async def test_act_as_needs_the_scope(api: Api, platform: Platform) -> None:
    """The bot's principal may act as users; a worker without the scope may not (server-side)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.GetMe(
            pb.GetMeRequest(),
            metadata=api.service(platform.secrets.plain_worker_token, act_as=next_telegram_id()),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_rejected_token_stops_with_one_clear_line_and_other_failures_do_not(
    platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    from bots.runtime.app import ConfigError

    token = platform.secrets.login_bot_token
    # A Bot API hiccup at start (setMyCommands) is logged; the bot still serves.
    fake.fail_next("setMyCommands", status=500)
    await start_bots()
    assert (await say(fake, token, next_telegram_id(), "/start")).startswith("Hello!")

    fake.revoke_token(token)
    with pytest.raises(ConfigError) as caught:
        await start_bots()
    assert str(caught.value) == (
        "bot login: Telegram rejected the token (SWITCHBOARD_LOGIN_BOT_TOKEN) on setMyCommands"
    )
    assert token not in str(caught.value)


async def test_answer_survives_a_telegram_429(
    platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    user_id = next_telegram_id()
    fake.fail_next("sendMessage", status=429, retry_after=1, chat_id=user_id)
    answer = await say(fake, token, user_id, "/start")
    assert answer.startswith("Hello!")
    attempts = [c for c in fake.calls_of("sendMessage") if c.params.get("chat_id") == user_id]
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].time - attempts[0].time >= 0.95  # retry_after honoured
