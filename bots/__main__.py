"""``python -m bots``: run every bot whose ``SWITCHBOARD_<NAME>_BOT_TOKEN`` is set.

Exits 2 with one line on stderr when no token is set or a setting is invalid; SIGINT/SIGTERM
stop the bots cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from contextlib import suppress

from pydantic import ValidationError

from bots.registry import BOTS
from bots.runtime.app import BotApp, ConfigError
from bots.settings import BotsSettings
from server.kernel import logs

log = logging.getLogger("switchboard.bots")


def _secrets(settings: BotsSettings, environ: Mapping[str, str]) -> list[str]:
    values = [environ.get(spec.token_env, "") for spec in BOTS]
    values += [environ.get(spec.service_token_env, "") for spec in BOTS]
    if settings.bot_webhook_secret is not None:
        values.append(settings.bot_webhook_secret.get_secret_value())
    return [v for v in values if v]


def _configure_logging(settings: BotsSettings, environ: Mapping[str, str]) -> None:
    logs.configure(settings.log_level, _secrets(settings, environ))
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)  # one line per update


async def _run(app: BotApp) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    waiter = asyncio.create_task(app.wait())
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            waiter.result()  # a polling loop died: raise
            return 1
        log.info("stopping the bots")
        return 0
    finally:
        for task in (waiter, stopper):
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
        await app.stop()


def main(environ: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    try:
        settings = BotsSettings()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        print(f"bots: invalid setting {where}: {error.get('msg')}", file=sys.stderr)
        return 2
    if not BotApp.enabled(BOTS, env):
        names = ", ".join(spec.token_env for spec in BOTS)
        print(f"bots: no bot token is set (set {names}); nothing to run", file=sys.stderr)
        return 2
    _configure_logging(settings, env)
    try:
        return asyncio.run(_run(BotApp(settings, BOTS, env)))
    except ConfigError as exc:
        print(f"bots: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
