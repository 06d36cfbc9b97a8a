"""Process entry: settings, logging (secrets scrubbed), senders, the gRPC channel, signals.

Exits 2 with one line on stderr when a setting is invalid or the service token is missing, and
1 when the server refuses the token (UNAUTHENTICATED / PERMISSION_DENIED). SIGTERM / SIGINT stop
it gracefully (in-hand notifications are sent and reported, exit 0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

from pydantic import ValidationError
from switchboard.notifications.v1 import notifications_pb2_grpc as pb_grpc

from client.channel import connect
from server.kernel import logs
from workers.dispatcher.dispatcher import Dispatcher, DispatcherRefused
from workers.dispatcher.senders import (
    LogSender,
    Router,
    Sender,
    SmtpConfig,
    SmtpSender,
    TelegramSender,
)
from workers.dispatcher.settings import DispatcherSettings, bot_tokens

log = logging.getLogger("switchboard.dispatcher")


def secrets_of(settings: DispatcherSettings, environ: Mapping[str, str]) -> list[str]:
    values = list(bot_tokens(environ).values())
    if settings.service_token_dispatcher is not None:
        values.append(settings.service_token_dispatcher.get_secret_value())
    if settings.smtp_password is not None:
        values.append(settings.smtp_password.get_secret_value())
    return values


def build_router(settings: DispatcherSettings, environ: Mapping[str, str]) -> Router:
    """The senders the configured mode asks for."""
    logger = LogSender()
    if settings.notifications_sender == "log":
        return Router(logger, logger)
    telegram = TelegramSender(
        bot_tokens(environ),
        api_base=settings.telegram_api_base,
        is_local=settings.telegram_api_local,
        timeout_s=settings.dispatcher_send_timeout_s,
    )
    if settings.notifications_sender == "auto":
        # dev: Telegram for bots with a token, everything else only logged.
        return Router(telegram, logger, fallback=logger)
    email: Sender = SmtpSender(
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            user=settings.smtp_user,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            starttls=settings.smtp_starttls,
            ca_file=settings.smtp_ca_file,
            sender=settings.smtp_from,
            timeout_s=settings.smtp_timeout_s,
        )
    )
    return Router(telegram, email)


async def run(settings: DispatcherSettings, environ: Mapping[str, str]) -> int:
    assert settings.service_token_dispatcher is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    router = build_router(settings, environ)
    channel = connect(
        settings.server_addr,
        service_token=settings.service_token_dispatcher.get_secret_value(),
        default_timeout=settings.dispatcher_rpc_timeout_s,
        options=[("grpc.enable_http_proxy", 0)],
    )
    dispatcher = Dispatcher(
        pb_grpc.NotificationServiceStub(channel),
        router,
        name=settings.dispatcher_name,
        concurrency=settings.dispatcher_concurrency,
        report_interval_s=settings.dispatcher_report_interval_s,
        rpc_timeout_s=settings.dispatcher_rpc_timeout_s,
    )
    log.info(
        "dispatcher started",
        extra={
            "server_addr": settings.server_addr,
            "sender": settings.notifications_sender,
            "dispatcher": settings.dispatcher_name,
            "bots": sorted(bot_tokens(environ)),
        },
    )
    try:
        await dispatcher.run(stop)
    except DispatcherRefused as exc:
        log.error(
            "the server refused the dispatcher: check SWITCHBOARD_SERVICE_TOKEN_DISPATCHER and "
            "the dispatcher principal's notifications.dispatch scope",
            extra={"code": str(exc)},
        )
        return 1
    finally:
        await router.close()
        await channel.close()
    log.info("dispatcher stopped", extra={**vars(dispatcher.stats)})
    return 0


def main(environ: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    try:
        settings = DispatcherSettings()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        print(f"dispatcher: invalid setting {where}: {error.get('msg')}", file=sys.stderr)
        return 2
    if settings.service_token_dispatcher is None:
        print("dispatcher: SWITCHBOARD_SERVICE_TOKEN_DISPATCHER is not set", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, secrets_of(settings, env))
    return asyncio.run(run(settings, env))
