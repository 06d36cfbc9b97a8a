"""Senders: Telegram (aiogram ``Bot``), SMTP (aiosmtplib) and a log-only one.

A sender turns one leased notification into a :class:`SendResult`; it never raises for a
delivery problem, and it never logs a body, a subject, parameters or a token (only ids).
Error codes are short and fixed (``telegram_429``, ``smtp_connect``...), never a server's text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import LinkPreviewOptions
from switchboard.notifications.v1 import notifications_pb2 as pb

log = logging.getLogger("switchboard.dispatcher")

DELIVERED = pb.DELIVERY_OUTCOME_DELIVERED
RETRYABLE = pb.DELIVERY_OUTCOME_RETRYABLE_FAILURE
PERMANENT = pb.DELIVERY_OUTCOME_PERMANENT_FAILURE


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: pb.DeliveryOutcome.ValueType
    error: str = ""
    retry_after_s: float = 0.0


OK = SendResult(DELIVERED)


class Sender(Protocol):
    async def send(self, item: pb.LeasedNotification) -> SendResult: ...

    async def close(self) -> None: ...


class LogSender:
    """Dev and tests: logs that it would send (ids only) and reports delivered."""

    async def send(self, item: pb.LeasedNotification) -> SendResult:
        log.info(
            "notification sent (log sender)",
            extra={
                "notification_id": item.id,
                "channel": pb.Channel.Name(item.channel),
                "template": item.template,
                "attempt": item.attempt,
            },
        )
        return OK

    async def close(self) -> None:
        return None


def classify_telegram(exc: BaseException) -> SendResult:
    """Map an aiogram failure to a retryable or permanent outcome."""
    if isinstance(exc, TelegramRetryAfter):
        return SendResult(RETRYABLE, "telegram_429", float(exc.retry_after))
    if isinstance(exc, TelegramForbiddenError):  # blocked by the user, kicked from the group
        return SendResult(PERMANENT, "telegram_403")
    if isinstance(exc, TelegramMigrateToChat):  # the group became a supergroup: new chat id
        return SendResult(PERMANENT, "telegram_chat_migrated")
    if isinstance(exc, TelegramBadRequest):
        if "chat not found" in exc.message.lower():
            return SendResult(PERMANENT, "telegram_chat_not_found")
        return SendResult(PERMANENT, "telegram_400")
    if isinstance(exc, TelegramNotFound):
        return SendResult(PERMANENT, "telegram_404")
    if isinstance(exc, TelegramUnauthorizedError):  # a wrong token: fixable by configuration
        return SendResult(RETRYABLE, "telegram_401")
    if isinstance(exc, TelegramServerError):
        return SendResult(RETRYABLE, "telegram_5xx")
    if isinstance(exc, TelegramNetworkError):
        return SendResult(RETRYABLE, "telegram_network")
    if isinstance(exc, TelegramAPIError):
        return SendResult(RETRYABLE, "telegram_error")
    if isinstance(exc, asyncio.TimeoutError | OSError):
        return SendResult(RETRYABLE, "telegram_network")
    return SendResult(RETRYABLE, "telegram_unexpected")


class TelegramSender:
    """One aiohttp session for every bot; one ``Bot`` per bot name with its token."""

    def __init__(
        self,
        tokens: Mapping[str, str],
        *,
        api_base: str,
        is_local: bool = False,
        timeout_s: float = 20.0,
    ) -> None:
        self._tokens = dict(tokens)
        self._session = AiohttpSession(api=TelegramAPIServer.from_base(api_base, is_local=is_local))
        self._bots: dict[str, Bot] = {}
        self._timeout = timeout_s

    def has_bot(self, name: str) -> bool:
        return name in self._tokens

    def _bot(self, name: str) -> Bot | None:
        bot = self._bots.get(name)
        if bot is None:
            token = self._tokens.get(name)
            if token is None:
                return None
            bot = self._bots[name] = Bot(token, session=self._session)
        return bot

    async def send(self, item: pb.LeasedNotification) -> SendResult:
        bot = self._bot(item.bot)
        if bot is None:
            # SWITCHBOARD_<BOT>_BOT_TOKEN is not set here: maybe on another dispatcher.
            return SendResult(RETRYABLE, "telegram_no_token")
        try:
            await bot.send_message(
                chat_id=item.telegram_chat_id,
                text=item.body,
                parse_mode="HTML",
                link_preview_options=LinkPreviewOptions(is_disabled=item.disable_link_preview),
                request_timeout=int(max(1, self._timeout)),
            )
        except Exception as exc:
            return classify_telegram(exc)
        return OK

    async def close(self) -> None:
        await self._session.close()


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    user: str = ""
    password: str | None = None
    starttls: bool = False
    #: A PEM file of the CAs to trust for STARTTLS ("" : the system's CAs).
    ca_file: str = ""
    sender: str = "Switchboard <noreply@localhost>"
    timeout_s: float = 10.0


def classify_smtp(exc: BaseException) -> SendResult:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        if codes and all(500 <= c < 600 for c in codes):
            return SendResult(PERMANENT, "smtp_recipient_refused")
        return SendResult(RETRYABLE, "smtp_recipient_deferred")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SendResult(RETRYABLE, "smtp_auth")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return SendResult(RETRYABLE, "smtp_connect")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError):
        return SendResult(RETRYABLE, "smtp_timeout")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 500 <= exc.code < 600:
            return SendResult(PERMANENT, f"smtp_{exc.code}")
        return SendResult(RETRYABLE, f"smtp_{exc.code}" if exc.code > 0 else "smtp_error")
    if isinstance(exc, OSError):
        return SendResult(RETRYABLE, "smtp_connect")
    return SendResult(RETRYABLE, "smtp_unexpected")


class SmtpSender:
    """One SMTP session per message (simple and robust; fine at notification volumes)."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    async def send(self, item: pb.LeasedNotification) -> SendResult:
        config = self._config
        message = EmailMessage()
        message["From"] = config.sender
        message["To"] = item.email_address
        message["Subject"] = item.subject
        message["Content-Language"] = item.language or "en"
        message.set_content(item.body)
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.user or None,
                password=config.password if config.user else None,
                start_tls=config.starttls,
                use_tls=False,
                cert_bundle=config.ca_file or None,
                timeout=config.timeout_s,
            )
        except Exception as exc:
            return classify_smtp(exc)
        return OK

    async def close(self) -> None:
        return None


class Router:
    """Picks the sender of a notification by channel (and, in auto mode, by bot token)."""

    def __init__(
        self,
        telegram: Sender,
        email: Sender,
        *,
        fallback: Sender | None = None,
    ) -> None:
        self._telegram = telegram
        self._email = email
        self._fallback = fallback

    def sender(self, item: pb.LeasedNotification) -> Sender:
        if item.channel == pb.CHANNEL_TELEGRAM:
            if (
                self._fallback is not None
                and isinstance(self._telegram, TelegramSender)
                and not self._telegram.has_bot(item.bot)
            ):
                return self._fallback
            return self._telegram
        return self._email

    async def close(self) -> None:
        for sender in {
            id(s): s for s in (self._telegram, self._email, self._fallback) if s
        }.values():
            await sender.close()
