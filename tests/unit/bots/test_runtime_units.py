"""Throttling, languages, error messages and settings of the bot runtime (no I/O)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from pydantic import ValidationError

from bots.login import SPEC as LOGIN
from bots.login.messages import MESSAGES as LOGIN_MESSAGES
from bots.login.messages import REASONS as LOGIN_REASONS
from bots.runtime.errors import explain
from bots.runtime.i18n import LANGUAGES, RUNTIME_MESSAGES, Catalog, pick_language
from bots.runtime.spec import BotSpec, env_name
from bots.runtime.throttling import Throttle
from bots.settings import OFFICIAL_API_BASE, BotsSettings

# --- throttling ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_allows_rate_per_window_and_notifies_once() -> None:
    clock = Clock()
    throttle = Throttle(3, 10.0, clock=clock)
    assert [throttle.hit(1).allowed for _ in range(3)] == [True, True, True]
    first = throttle.hit(1)
    assert not first.allowed
    assert first.notify
    assert first.retry_after == pytest.approx(10.0)
    clock.now += 4
    later = throttle.hit(1)
    assert not later.allowed
    assert not later.notify  # at most one answer per window
    assert later.retry_after_seconds == 6
    assert throttle.hit(2).allowed  # per user
    clock.now += 6  # the window is over
    again = throttle.hit(1)
    assert again.allowed
    assert [throttle.hit(1).allowed for _ in range(3)] == [True, True, False]
    assert throttle.hit(1).notify is False


def test_throttle_memory_is_bounded() -> None:
    clock = Clock()
    throttle = Throttle(1, 1.0, clock=clock, max_keys=100)
    for user in range(1000):
        throttle.hit(user)
        clock.now += 0.001
    assert len(throttle) <= 100
    clock.now += 10
    throttle.hit(5000)
    assert len(throttle) <= 100


def test_throttle_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="rate"):
        Throttle(0, 1.0)
    with pytest.raises(ValueError, match="window"):
        Throttle(1, 0)


# --- languages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "telegram", "expected"),
    [
        ("fr", "ru", "fr"),  # the user's choice on the platform wins
        ("en", "ru", "en"),  # English chosen explicitly wins too
        ("", "ru-RU", "ru"),  # never chose (empty): Telegram's language
        (None, "fr_CA", "fr"),
        ("", "de", "en"),  # never chose, unsupported client language: English
        ("en", "de", "en"),
        (None, None, "en"),
        ("xx", "yy", "en"),
        ("ru", None, "ru"),
    ],
)
def test_pick_language(platform: str | None, telegram: str | None, expected: str) -> None:
    assert pick_language(platform, telegram) == expected


def test_catalog_falls_back_to_english_then_to_the_key(caplog: pytest.LogCaptureFixture) -> None:
    catalog = Catalog({"en": {"only.en": "Hi {name}", "both": "EN"}, "fr": {"both": "FR"}})
    assert catalog.text("fr", "both") == "FR"
    assert catalog.text("fr", "only.en", name="A") == "Hi A"
    assert catalog.text("de", "both") == "EN"
    assert catalog.text(None, "both") == "EN"
    with caplog.at_level(logging.WARNING):
        assert catalog.text("fr", "missing") == "missing"
        assert catalog.text("en", "only.en") == "Hi {name}"  # a missing parameter never crashes
    with pytest.raises(ValueError, match="unsupported language"):
        Catalog({"de": {"x": "y"}})


@pytest.mark.parametrize("messages", [RUNTIME_MESSAGES, LOGIN_MESSAGES])
def test_every_catalog_is_complete_in_every_language(messages: dict[str, dict[str, str]]) -> None:
    english = set(messages["en"])
    for language in LANGUAGES:
        assert set(messages[language]) == english, language
        for key, template in messages[language].items():
            # Same parameters in every language.
            assert sorted(_fields(template)) == sorted(_fields(messages["en"][key])), key


def _fields(template: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def test_login_reasons_have_messages() -> None:
    for key in LOGIN_REASONS.values():
        assert key in LOGIN_MESSAGES["en"]


# --- server errors -> messages ---------------------------------------------------------------


@dataclass
class FakeRpcError:
    """The three accessors the runtime reads of grpc.aio.AioRpcError."""

    status: grpc.StatusCode
    message: str = "details"
    trailers: list[tuple[str, str | bytes]] = field(default_factory=list)

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str | None:
        return self.message

    def trailing_metadata(self) -> list[tuple[str, str | bytes]]:
        return self.trailers


def rpc_error(
    code: grpc.StatusCode,
    reason: str = "",
    *,
    retry_delay: float | None = None,
    request_id: str = "req-1",
) -> FakeRpcError:
    status = status_pb2.Status(code=code.value[0], message="server says no")
    if reason:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="x"))
    if retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_delay * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    trailers: list[tuple[str, str | bytes]] = [
        ("grpc-status-details-bin", status.SerializeToString()),
        ("x-request-id", request_id),
    ]
    return FakeRpcError(code, trailers=trailers)


@pytest.mark.parametrize(
    ("code", "reason", "key"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED", "error.permission_denied"),
        (grpc.StatusCode.UNAUTHENTICATED, "", "error.permission_denied"),
        (grpc.StatusCode.PERMISSION_DENIED, "USER_DELETED", "error.user_deleted"),
        (grpc.StatusCode.NOT_FOUND, "HANDSHAKE_NOT_FOUND", "login.code_not_found"),
        (grpc.StatusCode.NOT_FOUND, "SOMETHING_ELSE", "error.not_found"),
        (grpc.StatusCode.ALREADY_EXISTS, "TELEGRAM_CHAT_BOUND_ELSEWHERE", "bind.elsewhere"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELDS", "error.invalid_argument"),
        (grpc.StatusCode.UNAVAILABLE, "", "error.unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", "error.unavailable"),
        (grpc.StatusCode.FAILED_PRECONDITION, "X", "error.failed_precondition"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", "error.rate_limited_later"),
        (grpc.StatusCode.INTERNAL, "INTERNAL", "error.internal"),
        (grpc.StatusCode.UNKNOWN, "", "error.internal"),
    ],
)
def test_error_keys(code: grpc.StatusCode, reason: str, key: str) -> None:
    assert explain(rpc_error(code, reason), LOGIN_REASONS).key == key


def test_rate_limit_message_carries_the_delay() -> None:
    explained = explain(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "X", retry_delay=2.2))
    assert explained.key == "error.rate_limited"
    assert explained.params == {"seconds": 3}
    text = Catalog(RUNTIME_MESSAGES).text("fr", explained.key, **explained.params)
    assert text == "Trop de tentatives. Réessayez dans 3 s."


def test_internal_errors_show_only_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="switchboard.bots.errors"):
        explained = explain(rpc_error(grpc.StatusCode.INTERNAL, "INTERNAL", request_id="abc123"))
    text = Catalog(RUNTIME_MESSAGES).text("en", explained.key, **explained.params)
    assert text == "Something went wrong on our side (reference abc123). Please try again later."
    assert "server says no" not in text
    assert "abc123" in caplog.text  # logged with the request id
    bare = explain(FakeRpcError(grpc.StatusCode.INTERNAL))  # no trailers at all
    assert Catalog(RUNTIME_MESSAGES).text("en", bare.key, **bare.params) == (
        "Something went wrong on our side. Please try again later."
    )


# --- settings and specs ----------------------------------------------------------------------


def test_spec_environment_names() -> None:
    assert LOGIN.token_env == "SWITCHBOARD_LOGIN_BOT_TOKEN"
    assert LOGIN.service_token_env == "SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT"
    assert env_name("my-shop_bot") == "MY_SHOP_BOT"
    assert LOGIN.token({"SWITCHBOARD_LOGIN_BOT_TOKEN": "  "}) is None
    assert LOGIN.token({"SWITCHBOARD_LOGIN_BOT_TOKEN": "1:abc"}) == "1:abc"
    with pytest.raises(ValueError, match="bot name"):
        BotSpec(name="Bad Name", principal="x", router=LOGIN.router)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWITCHBOARD_SERVER_ADDR", "SWITCHBOARD_GRPC_ADDR", "SWITCHBOARD_BOT_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SWITCHBOARD_TELEGRAM_API_BASE", raising=False)
    defaults = BotsSettings()
    assert defaults.server_addr == "127.0.0.1:50051"
    assert defaults.telegram_api_base == OFFICIAL_API_BASE
    assert defaults.bot_mode == "polling"

    monkeypatch.setenv("SWITCHBOARD_GRPC_ADDR", "10.0.0.1:50051")
    assert BotsSettings().server_addr == "10.0.0.1:50051"
    monkeypatch.setenv("SWITCHBOARD_SERVER_ADDR", "server:50051")
    monkeypatch.setenv("SWITCHBOARD_TELEGRAM_API_BASE", "http://127.0.0.1:8081/")
    monkeypatch.setenv("SWITCHBOARD_BOT_THROTTLE_RATE", "7")
    settings = BotsSettings()
    assert settings.server_addr == "server:50051"
    assert settings.telegram_api_base == "http://127.0.0.1:8081"
    assert settings.bot_throttle_rate == 7


def test_webhook_mode_needs_url_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_BOT_MODE", "webhook")
    with pytest.raises(ValidationError, match="WEBHOOK_URL"):
        BotsSettings()
    monkeypatch.setenv("SWITCHBOARD_BOT_WEBHOOK_URL", "https://bots.example.com/tg")
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET"):
        BotsSettings()
    monkeypatch.setenv("SWITCHBOARD_BOT_WEBHOOK_SECRET", "has spaces!")
    with pytest.raises(ValidationError, match="A-Z"):
        BotsSettings()
    monkeypatch.setenv("SWITCHBOARD_BOT_WEBHOOK_SECRET", "Good_secret-1")
    settings = BotsSettings()
    assert settings.bot_webhook_secret is not None
    assert "Good_secret-1" not in repr(settings)  # a SecretStr
    assert settings.webhook_listen() == ("127.0.0.1", 8081)


# --- acting stubs ----------------------------------------------------------------------------


class _RecordingChannel:
    """Captures what the acting channel hands to the shared channel's multicallables."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object, list[tuple[str, str]]]] = []

    def unary_unary(self, method: str, *args: object, **kwargs: object) -> object:
        def call(request: object, *, metadata: object = None, **kw: object) -> object:
            assert metadata is not None
            self.seen.append((method, request, list(metadata)))  # type: ignore[call-overload]
            return "response"

        return call


def test_acting_channel_adds_the_user_header_and_keeps_the_callers_metadata() -> None:
    from typing import cast

    import grpc.aio

    from bots.runtime.platform import _ActingChannel

    shared = _RecordingChannel()
    acting = _ActingChannel(cast(grpc.aio.Channel, shared), 42)
    call = acting.unary_unary("/svc/M")
    assert call("req") == "response"
    assert call("req", metadata=(("x-request-id", "r1"),)) == "response"
    assert shared.seen[0] == ("/svc/M", "req", [("x-telegram-user-id", "42")])
    assert shared.seen[1][2] == [("x-request-id", "r1"), ("x-telegram-user-id", "42")]
    with pytest.raises(ValueError, match="positive"):
        _ActingChannel(cast(grpc.aio.Channel, shared), 0)


def test_the_bots_languages_are_the_servers() -> None:
    from bots.runtime import i18n
    from server.identity import model

    assert (i18n.LANGUAGES, i18n.DEFAULT_LANGUAGE) == (model.LANGUAGES, model.DEFAULT_LANGUAGE)
