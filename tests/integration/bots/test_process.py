"""`python -m bots` as a process: runs the bots whose token is set, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from bots.login import SPEC as LOGIN
from tests.conftest import Platform
from tests.support.api import next_telegram_id
from tests.support.fake_telegram import FakeBotApi
from tests.support.stack import ROOT


async def test_python_m_bots_serves_and_stops(
    platform: Platform, fake: FakeBotApi, workdir: Path
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SWITCHBOARD_SERVER_ADDR": platform.grpc_addr,
        "SWITCHBOARD_TELEGRAM_API_BASE": fake.base_url,
        "SWITCHBOARD_BOT_POLLING_TIMEOUT": "1",
        LOGIN.token_env: platform.secrets.login_bot_token,
        LOGIN.service_token_env: platform.secrets.login_bot_service_token,
    }
    log_path = workdir / "bots-process.log"
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
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
