"""`python -m bots` as a process: runs the bots whose token is set, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from switchboard.identity.v1 import channels_pb2 as cpb
from switchboard.identity.v1 import channels_pb2_grpc as cpb_grpc
from switchboard.identity.v1 import identity_pb2 as pb

from bots.login import SPEC as LOGIN
from tests.conftest import Platform
from tests.integration.bots.conftest import say
from tests.support.api import Api, next_telegram_id
from tests.support.fake_telegram import FakeBotApi
from tests.support.stack import ROOT


async def _start_bots(
    platform: Platform, fake: FakeBotApi, log_path: Path, **extra: str
) -> asyncio.subprocess.Process:
    """``python -m bots`` with the login bot, its output (JSON lines) into `log_path`."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SWITCHBOARD_SERVER_ADDR": platform.grpc_addr,
        "SWITCHBOARD_TELEGRAM_API_BASE": fake.base_url,
        "SWITCHBOARD_BOT_POLLING_TIMEOUT": "1",
        LOGIN.token_env: platform.secrets.login_bot_token,
        LOGIN.service_token_env: platform.secrets.login_bot_service_token,
        **extra,
    }
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_python_m_bots_serves_and_stops(
    platform: Platform, fake: FakeBotApi, workdir: Path
) -> None:
    log_path = workdir / "bots-process.log"
    proc = await _start_bots(platform, fake, log_path)
    token = platform.secrets.login_bot_token
    try:
        user = next_telegram_id()
        await fake.user_sends(token, user, "/start", language_code="ru")
        answer = await fake.wait_for_message(user, timeout=30)
        assert answer["text"].startswith("Здравствуйте!")
        mark = fake.mark()
        await fake.user_sends(token, user, "/start zzzzzzzz", language_code="ru")
        refused = await fake.wait_for_message(user, since=mark, timeout=10)
        assert refused["text"].startswith("Ссылка для входа недействительна")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    assert rc == 0, log_path.read_text()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in lines]
    assert any(m.startswith("bots running (polling): login") for m in messages), messages
    assert "stopping the bots" in messages
    assert not [e for e in lines if e["level"] == "error"], lines


async def test_no_code_or_token_in_the_bots_log(
    api: Api, platform: Platform, fake: FakeBotApi, workdir: Path
) -> None:
    """A login handshake and a chat binding through the process, logging at DEBUG: neither
    code, nor the bot token, the service token or the session issued is in its log."""
    log_path = workdir / "bots-process-secrets.log"
    proc = await _start_bots(platform, fake, log_path, SWITCHBOARD_LOG_LEVEL="debug")
    token = platform.secrets.login_bot_token
    try:
        # Login: the website starts a handshake, the user confirms it in the bot.
        start = await api.auth.StartTelegramLogin(pb.StartTelegramLoginRequest())
        stream = api.auth.WaitTelegramLogin(
            pb.WaitTelegramLoginRequest(handshake_token=start.handshake_token)
        )
        user = next_telegram_id()
        answer = await say(fake, token, user, f"/start {start.code}", timeout=30)
        assert answer == "You are signed in. You can go back to the website now."

        async def confirmation() -> pb.WaitTelegramLoginResponse:
            async for update in stream:
                if update.state == pb.HANDSHAKE_STATE_CONFIRMED:
                    return update
            raise AssertionError("the handshake was not confirmed")

        confirmed = await asyncio.wait_for(confirmation(), 10)
        session = confirmed.session.token
        platform.secrets.issued.append(session)
        assert confirmed.user.telegram_user_id == user

        # Binding: the signed-in user links this chat through the bot.
        channels = cpb_grpc.ChannelServiceStub(api.channel)
        binding = await channels.StartTelegramChannelBinding(
            cpb.StartTelegramChannelBindingRequest(),
            metadata=(("authorization", f"Bearer {session}"),),
        )
        answer = await say(fake, token, user, f"/start bind_{binding.code}")
        assert answer == "This chat is now connected: your notifications will arrive here."
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    text = await asyncio.to_thread(log_path.read_text, errors="replace")
    assert rc == 0, text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(e["msg"].startswith("bots running (polling): login") for e in lines), lines
    assert any(e["level"] == "debug" for e in lines)  # it did log, and at DEBUG
    needles = {
        "login code": start.code,
        "handshake token": start.handshake_token,
        "binding code": binding.code,
        "bot token": token,
        "service token": platform.secrets.login_bot_service_token,
        "session token": session,
    }
    assert all(len(value) >= 8 for value in needles.values()), needles.keys()
    assert [name for name, value in needles.items() if value in text] == []
