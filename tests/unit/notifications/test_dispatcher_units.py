"""The dispatcher's pure parts: outcome classification, settings, sender routing."""

from __future__ import annotations

import os
from pathlib import Path

import aiosmtplib
import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from switchboard.notifications.v1 import notifications_pb2 as pb

from server.config import Settings
from server.config import load as load_server_settings
from workers.dispatcher.main import build_router, secrets_of
from workers.dispatcher.senders import (
    PERMANENT,
    RETRYABLE,
    LogSender,
    TelegramSender,
    classify_smtp,
    classify_telegram,
)
from workers.dispatcher.settings import DispatcherSettings, bot_token_variable, bot_tokens

METHOD = SendMessage(chat_id=1, text="x")


@pytest.mark.parametrize(
    ("exc", "outcome", "code", "retry_after"),
    [
        (TelegramRetryAfter(METHOD, "Too Many Requests", 7), RETRYABLE, "telegram_429", 7.0),
        (TelegramForbiddenError(METHOD, "Forbidden: bot was blocked by the user"), PERMANENT, "telegram_403", 0),
        (TelegramBadRequest(METHOD, "Bad Request: chat not found"), PERMANENT, "telegram_chat_not_found", 0),
        (TelegramBadRequest(METHOD, "Bad Request: can't parse entities"), PERMANENT, "telegram_400", 0),
        (TelegramUnauthorizedError(METHOD, "Unauthorized"), RETRYABLE, "telegram_401", 0),
        (TelegramServerError(METHOD, "Internal Server Error"), RETRYABLE, "telegram_5xx", 0),
        (TelegramNetworkError(METHOD, "connection reset"), RETRYABLE, "telegram_network", 0),
        (TimeoutError(), RETRYABLE, "telegram_network", 0),
        (RuntimeError("?"), RETRYABLE, "telegram_unexpected", 0),
    ],
)  # fmt: skip
def test_telegram_failures(exc: BaseException, outcome: int, code: str, retry_after: float) -> None:
    result = classify_telegram(exc)
    assert (result.outcome, result.error, result.retry_after_s) == (outcome, code, retry_after)


def test_smtp_failures() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@b.c")]
    )
    deferred = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(451, "try later", "a@b.c")]
    )
    cases = [
        (aiosmtplib.SMTPConnectError("refused"), RETRYABLE, "smtp_connect"),
        (ConnectionRefusedError(), RETRYABLE, "smtp_connect"),
        (aiosmtplib.SMTPServerDisconnected("bye"), RETRYABLE, "smtp_connect"),
        (aiosmtplib.SMTPTimeoutError("slow"), RETRYABLE, "smtp_timeout"),
        (refused, PERMANENT, "smtp_recipient_refused"),
        (deferred, RETRYABLE, "smtp_recipient_deferred"),
        (aiosmtplib.SMTPResponseException(554, "rejected"), PERMANENT, "smtp_554"),
        (aiosmtplib.SMTPResponseException(421, "busy"), RETRYABLE, "smtp_421"),
        (aiosmtplib.SMTPAuthenticationError(535, "bad"), RETRYABLE, "smtp_auth"),
    ]
    for exc, outcome, code in cases:
        result = classify_smtp(exc)
        assert (result.outcome, result.error) == (outcome, code), exc


def test_error_codes_fit_the_contract() -> None:
    import re

    codes = [
        classify_telegram(TelegramRetryAfter(METHOD, "x", 1)).error,
        classify_smtp(aiosmtplib.SMTPResponseException(554, "x")).error,
    ]
    assert all(re.fullmatch(r"[a-z0-9_.]{1,64}", c) for c in codes)


def test_bot_tokens_from_the_environment() -> None:
    env = {
        "SWITCHBOARD_LOGIN_BOT_TOKEN": "1:abc",
        "SWITCHBOARD_SHOP_BOT_TOKEN": " 2:def ",
        "SWITCHBOARD_EMPTY_BOT_TOKEN": "",
        "SWITCHBOARD_SERVICE_TOKEN_DISPATCHER": "x" * 20,
        "OTHER_BOT_TOKEN": "3:ghi",
    }
    assert bot_tokens(env) == {"login": "1:abc", "shop": "2:def"}
    assert bot_token_variable("login") == "SWITCHBOARD_LOGIN_BOT_TOKEN"
    assert bot_token_variable("status-page") == "SWITCHBOARD_STATUS_PAGE_BOT_TOKEN"


# Dispatcher settings the server's Settings (extra="forbid", same configs/<env>.yaml) does not
# declare: secrets (never read from the YAML) and the address of the server to call (set per
# process in the environment; the server listens on grpc_addr).
_NOT_IN_SERVER_SETTINGS = {"smtp_password", "service_token_dispatcher", "server_addr"}


