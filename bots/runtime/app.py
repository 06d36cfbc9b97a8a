"""Runs several bots in one process: one aiogram Dispatcher (with the bot's router and the
runtime middlewares) and one Bot per :class:`BotSpec`, fed by long polling or by webhooks.

Polling (dev): every bot's dispatcher polls ``getUpdates`` concurrently (any webhook is deleted
first). Webhook (deploy): one aiohttp server; bot ``<name>`` listens on ``/webhook/<name>``,
Telegram is told ``setWebhook(<SWITCHBOARD_BOT_WEBHOOK_URL>/<name>, secret_token=...)`` and
every request without the right ``X-Telegram-Bot-Api-Secret-Token`` header gets 403.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetUpdates, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import BotCommand
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bots.runtime.i18n import LANGUAGES, RUNTIME_MESSAGES, Catalog
from bots.runtime.middlewares import PlatformMiddleware, RoleMiddleware, ThrottlingMiddleware
from bots.runtime.platform import PlatformClient, UserCache
from bots.runtime.spec import BotSpec
from bots.runtime.throttling import Throttle
from bots.settings import OFFICIAL_API_BASE, BotsSettings

__all__ = ["WEBHOOK_PATH", "BotApp", "ConfigError", "RunningBot", "build_dispatcher"]

log = logging.getLogger("switchboard.bots")

WEBHOOK_PATH = "/webhook/{name}"


class ConfigError(RuntimeError):
    """A missing or invalid setting (one line, no traceback)."""


@dataclass
class RunningBot:
    spec: BotSpec
    bot: Bot
    dispatcher: Dispatcher
    catalog: Catalog
    task: asyncio.Task[None] | None = None


def catalog_for(spec: BotSpec) -> Catalog:
    return Catalog(RUNTIME_MESSAGES, spec.messages)


def build_dispatcher(
    spec: BotSpec, settings: BotsSettings, client: PlatformClient, catalog: Catalog
) -> Dispatcher:
    """A dispatcher with the runtime middlewares and `spec`'s router."""
    dispatcher = Dispatcher(name=spec.name)
    throttle = Throttle(settings.bot_throttle_rate, settings.bot_throttle_window)
    dispatcher.update.outer_middleware(ThrottlingMiddleware(throttle, catalog))
    dispatcher.update.outer_middleware(
        PlatformMiddleware(client, UserCache(settings.bot_user_cache_ttl), catalog, spec.reasons)
    )
    roles = RoleMiddleware()
    dispatcher.message.middleware(roles)
    dispatcher.callback_query.middleware(roles)
    dispatcher.include_router(spec.router())
    return dispatcher


class RetryAfterMiddleware(BaseRequestMiddleware):
    """Honours Telegram's 429 ``retry_after`` for the bot's own answers: waits and retries (up to
    `max_retries` times, each wait at most `max_wait` seconds); longer waits give up (the answer
    would come too late to be useful). ``getUpdates`` is left to the polling loop's backoff."""

    def __init__(self, max_wait: float = 5.0, max_retries: int = 2) -> None:
        self.max_wait = max_wait
        self.max_retries = max_retries

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                attempt += 1
                if (
                    isinstance(method, GetUpdates)
                    or attempt > self.max_retries
                    or exc.retry_after > self.max_wait
                ):
                    raise
                log.warning(
                    "Telegram asked to retry %s after %ss", method.__api_method__, exc.retry_after
                )
                await asyncio.sleep(exc.retry_after)


def make_bot(token: str, settings: BotsSettings) -> Bot:
    if settings.telegram_api_base == OFFICIAL_API_BASE:
        bot = Bot(token)
    else:
        api = TelegramAPIServer.from_base(settings.telegram_api_base, is_local=True)
        bot = Bot(token, session=AiohttpSession(api=api))
    bot.session.middleware(RetryAfterMiddleware())
    return bot


class _SecretRequestHandler(SimpleRequestHandler):
    """aiogram's handler, answering a wrong secret token with 403 (aiogram says 401)."""

    async def handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not self.verify_secret(header, self.bot):
            return web.Response(status=403, text="Forbidden")
        return await super().handle(request)

    __call__ = handle


