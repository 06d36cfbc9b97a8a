"""Bots in-process and the real dispatcher as a child process, against this run's platform.

Both talk to Telegram through the fake Bot API (tests/support/fake_telegram.py).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bots.booking import SPEC as BOOKING
from bots.login import SPEC as LOGIN
from bots.runtime.app import BotApp
from bots.runtime.spec import BotSpec
from bots.settings import BotsSettings
from server.devstack._util import stop_child
from tests.support.fake_telegram import FakeBotApi
from tests.support.stack import ROOT, Secrets

if TYPE_CHECKING:
    from tests.conftest import Platform

HAS_DISPATCHER = importlib.util.find_spec("workers.dispatcher.__main__") is not None


def bot_tokens(secrets: Secrets, *specs: BotSpec) -> dict[str, str]:
    """The Telegram and service tokens of ``specs`` (the login and booking bots), by variable."""
    tokens = {
        LOGIN.name: (secrets.login_bot_token, secrets.login_bot_service_token),
        BOOKING.name: (secrets.booking_bot_token, secrets.booking_bot_service_token),
    }
    environ: dict[str, str] = {}
    for spec in specs:
        token, service_token = tokens[spec.name]
        environ[spec.token_env] = token
        environ[spec.service_token_env] = service_token
    return environ


@asynccontextmanager
async def running_bots(
    platform: Platform, fake: FakeBotApi, *specs: BotSpec, **settings: Any
) -> AsyncIterator[BotApp]:
    """A started BotApp running ``specs`` (polling every second, ``settings`` on top)."""
    app = BotApp(
        BotsSettings(
            server_addr=platform.grpc_addr,
            telegram_api_base=fake.base_url,
            bot_polling_timeout=1,
            **settings,
        ),
        specs,
        bot_tokens(platform.secrets, *specs),
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@contextmanager
def running_dispatcher(
    platform: Platform, telegram_api_base: str, log_path: Path, *bots: BotSpec, **extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m workers.dispatcher`` as a child (real senders, fast reports; the Telegram
    tokens of ``bots``; ``extra`` on top of its environment), its output appended to
    ``log_path``; SIGTERM at the end (killed when it does not stop in 15 s)."""
    if not HAS_DISPATCHER:
        pytest.skip("workers.dispatcher is not there yet")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SWITCHBOARD_ENV": "test",
        "SWITCHBOARD_CONFIG_DIR": str(ROOT / "configs"),
        "SWITCHBOARD_SERVER_ADDR": platform.grpc_addr,
        "SWITCHBOARD_SERVICE_TOKEN_DISPATCHER": platform.secrets.dispatcher_token,
        "SWITCHBOARD_NOTIFICATIONS_SENDER": "real",
        "SWITCHBOARD_TELEGRAM_API_BASE": telegram_api_base,
        "SWITCHBOARD_DISPATCHER_REPORT_INTERVAL_S": "0.05",
        **{bot.token_env: bot_tokens(platform.secrets, bot)[bot.token_env] for bot in bots},
        **extra,
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.dispatcher"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        stop_child(proc, signal.SIGTERM, 15)
