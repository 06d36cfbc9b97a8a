"""The outbox additions the booking domain relies on: the user-via-bot recipient, not_before,
and the booking.* templates (pure rules; the SQL side is in tests/integration/notifications)."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from server.identity.model import LANGUAGES
from server.notifications.model import (
    TEMPLATES,
    Channel,
    InvalidNotice,
    Notice,
    ToUser,
    ToUserViaBot,
    render,
    validate_notice,
)

BOOKING_TEMPLATES = {
    "booking.confirmed": {"master", "service", "when"},
    "booking.created": {"client", "service", "when"},
    "booking.cancelled_by_client": {"client", "service", "when"},
    "booking.cancelled_by_master": {"master", "service", "when", "reason"},
    "booking.reminder": {"master", "service", "when"},
}

PARAMS = {
    "master": "Алексей",
    "client": "Иван <b>",
    "service": "Стрижка",
    "when": "25.11.2026 14:00",
    "reason": "Заболел & не приду",
}


def notice(**changes: object) -> Notice:
    fields: dict[str, object] = {
        "recipient": ToUserViaBot(uuid4(), "booking", "ru"),
        "channel": Channel.TELEGRAM,
        "template": "booking.confirmed",
        "params": PARAMS,
        "dedup_key": "booking:1:confirmed",
    }
    fields.update(changes)
    return Notice(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", sorted(BOOKING_TEMPLATES))
def test_booking_templates_take_the_agreed_params_in_every_language(key: str) -> None:
    template = TEMPLATES[key]
    assert template.params == BOOKING_TEMPLATES[key]
    assert template.channels == {Channel.TELEGRAM, Channel.EMAIL}
    assert set(template.texts) == set(LANGUAGES)
    for language in LANGUAGES:
        subject, body = template.texts[language]
        # Every placeholder is a declared param (a typo would render empty).
        used = {
            name
            for text in (subject, body)
            for _, name, _, _ in string.Formatter().parse(text)
            if name is not None
        }
        assert used <= template.params, (key, language, used - template.params)
        assert template.params <= used | {"when"}, (key, language)
        for channel in template.channels:
            rendered = render(key, language, channel, PARAMS)
            assert rendered.language == language
            assert PARAMS["service"] in rendered.body
            assert "25.11.2026 14:00" in rendered.body
            if channel is Channel.EMAIL:
                assert rendered.subject


def test_booking_texts_are_russian_and_params_are_escaped_for_telegram() -> None:
    confirmed = render("booking.confirmed", "ru", Channel.TELEGRAM, PARAMS)
    assert confirmed.body.startswith("Вы записаны.")
    assert "Алексей" in confirmed.body
    created = render("booking.created", "ru", Channel.TELEGRAM, PARAMS)
    assert "Иван &lt;b&gt;" in created.body
    cancelled = render("booking.cancelled_by_master", "ru", Channel.TELEGRAM, PARAMS)
    assert "Причина: Заболел &amp; не приду" in cancelled.body
    by_mail = render("booking.cancelled_by_master", "fr", Channel.EMAIL, PARAMS)
    assert "Motif : Заболел & не приду" in by_mail.body


def test_a_user_via_bot_notice_is_valid() -> None:
    validate_notice(notice())
    validate_notice(notice(recipient=ToUserViaBot(uuid4(), "login")))
    validate_notice(notice(not_before=datetime(2026, 11, 25, 11, tzinfo=UTC)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channel": Channel.EMAIL}, "telegram channel"),
        ({"recipient": ToUserViaBot(uuid4(), "")}, "bot must be"),
        ({"recipient": ToUserViaBot(uuid4(), "Booking Bot")}, "bot must be"),
        ({"recipient": ToUserViaBot(uuid4(), "booking", "de")}, "default_language"),
        ({"not_before": datetime(2026, 11, 25, 11)}, "aware"),
        ({"template": "booking.unknown"}, "unknown template"),
        ({"params": {"master": "A", "service": "B"}}, "needs params"),
    ],
)
def test_invalid_booking_notices(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidNotice, match=message):
        validate_notice(notice(**changes))


def test_not_before_defaults_to_none_and_other_recipients_still_validate() -> None:
    plain = notice(recipient=ToUser(uuid4()), channel=Channel.EMAIL)
    assert plain.not_before is None
    validate_notice(plain)
