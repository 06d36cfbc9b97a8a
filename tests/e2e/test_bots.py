"""End to end: a user binds a Telegram chat through the login bot and receives a notification.

Real server, the bots in-process, the real dispatcher (``python -m workers.dispatcher``) as a
child process, and the fake Bot API standing in for Telegram on both sides.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from switchboard.identity.v1 import channels_pb2 as cpb
from switchboard.identity.v1 import channels_pb2_grpc as cpb_grpc

from bots.login import SPEC as LOGIN
from bots.runtime.app import BotApp
from bots.settings import BotsSettings
from tests.conftest import Platform
from tests.support.api import Api, next_telegram_id
from tests.support.bots import running_bots, running_dispatcher
from tests.support.fake_telegram import FakeBotApi

pytestmark = pytest.mark.e2e


@pytest.fixture
async def bots(platform: Platform, fake: FakeBotApi) -> AsyncIterator[BotApp]:
    async with running_bots(platform, fake, LOGIN) as app:
        yield app


@pytest.fixture
def dispatcher(
    platform: Platform, fake: FakeBotApi, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log_path = workdir / "bots-dispatcher.log"
    with running_dispatcher(platform, fake.base_url, log_path, LOGIN) as proc:
        yield proc


async def _say(fake: FakeBotApi, token: str, chat_id: int, text: str) -> str:
    mark = fake.mark()
    await fake.user_sends(token, chat_id, text, language_code="en")
    answer = await fake.wait_for_message(chat_id, token=token, since=mark, timeout=10)
    return str(answer["text"])


async def test_user_binds_a_chat_through_the_bot_and_receives_a_notification(
    api: Api,
    platform: Platform,
    fake: FakeBotApi,
    bots: BotApp,
    dispatcher: subprocess.Popen[bytes],
    workdir: Path,
) -> None:
    token = platform.secrets.login_bot_token
    chat = next_telegram_id()
    session = await api.login(chat)
    channels = cpb_grpc.ChannelServiceStub(api.channel)

    # The user picks Russian in the bot; the notification will be rendered in it.
    assert await _say(fake, token, chat, "/language ru") == "Язык: русский."
    started = await channels.StartTelegramChannelBinding(
        cpb.StartTelegramChannelBindingRequest(), metadata=session.metadata
    )
    mark = fake.mark()
    answer = await _say(fake, token, chat, f"/start bind_{started.code}")
    assert answer == "Чат подключён: уведомления будут приходить сюда."

    # The server queued identity.telegram_channel_bound in the binding's transaction; the
    # dispatcher delivers it through the login bot's token to that chat.
    try:
        notice = await fake.wait_for_message(
            chat,
            lambda p: "Switchboard" in str(p["text"]),
            token=token,
            since=mark,
            timeout=20,
        )
    except TimeoutError as exc:
        log = (workdir / "bots-dispatcher.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"{exc}; dispatcher exit code {dispatcher.poll()}, log tail:\n{log}")
    assert notice["text"] == "Этот чат теперь привязан к вашему аккаунту Switchboard."
    assert dispatcher.poll() is None
    listed = await channels.ListChannels(cpb.ListChannelsRequest(), metadata=session.metadata)
    assert [c.telegram_chat_id for c in listed.channels if c.telegram_chat_id] == [chat]

    # Exactly once, even after the bot confirmed the same link twice.
    await _say(fake, token, chat, f"/start bind_{started.code}")
    await fake.wait_for_call("getUpdates", since=fake.mark(), timeout=5)
    bound = [p for p in fake.sent_messages(chat, token=token) if p["text"] == notice["text"]]
    assert len(bound) == 1


async def test_bot_refuses_when_the_server_refuses(
    api: Api, platform: Platform, fake: FakeBotApi
) -> None:
    """A bot configured with a plain service token (no act-as scope): the server refuses every
    call it makes for a user, and the bot tells the user so, in the user's language."""
    settings = BotsSettings(
        server_addr=platform.grpc_addr, telegram_api_base=fake.base_url, bot_polling_timeout=1
    )
    environ = {
        LOGIN.token_env: platform.secrets.login_bot_token,
        LOGIN.service_token_env: platform.secrets.plain_worker_token,
    }
    token = platform.secrets.login_bot_token
    chat = next_telegram_id()
    session = await api.login(chat)
    channels = cpb_grpc.ChannelServiceStub(api.channel)
    started = await channels.StartTelegramChannelBinding(
        cpb.StartTelegramChannelBindingRequest(), metadata=session.metadata
    )
    app = BotApp(settings, (LOGIN,), environ)
    await app.start()
    try:
        mark = fake.mark()
        await fake.user_sends(token, chat, f"/start bind_{started.code}", language_code="ru")
        answer = await fake.wait_for_message(chat, token=token, since=mark, timeout=10)
    finally:
        await app.stop()
    assert answer["text"] == "Извините, у вас нет прав на это действие."  # noqa: RUF001
    assert len(fake.sent_messages(chat, token=token, since=mark)) == 1
    # Refused by the server: the chat was not bound.
    listed = await channels.ListChannels(cpb.ListChannelsRequest(), metadata=session.metadata)
    assert [c.telegram_chat_id for c in listed.channels if c.telegram_chat_id] == []