def test_sender_defaults_match_the_server_settings() -> None:
    shared = [
        "notifications_sender",
        "telegram_api_base",
        "telegram_api_local",
        "smtp_host",
        "smtp_port",
        "smtp_user",
        "smtp_starttls",
        "smtp_ca_file",
        "smtp_from",
        "smtp_timeout_s",
        "dispatcher_concurrency",
        "dispatcher_report_interval_s",
        "dispatcher_send_timeout_s",
        "dispatcher_rpc_timeout_s",
    ]
    for name in shared:
        assert (
            DispatcherSettings.model_fields[name].default == Settings.model_fields[name].default
        ), name


def test_every_dispatcher_setting_may_be_in_the_shared_yaml() -> None:
    yaml_fields = set(DispatcherSettings.model_fields) - _NOT_IN_SERVER_SETTINGS
    assert yaml_fields - set(Settings.model_fields) == set()
    for name in yaml_fields:  # same checks (bounds) on both sides
        assert (
            DispatcherSettings.model_fields[name].metadata == Settings.model_fields[name].metadata
        ), name


def test_the_server_loads_a_yaml_with_the_dispatcher_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in list(os.environ):
        if key.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SWITCHBOARD_PG_DSN", "postgresql://x@127.0.0.1/db")
    monkeypatch.setenv("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1/0")
    monkeypatch.setenv("SWITCHBOARD_DATA_KEY", "A" * 43)
    monkeypatch.setenv("SWITCHBOARD_CONFIG_DIR", str(tmp_path))
    (tmp_path / "dev.yaml").write_text(
        "smtp_ca_file: /etc/ssl/smtp-ca.pem\n"
        "dispatcher_concurrency: 8\n"
        "dispatcher_report_interval_s: 0.5\n"
        "dispatcher_send_timeout_s: 5\n"
        "dispatcher_rpc_timeout_s: 3\n"
        "dispatcher_name: worker-1\n"
    )
    settings = load_server_settings()
    assert settings.smtp_ca_file == "/etc/ssl/smtp-ca.pem"
    assert settings.dispatcher_concurrency == 8
    dispatcher = DispatcherSettings()
    assert (dispatcher.smtp_ca_file, dispatcher.dispatcher_name) == (
        "/etc/ssl/smtp-ca.pem",
        "worker-1",
    )


def test_settings_from_env_and_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_ENV", "test")
    monkeypatch.setenv("SWITCHBOARD_SERVER_ADDR", "10.0.0.1:50051")
    monkeypatch.setenv("SWITCHBOARD_SMTP_PASSWORD", "   ")
    monkeypatch.setenv("SWITCHBOARD_TELEGRAM_API_BASE", "http://127.0.0.1:9/")
    settings = DispatcherSettings()
    assert settings.notifications_sender == "log"  # from configs/test.yaml
    assert settings.server_addr == "10.0.0.1:50051"
    assert settings.smtp_password is None
    assert settings.telegram_api_base == "http://127.0.0.1:9"
    monkeypatch.setenv("SWITCHBOARD_TELEGRAM_API_BASE", "ftp://nope")
    with pytest.raises(ValueError, match="http"):
        DispatcherSettings()


async def test_router_by_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_ENV", "dev")
    env = {"SWITCHBOARD_LOGIN_BOT_TOKEN": "1:secret-token-value"}
    tg = pb.LeasedNotification(channel=pb.CHANNEL_TELEGRAM, bot="login")
    other = pb.LeasedNotification(channel=pb.CHANNEL_TELEGRAM, bot="shop")
    email = pb.LeasedNotification(channel=pb.CHANNEL_EMAIL)

    auto = build_router(DispatcherSettings(notifications_sender="auto"), env)
    assert isinstance(auto.sender(tg), TelegramSender)
    assert isinstance(auto.sender(other), LogSender)  # no token for that bot
    assert isinstance(auto.sender(email), LogSender)
    await auto.close()

    log = build_router(DispatcherSettings(notifications_sender="log"), env)
    assert isinstance(log.sender(tg), LogSender)
    await log.close()

    settings = DispatcherSettings(
        notifications_sender="real",
        smtp_password="pw-123456789",  # pragma: allowlist secret
        service_token_dispatcher="t" * 20,
    )
    assert set(secrets_of(settings, env)) == {"1:secret-token-value", "pw-123456789", "t" * 20}


async def test_telegram_sender_without_a_token_is_retryable() -> None:
    sender = TelegramSender({}, api_base="http://127.0.0.1:9")
    try:
        result = await sender.send(pb.LeasedNotification(channel=pb.CHANNEL_TELEGRAM, bot="x"))
    finally:
        await sender.close()
    assert (result.outcome, result.error) == (RETRYABLE, "telegram_no_token")
