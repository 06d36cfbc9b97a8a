"""`make dev` with a bot token: the newcomer's path, against the fake Bot API.

The real dev stack (embedded PostgreSQL and Redis, migrations, the server, the dispatcher and the
bots as child processes, dev service tokens generated into the data dir), no Envoy. A user logs
in through the login bot, binds the chat, and receives the notification the dispatcher sends.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from switchboard.identity.v1 import channels_pb2 as cpb
from switchboard.identity.v1 import channels_pb2_grpc as cpb_grpc
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.identity.v1 import identity_pb2_grpc as pb_grpc

from server.devstack.stack import DevStack, worker_command
from tests.support.devstack import dev_environ, dev_settings
from tests.support.fake_telegram import FakeBotApi

pytestmark = pytest.mark.e2e

BOT_TOKEN = "424242:dev-stack-test-token-abcdefghijklmnop"


@pytest.fixture
async def dev(tmp_path: Path, fake: FakeBotApi) -> AsyncIterator[DevStack]:
    if worker_command("dispatcher") is None:
        pytest.skip("workers.dispatcher is not there yet")
    settings = dev_settings(tmp_path, startup_timeout=60.0)
    environ = dev_environ(
        SWITCHBOARD_LOGIN_BOT_TOKEN=BOT_TOKEN,
        SWITCHBOARD_LOGIN_BOT_USERNAME="dev_login_bot",
        SWITCHBOARD_TELEGRAM_API_BASE=fake.base_url,
        SWITCHBOARD_BOT_POLLING_TIMEOUT="1",
    )
    stack = DevStack(settings, environ=environ, out=io.StringIO())
    try:
        await asyncio.to_thread(stack.start)
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


async def test_make_dev_runs_the_login_bot_and_the_dispatcher(
    dev: DevStack, fake: FakeBotApi
) -> None:
    assert list(dev.workers) == ["dispatcher", "bots"]
    summary = dev.summary()
    assert "Dispatcher" in summary
    assert "logs/bots.log" in summary
    token_file = dev.settings.data_dir / "service_tokens" / "login-bot"
    assert token_file.exists()

    async with grpc.aio.insecure_channel(
        dev.settings.grpc_addr, options=[("grpc.enable_http_proxy", 0)]
    ) as channel:
        auth = pb_grpc.AuthServiceStub(channel)
        start = await auth.StartTelegramLogin(pb.StartTelegramLoginRequest())
        assert start.deep_link == f"https://t.me/dev_login_bot?start={start.code}"

        chat = 5_550_001
        await fake.user_sends(BOT_TOKEN, chat, f"/start {start.code}", language_code="en")
        answer = await fake.wait_for_message(chat, timeout=30)
        assert answer["text"] == "You are signed in. You can go back to the website now."
        session = ""
        async for update in auth.WaitTelegramLogin(
            pb.WaitTelegramLoginRequest(handshake_token=start.handshake_token)
        ):
            if update.state == pb.HANDSHAKE_STATE_CONFIRMED:
                session = update.session.token
        assert session
        metadata = (("authorization", f"Bearer {session}"),)

        channels = cpb_grpc.ChannelServiceStub(channel)
        binding = await channels.StartTelegramChannelBinding(
            cpb.StartTelegramChannelBindingRequest(), metadata=metadata
        )
        mark = fake.mark()
        await fake.user_sends(BOT_TOKEN, chat, f"/start bind_{binding.code}")
        notice = await fake.wait_for_message(
            chat,
            lambda p: "linked to your Switchboard account" in p["text"],
            since=mark,
            timeout=30,
        )
        assert notice["text"] == "This chat is now linked to your Switchboard account."
    assert dev.dead_child() is None
