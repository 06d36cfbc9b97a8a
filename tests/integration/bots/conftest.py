"""Bots running in-process against the real server and the fake Bot API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from bots.login import SPEC as LOGIN
from bots.runtime.app import BotApp
from bots.runtime.spec import BotSpec
from bots.settings import BotsSettings
from tests.conftest import Platform
from tests.support.fake_telegram import FakeBotApi

StartBots = Callable[..., Awaitable[BotApp]]


def bot_environ(platform: Platform, **extra: str) -> dict[str, str]:
    return {
        LOGIN.token_env: platform.secrets.login_bot_token,
        LOGIN.service_token_env: platform.secrets.login_bot_service_token,
        **extra,
    }


@pytest.fixture
async def start_bots(platform: Platform, fake: FakeBotApi) -> AsyncIterator[StartBots]:
    """``await start_bots(specs=..., environ=..., **settings)``: a started BotApp (stopped at
    the end of the test)."""
    apps: list[BotApp] = []

    async def start(
        specs: Sequence[BotSpec] = (LOGIN,),
        environ: dict[str, str] | None = None,
        **settings: Any,
    ) -> BotApp:
        values: dict[str, Any] = {
            "server_addr": platform.grpc_addr,
            "telegram_api_base": fake.base_url,
            "bot_polling_timeout": 1,
            "bot_rpc_timeout": 5.0,
            "bot_throttle_rate": 50,
            "bot_throttle_window": 1.0,
        }
        values.update(settings)
        app = BotApp(
            BotsSettings(**values),
            specs,
            environ if environ is not None else bot_environ(platform),
        )
        apps.append(app)
        await app.start()
        return app

    try:
        yield start
    finally:
        for app in apps:
            await app.stop()


async def say(
    fake: FakeBotApi,
    token: str,
    chat_id: int,
    text: str,
    *,
    language_code: str | None = "en",
    timeout: float = 10,
) -> str:
    """The user writes `text` to the bot; returns the bot's first answer."""
    mark = fake.mark()
    await fake.user_sends(token, chat_id, text, language_code=language_code)
    answer = await fake.wait_for_message(chat_id, token=token, since=mark, timeout=timeout)
    return str(answer["text"])
