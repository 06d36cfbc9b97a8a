"""Email codes and binding codes: generation, keyed hashing, expiry, attempts, request limits."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from server.identity import model
from server.identity.model import CodePurpose, CodeVerdict, EmailCode

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
KEY = model.email_code_key(b"k" * 32)


def code_row(code: str = "123456", **changes: object) -> EmailCode:
    code_id = uuid4()
    row = EmailCode(
        id=code_id,
        email="a@example.com",
        purpose=CodePurpose.LOGIN,
        user_id=None,
        code_hash=model.hash_email_code(KEY, code_id, code),
        attempts=0,
        max_attempts=5,
        create_time=NOW - timedelta(minutes=1),
        expire_time=NOW + timedelta(minutes=9),
        consume_time=None,
        lock_time=None,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def test_codes_are_six_digits_and_vary() -> None:
    codes = [model.new_email_code() for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9]{6}", c) for c in codes)
    assert len(set(codes)) > 1990
    # Leading zeros are kept: every first digit shows up.
    assert set(Counter(c[0] for c in codes)) == set("0123456789")


def test_hash_is_keyed_and_bound_to_the_row() -> None:
    code_id = uuid4()
    digest = model.hash_email_code(KEY, code_id, "123456")
    assert len(digest) == 32
    assert digest == model.hash_email_code(KEY, code_id, "123456")
    assert digest != model.hash_email_code(KEY, uuid4(), "123456"), "same code, other row"
    assert digest != model.hash_email_code(model.email_code_key(b"x" * 32), code_id, "123456")
    assert digest != model.hash_email_code(KEY, code_id, "123457")
    assert model.email_code_key(b"k" * 32) != b"k" * 32, "the data key itself is never used"


def test_right_code_is_accepted() -> None:
    assert model.judge_email_code(code_row(), "123456", KEY, NOW) is CodeVerdict.ACCEPTED


def test_wrong_code_counts_and_the_last_attempt_locks() -> None:
    assert model.judge_email_code(code_row(), "000000", KEY, NOW) is CodeVerdict.WRONG
    fourth = code_row(attempts=3)
    assert model.judge_email_code(fourth, "000000", KEY, NOW) is CodeVerdict.WRONG
    fifth = code_row(attempts=4)
    assert model.judge_email_code(fifth, "000000", KEY, NOW) is CodeVerdict.LOCKED_NOW
    assert fifth.attempts_left == 1


def test_locked_code_refuses_even_the_right_code() -> None:
    locked = code_row(attempts=5, lock_time=NOW)
    assert model.judge_email_code(locked, "123456", KEY, NOW) is CodeVerdict.LOCKED
    assert locked.attempts_left == 0


def test_expired_code_is_refused_before_comparing() -> None:
    expired = code_row(expire_time=NOW)
    assert model.judge_email_code(expired, "123456", KEY, NOW) is CodeVerdict.EXPIRED
    assert model.judge_email_code(expired, "000000", KEY, NOW) is CodeVerdict.EXPIRED
    almost = code_row(expire_time=NOW + timedelta(seconds=1))
    assert model.judge_email_code(almost, "123456", KEY, NOW) is CodeVerdict.ACCEPTED


def test_used_or_missing_code() -> None:
    used = code_row(consume_time=NOW - timedelta(seconds=5))
    assert model.judge_email_code(used, "123456", KEY, NOW) is CodeVerdict.USED
    assert model.judge_email_code(None, "123456", KEY, NOW) is CodeVerdict.USED


def test_a_code_hashed_with_another_key_never_matches() -> None:
    row = code_row()
    other = model.email_code_key(b"o" * 32)
    assert model.judge_email_code(row, "123456", other, NOW) is CodeVerdict.WRONG


@pytest.mark.parametrize(
    ("ages_s", "expected"),
    [
        ([], 0.0),
        ([30], 30.0),  # a minute between codes
        ([60], 0.0),
        ([61, 200, 400, 800], 0.0),  # four in the hour: one more fits
        ([61, 200, 400, 800, 1000], 2600.0),  # five: wait for the oldest to leave the hour
        ([61, 200, 400, 800, 3700], 0.0),  # the oldest is out of the window already
        ([10, 200, 400, 800, 1000], 2600.0),  # both rules: the longer wait wins
    ],
)
def test_request_wait(ages_s: list[float], expected: float) -> None:
    recent = [NOW - timedelta(seconds=a) for a in ages_s]
    wait = model.code_request_wait_s(NOW, recent, min_interval_s=60, max_per_hour=5)
    assert wait == pytest.approx(expected)


def test_addresses_are_normalized_and_masked() -> None:
    assert model.normalize_email("  Ann.Lee@Example.COM ") == "ann.lee@example.com"
    assert model.mask_email("ann.lee@example.com") == "a***@example.com"
    assert model.mask_email("broken") == "***"


def test_binding_codes() -> None:
    codes = {model.new_binding_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert re.fullmatch(r"[A-Za-z0-9]{20}", code)
        assert len(model.BIND_PREFIX + code) <= 64  # Telegram's /start parameter limit
        assert model.strip_bind_prefix(model.BIND_PREFIX + code) == code
        assert model.strip_bind_prefix(code) == code
