"""Telegram Login Widget verification, against payloads signed independently by the tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from server.identity.model import (
    TelegramSignatureError,
    telegram_widget_hash,
    verify_telegram_widget,
)
from tests.support.telegram import signed_widget_payload

TOKEN = "123456:test-bot-token-for-unit-tests"
DAY = timedelta(hours=24)


def _fields(payload: dict[str, object]) -> dict[str, str]:
    return {k: str(v) for k, v in payload.items()}


def _now() -> datetime:
    return datetime.now(UTC)


def test_correctly_signed_payload_is_accepted() -> None:
    payload = signed_widget_payload(TOKEN, 42, first_name="Ann", last_name="Lee", username="ann")
    fields = _fields(payload)
    # The hash the tests signed independently is the one the server computes ...
    assert telegram_widget_hash(fields, TOKEN) == fields["hash"]
    # ... so the check passes (it returns None and raises on any problem) ...
    verify_telegram_widget(dict(fields), TOKEN, now=_now(), max_age=DAY)
    # ... and the acceptance is the signature's doing: the very same payload fails for another bot.
    with pytest.raises(TelegramSignatureError) as caught:
        verify_telegram_widget(dict(fields), TOKEN + "x", now=_now(), max_age=DAY)
    assert caught.value.reason == "TELEGRAM_HASH_MISMATCH"


@pytest.mark.parametrize("field", ["first_name", "id", "auth_date"])
def test_tampered_field_is_rejected(field: str) -> None:
    fields = _fields(signed_widget_payload(TOKEN, 42, first_name="Ann"))
    fields[field] = fields[field] + "1"
    with pytest.raises(TelegramSignatureError) as caught:
        verify_telegram_widget(fields, TOKEN, now=_now(), max_age=DAY)
    assert caught.value.reason == "TELEGRAM_HASH_MISMATCH"


def test_tampered_hash_and_other_bot_are_rejected() -> None:
    fields = _fields(signed_widget_payload(TOKEN, 42))
    fields["hash"] = ("0" if fields["hash"][0] != "0" else "1") + fields["hash"][1:]
    with pytest.raises(TelegramSignatureError):
        verify_telegram_widget(fields, TOKEN, now=_now(), max_age=DAY)
    other = _fields(signed_widget_payload("999:other-bot", 42))
    with pytest.raises(TelegramSignatureError):
        verify_telegram_widget(other, TOKEN, now=_now(), max_age=DAY)


def test_stale_auth_date_is_rejected() -> None:
    old = int(time.time()) - 25 * 3600
    fields = _fields(signed_widget_payload(TOKEN, 42, auth_date=old))
    with pytest.raises(TelegramSignatureError) as caught:
        verify_telegram_widget(fields, TOKEN, now=_now(), max_age=DAY)
    assert caught.value.reason == "TELEGRAM_AUTH_DATE_EXPIRED"


def test_future_auth_date_is_rejected() -> None:
    future = int(time.time()) + 3600
    fields = _fields(signed_widget_payload(TOKEN, 42, auth_date=future))
    with pytest.raises(TelegramSignatureError) as caught:
        verify_telegram_widget(fields, TOKEN, now=_now(), max_age=DAY)
    assert caught.value.reason == "TELEGRAM_AUTH_DATE_IN_FUTURE"