@dataclass
class BotApp:
    """The bots of one process. ``await start()`` returns once they are receiving updates;
    ``await stop()`` stops them and closes every connection."""

    settings: BotsSettings
    specs: Sequence[BotSpec]
    environ: Mapping[str, str]
    bots: list[RunningBot] = field(default_factory=list)
    clients: dict[str, PlatformClient] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    webhook_port: int = 0

    @staticmethod
    def enabled(specs: Sequence[BotSpec], environ: Mapping[str, str]) -> list[BotSpec]:
        """The bots whose token is set."""
        return [spec for spec in specs if spec.token(environ)]

    def _client(self, spec: BotSpec) -> PlatformClient:
        client = self.clients.get(spec.principal)
        if client is None:
            token = self.environ.get(spec.service_token_env, "").strip()
            if not token:
                raise ConfigError(
                    f"bot {spec.name}: {spec.service_token_env} is not set "
                    f"(the service token of principal {spec.principal})"
                )
            client = PlatformClient(
                self.settings.server_addr, token, timeout=self.settings.bot_rpc_timeout
            )
            self.clients[spec.principal] = client
        return client

    async def start(self) -> None:
        enabled = self.enabled(self.specs, self.environ)
        if not enabled:
            raise ConfigError(
                "no bot token is set: set one of "
                + ", ".join(spec.token_env for spec in self.specs)
            )
        try:
            for spec in enabled:
                token = spec.token(self.environ) or ""
                catalog = catalog_for(spec)
                client = self._client(spec)
                running = RunningBot(
                    spec,
                    make_bot(token, self.settings),
                    build_dispatcher(spec, self.settings, client, catalog),
                    catalog,
                )
                self.bots.append(running)
                await self._telegram(running, "setMyCommands", self._set_commands(running))
            if self.settings.bot_mode == "webhook":
                await self._start_webhooks()
            else:
                for running in self.bots:
                    await self._telegram(running, "deleteWebhook", running.bot.delete_webhook())
                    running.task = asyncio.create_task(
                        self._poll(running), name=f"bot-{running.spec.name}"
                    )
        except BaseException:
            await self.stop()
            raise
        log.info(
            "bots running (%s): %s",
            self.settings.bot_mode,
            ", ".join(r.spec.name for r in self.bots),
        )

    @staticmethod
    async def _telegram(
        running: RunningBot, what: str, call: Coroutine[Any, Any, Any], *, fatal: bool = False
    ) -> None:
        """A start-up Bot API call: a rejected token stops the process (one clear line); other
        failures are logged, since polling retries Telegram with backoff anyway."""
        try:
            await call
        except TelegramUnauthorizedError:
            raise ConfigError(
                f"bot {running.spec.name}: Telegram rejected the token "
                f"({running.spec.token_env}) on {what}"
            ) from None
        except (TelegramAPIError, TelegramNetworkError) as exc:
            if fatal:
                raise ConfigError(f"bot {running.spec.name}: {what} failed: {exc}") from None
            log.warning("bot %s: %s failed: %s", running.spec.name, what, exc)

    async def _set_commands(self, running: RunningBot) -> None:
        if not running.spec.commands:
            return
        for language in LANGUAGES:
            commands = [
                BotCommand(command=command, description=running.catalog.text(language, key))
                for command, key in running.spec.commands.items()
            ]
            await running.bot.set_my_commands(
                commands, language_code=None if language == "en" else language
            )

    async def _poll(self, running: RunningBot) -> None:
        await running.dispatcher.start_polling(
            running.bot,
            handle_signals=False,
            close_bot_session=False,
            polling_timeout=self.settings.bot_polling_timeout,
        )

    async def _start_webhooks(self) -> None:
        secret = self.settings.bot_webhook_secret
        if secret is None:  # BotsSettings requires it in webhook mode
            raise ConfigError("SWITCHBOARD_BOT_WEBHOOK_SECRET is required in webhook mode")
        app = web.Application()
        base = self.settings.bot_webhook_url.rstrip("/")
        for running in self.bots:
            path = WEBHOOK_PATH.format(name=running.spec.name)
            handler = _SecretRequestHandler(
                running.dispatcher, running.bot, secret_token=secret.get_secret_value()
            )
            handler.register(app, path=path)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, port = self.settings.webhook_listen()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.webhook_port = sockets[0].getsockname()[1] if sockets else port
        for running in self.bots:
            await running.dispatcher.emit_startup(bot=running.bot, dispatcher=running.dispatcher)
            await self._telegram(
                running,
                "setWebhook",
                running.bot.set_webhook(
                    f"{base}/{running.spec.name}",
                    secret_token=secret.get_secret_value(),
                    allowed_updates=running.dispatcher.resolve_used_update_types(),
                ),
                fatal=True,
            )

    async def wait(self) -> None:
        """Until a polling task ends (an error) or the app is cancelled."""
        tasks = [r.task for r in self.bots if r.task is not None]
        if tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        else:
            await asyncio.Event().wait()

    async def stop(self) -> None:
        for running in self.bots:
            if running.task is not None and not running.task.done():
                with suppress(RuntimeError):  # polling not started yet
                    await running.dispatcher.stop_polling()
                running.task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await running.task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            for running in self.bots:
                with suppress(Exception):
                    await running.dispatcher.emit_shutdown(
                        bot=running.bot, dispatcher=running.dispatcher
                    )
        for running in self.bots:
            with suppress(Exception):
                await running.bot.session.close()
        for client in self.clients.values():
            await client.close()
        self.bots.clear()
        self.clients.clear()
