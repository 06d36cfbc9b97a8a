"""Notifications' pure rules: validation, templates, pacing plans, backoff, error codes."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from server.identity.model import LANGUAGES
from server.notifications.model import (
    TEMPLATES,
    Channel,
    InvalidNotice,
    Notice,
    Pacing,
    ToEmail,
    ToTelegramChat,
    ToUser,
    backoff_s,
    decode_params,
    encode_params,
    plan_slots,
    render,
    validate_notice,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_templates_others_rely_on_exist_in_every_language() -> None:
    wanted = {
        "identity.email_code": ({Channel.EMAIL}, {"code", "ttl_minutes"}),
        "identity.telegram_channel_bound": ({Channel.TELEGRAM}, set()),
        "identity.email_verified": ({Channel.EMAIL}, set()),
        "notifications.admin_message": ({Channel.TELEGRAM, Channel.EMAIL}, {"text"}),
    }
    for key, (channels, params) in wanted.items():
        template = TEMPLATES[key]
        assert template.channels == channels
        assert template.params == params
        assert set(template.texts) == set(LANGUAGES)
        for language in LANGUAGES:
            values = {p: "X" for p in params}
            for channel in channels:
                rendered = render(key, language, channel, values)
                assert rendered.body
                if channel is Channel.EMAIL:
                    assert rendered.subject


def test_render_falls_back_to_english_and_escapes_only_telegram() -> None:
    params = {"text": "<script>&"}
    tg = render("notifications.admin_message", "de", Channel.TELEGRAM, params)
    assert tg.language == "en"
    assert tg.body == "&lt;script&gt;&amp;"
    mail = render("notifications.admin_message", "ru", Channel.EMAIL, params)
    assert mail.body == "<script>&"
    assert mail.language == "ru"
    code = render(
        "identity.email_code", "fr", Channel.EMAIL, {"code": "000111", "ttl_minutes": "7"}
    )
    assert "000111" in code.subject
    assert "7 minutes" in code.body
    # A template's own text is never interpreted: braces in params stay literal.
    odd = render("notifications.admin_message", "en", Channel.EMAIL, {"text": "{code} {0}"})
    assert odd.body == "{code} {0}"


@pytest.mark.parametrize(
    "notice",
    [
        Notice(ToTelegramChat(1), Channel.EMAIL, "notifications.admin_message", {"text": "x"}, "k"),
        Notice(ToEmail("a@b.c"), Channel.TELEGRAM, "notifications.admin_message", {"text": "x"}, "k"),
        Notice(ToEmail("not-an-address"), Channel.EMAIL, "identity.email_verified", {}, "k"),
        Notice(ToUser(uuid4()), Channel.EMAIL, "identity.telegram_channel_bound", {}, "k"),
        Notice(ToUser(uuid4()), Channel.EMAIL, "identity.email_code", {"code": "1"}, "k"),
        Notice(ToUser(uuid4()), Channel.EMAIL, "missing.template", {}, "k"),
        Notice(ToTelegramChat(1, language="de"), Channel.TELEGRAM, "identity.telegram_channel_bound", {}, "k"),
        Notice(ToTelegramChat(1, bot=""), Channel.TELEGRAM, "identity.telegram_channel_bound", {}, "k"),
        Notice(ToUser(uuid4()), Channel.EMAIL, "identity.email_verified", {}, ""),
        Notice(ToUser(uuid4()), Channel.EMAIL, "identity.email_verified", {}, "k" * 201),
    ],
)  # fmt: skip
def test_invalid_notices(notice: Notice) -> None:
    with pytest.raises(InvalidNotice):
        validate_notice(notice)


def test_params_round_trip() -> None:
    params = {"text": 'é\n"quoted"', "n": "1"}
    assert decode_params(encode_params(params)) == params
    with pytest.raises(ValueError, match="object"):
        decode_params(b"[1]")


def _plan(keys: list[str | None], **kwargs: object) -> object:
    defaults: dict[str, object] = {
        "now": T0,
        "global_next": T0 - timedelta(hours=1),
        "chat_next": {},
        "pacing": Pacing(spacing_s=0.1, chat_spacing_s=1.0, ahead_s=1.0),
        "capacity": 100,
    }
    defaults.update(kwargs)
    return plan_slots(keys, **defaults)  # type: ignore[arg-type]


def test_plan_spaces_global_slots_within_the_window() -> None:
    keys: list[str | None] = [f"tg:login:{i}" for i in range(30)]
    plan = plan_slots(
        keys,
        now=T0,
        global_next=T0 - timedelta(hours=1),
        chat_next={},
        pacing=Pacing(spacing_s=0.1, chat_spacing_s=1.0, ahead_s=1.0),
        capacity=100,
    )
    times = sorted(plan.assigned.values())
    assert len(times) == 11  # slots at 0.0, 0.1, ... 1.0
    assert times[0] == T0
    assert all(b - a >= timedelta(seconds=0.1) for a, b in itertools.pairwise(times))
    assert plan.next_slot == T0 + timedelta(seconds=1.1)
    assert plan.deferred == {}


def test_plan_continues_from_the_global_cursor_and_respects_capacity() -> None:
    cursor = T0 + timedelta(seconds=0.5)
    plan = plan_slots(
        [None] * 10,
        now=T0,
        global_next=cursor,
        chat_next={},
        pacing=Pacing(0.1, 1.0, 1.0),
        capacity=3,
    )
    assert sorted(plan.assigned.values()) == [cursor + timedelta(seconds=0.1 * i) for i in range(3)]


def test_plan_gives_a_chat_one_slot_and_defers_the_rest() -> None:
    key = "tg:login:1"
    plan = plan_slots(
        [key, key, "tg:login:2", None],
        now=T0,
        global_next=T0,
        chat_next={"tg:login:2": T0 + timedelta(seconds=0.35)},
        pacing=Pacing(0.1, 1.0, 1.0),
        capacity=100,
    )
    assert plan.assigned[0] == T0
    assert 1 in plan.deferred  # same chat: one at a time
    # Chat 2 is not free before 0.35 s: it waits rather than leave slots 0.1-0.3 unused.
    assert plan.deferred[2] == T0 + timedelta(seconds=0.35)
    assert plan.assigned[3] == T0 + timedelta(seconds=0.1)
    assert plan.chat_next[key] == T0 + timedelta(seconds=1.0)
    assert plan.next_slot == T0 + timedelta(seconds=0.2)  # no slot skipped


def test_plan_takes_a_chat_that_is_free_by_the_next_slot() -> None:
    plan = plan_slots(
        [None, None, "tg:login:2"],
        now=T0,
        global_next=T0,
        chat_next={"tg:login:2": T0 + timedelta(seconds=0.15)},
        pacing=Pacing(0.1, 1.0, 1.0),
        capacity=100,
    )
    assert plan.assigned[2] == T0 + timedelta(seconds=0.2)


def test_plan_defers_busy_chats_and_chats_not_free_within_the_window() -> None:
    later = T0 + timedelta(seconds=5)
    plan = plan_slots(
        ["tg:a:1", "tg:a:2"],
        now=T0,
        global_next=T0,
        chat_next={"tg:a:2": later},
        pacing=Pacing(0.1, 1.0, 1.0),
        capacity=100,
        busy=frozenset({"tg:a:1"}),
    )
    assert plan.assigned == {}
    assert plan.deferred[1] == later
    assert 0 in plan.deferred


def test_plan_never_breaks_the_limits_over_many_rounds() -> None:
    rng = random.Random(7)
    pacing = Pacing.from_limits(30, 1.0, 1.0)
    assert pacing.spacing_s > 1 / 30
    assert pacing.chat_spacing_s > 1.0
    now, cursor = T0, T0
    chats: dict[str, datetime] = {}
    sends: list[tuple[datetime, str]] = []
    for _ in range(200):
        keys: list[str | None] = [f"tg:b:{rng.randrange(200)}" for _ in range(40)]
        plan = plan_slots(
            keys, now=now, global_next=cursor, chat_next=chats, pacing=pacing, capacity=64
        )
        for index, when in plan.assigned.items():
            key = keys[index]
            assert key is not None
            sends.append((when, key))
        chats.update(plan.chat_next)
        cursor = plan.next_slot
        now += timedelta(seconds=rng.uniform(0.05, 0.6))
    times = sorted(t for t, _ in sends)
    assert all(b - a >= timedelta(seconds=1 / 30) for a, b in itertools.pairwise(times))
    per_chat: dict[str, list[datetime]] = {}
    for when, key in sends:
        per_chat.setdefault(key, []).append(when)
    for stamps in per_chat.values():
        stamps.sort()
        assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(stamps))
    # ...and uses most of the global rate (the share the benchmark measures end to end).
    span = (times[-1] - times[0]).total_seconds()
    assert len(times) / span >= 0.9 * 30


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        values = [backoff_s(attempt, 2.0, 60.0, rng) for _ in range(50)]
        assert all(1.0 <= v <= ceiling for v in values)
        assert len(set(values)) > 1
