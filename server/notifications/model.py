"""Notifications' pure types and rules: recipients, notices, templates, backoff. No I/O."""

from __future__ import annotations

import html
import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from server.identity.model import DEFAULT_LANGUAGE, LANGUAGES
from server.kernel.errors import ERROR_DOMAIN

DOMAIN = f"notifications.{ERROR_DOMAIN}"

PARAMS_PURPOSE = b"notifications:params"
MAX_DEDUP_KEY = 200
# As identity_telegram_channels.bot allows.
BOT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class Channel(StrEnum):
    TELEGRAM = "telegram"
    EMAIL = "email"


class Status(StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DELIVERED = "delivered"
    DEAD = "dead"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class ToUser:
    """A platform user: resolved at lease time to their confirmed channel of the kind."""

    user_id: UUID


@dataclass(frozen=True, slots=True)
class ToTelegramChat:
    chat_id: int
    bot: str = "login"
    language: str = DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True)
class ToEmail:
    address: str
    language: str = DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True)
class ToUserViaBot:
    """A platform user in their private chat with ``bot``, resolved at lease time.

    The chat is the user's Telegram user id (the private chat a bot shares with a user has
    that id); a user without one gets the notice like ``ToUser`` (their confirmed Telegram
    channel). Language: the user's own, else ``default_language``.
    """

    user_id: UUID
    bot: str
    default_language: str = "en"


Recipient = ToUser | ToUserViaBot | ToTelegramChat | ToEmail


@dataclass(frozen=True, slots=True)
class Notice:
    """What a domain enqueues, in its own transaction, through ``repository.enqueue``."""

    recipient: Recipient
    channel: Channel
    template: str
    params: Mapping[str, str] = field(default_factory=dict)
    dedup_key: str = ""
    # Not leased before this instant (aware); None: due at once. A reminder, say.
    not_before: datetime | None = None


class InvalidNotice(ValueError):
    """A notice that can never be delivered (a programming error of the enqueuing domain)."""


def validate_notice(notice: Notice) -> None:
    if not notice.dedup_key or len(notice.dedup_key) > MAX_DEDUP_KEY:
        raise InvalidNotice(f"dedup_key must be 1..{MAX_DEDUP_KEY} characters")
    channel = Channel(notice.channel)
    if notice.template not in TEMPLATES:
        raise InvalidNotice(f"unknown template {notice.template!r}")
    if channel not in TEMPLATES[notice.template].channels:
        raise InvalidNotice(f"template {notice.template!r} has no {channel} form")
    missing = TEMPLATES[notice.template].params - set(notice.params)
    if missing:
        raise InvalidNotice(f"template {notice.template!r} needs params {sorted(missing)}")
    if notice.not_before is not None and notice.not_before.utcoffset() is None:
        raise InvalidNotice("not_before must be an aware datetime")
    recipient = notice.recipient
    if isinstance(recipient, ToUserViaBot):
        if channel is not Channel.TELEGRAM:
            raise InvalidNotice("a user-via-bot recipient needs the telegram channel")
        if not BOT_NAME.fullmatch(recipient.bot):
            raise InvalidNotice("bot must be a bot name like 'booking'")
        if recipient.default_language not in LANGUAGES:
            raise InvalidNotice(f"default_language must be one of {LANGUAGES}")
    elif isinstance(recipient, ToTelegramChat):
        if channel is not Channel.TELEGRAM:
            raise InvalidNotice("a Telegram chat recipient needs the telegram channel")
        if not recipient.bot:
            raise InvalidNotice("bot must not be empty")
    elif isinstance(recipient, ToEmail):
        if channel is not Channel.EMAIL:
            raise InvalidNotice("an email recipient needs the email channel")
        if "@" not in recipient.address or len(recipient.address) > 320:
            raise InvalidNotice("not an email address")
    elif not isinstance(recipient, ToUser):
        raise InvalidNotice("unknown recipient kind")
    if isinstance(recipient, ToTelegramChat | ToEmail) and recipient.language not in LANGUAGES:
        raise InvalidNotice(f"language must be one of {LANGUAGES}")


def encode_params(params: Mapping[str, str]) -> bytes:
    return json.dumps(
        {str(k): str(v) for k, v in params.items()}, separators=(",", ":"), sort_keys=True
    ).encode()


def decode_params(raw: bytes) -> dict[str, str]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("params are not an object")
    return {str(k): str(v) for k, v in value.items()}


# --- templates ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """One key's texts per language: (subject, body). ``{name}`` placeholders for params."""

    channels: frozenset[Channel]
    params: frozenset[str]
    texts: Mapping[str, tuple[str, str]]
    link_preview: bool = False


TEMPLATES: dict[str, Template] = {
    "identity.email_code": Template(
        channels=frozenset({Channel.EMAIL}),
        params=frozenset({"code", "ttl_minutes"}),
        texts={
            "en": (
                "Your Switchboard code: {code}",
                "Your confirmation code is {code}.\n"
                "It expires in {ttl_minutes} minutes. If you did not ask for it, ignore this mail.",
            ),
            "ru": (
                "Ваш код Switchboard: {code}",
                "Ваш код подтверждения: {code}.\n"
                "Он действует {ttl_minutes} мин. Если вы его не запрашивали, "  # noqa: RUF001
                "просто проигнорируйте это письмо.",
            ),
            "fr": (
                "Votre code Switchboard : {code}",
                "Votre code de confirmation est {code}.\n"
                "Il expire dans {ttl_minutes} minutes. Si vous ne l'avez pas demandé, "
                "ignorez ce message.",
            ),
        },
    ),
    "identity.telegram_channel_bound": Template(
        channels=frozenset({Channel.TELEGRAM}),
        params=frozenset(),
        texts={
            "en": ("", "This chat is now linked to your Switchboard account."),
            "ru": ("", "Этот чат теперь привязан к вашему аккаунту Switchboard."),
            "fr": ("", "Cette conversation est maintenant liée à votre compte Switchboard."),
        },
    ),
    "identity.email_verified": Template(
        channels=frozenset({Channel.EMAIL}),
        params=frozenset(),
        texts={
            "en": (
                "Your email is verified",
                "Your email address is now verified for your Switchboard account.",
            ),
            "ru": (
                "Ваш адрес подтверждён",
                "Ваш адрес электронной почты подтверждён для аккаунта Switchboard.",
            ),
            "fr": (
                "Votre adresse est vérifiée",
                "Votre adresse e-mail est maintenant vérifiée pour votre compte Switchboard.",
            ),
        },
    ),
    # --- booking (the barbershop): sent through the booking bot -------------------------
    "booking.confirmed": Template(
        channels=frozenset({Channel.TELEGRAM, Channel.EMAIL}),
        params=frozenset({"master", "service", "when"}),
        texts={
            "ru": (
                "Вы записаны: {when}",
                "Вы записаны.\nМастер: {master}\nУслуга: {service}\nКогда: {when}",  # noqa: RUF001
            ),
            "en": (
                "Your booking: {when}",
                "You are booked.\nMaster: {master}\nService: {service}\nWhen: {when}",
            ),
            "fr": (
                "Votre rendez-vous : {when}",
                "Votre rendez-vous est confirmé.\nCoiffeur : {master}\n"
                "Prestation : {service}\nQuand : {when}",
            ),
        },
    ),
    "booking.created": Template(
        channels=frozenset({Channel.TELEGRAM, Channel.EMAIL}),
        params=frozenset({"client", "service", "when"}),
        texts={
            "ru": (
                "Новая запись: {when}",
                "Новая запись.\nКлиент: {client}\nУслуга: {service}\nКогда: {when}",  # noqa: RUF001
            ),
            "en": (
                "New booking: {when}",
                "New booking.\nClient: {client}\nService: {service}\nWhen: {when}",
            ),
            "fr": (
                "Nouveau rendez-vous : {when}",
                "Nouveau rendez-vous.\nClient : {client}\nPrestation : {service}\nQuand : {when}",
            ),
        },
    ),
    "booking.cancelled_by_client": Template(
        channels=frozenset({Channel.TELEGRAM, Channel.EMAIL}),
        params=frozenset({"client", "service", "when"}),
        texts={
            "ru": (
                "Запись отменена: {when}",
                "Клиент отменил запись.\nКлиент: {client}\nУслуга: {service}\n"  # noqa: RUF001
                "Когда: {when}",
            ),
            "en": (
                "Booking cancelled: {when}",
                "The client cancelled the booking.\nClient: {client}\nService: {service}\n"
                "When: {when}",
            ),
            "fr": (
                "Rendez-vous annulé : {when}",
                "Le client a annulé le rendez-vous.\nClient : {client}\n"
                "Prestation : {service}\nQuand : {when}",
            ),
        },
    ),
    "booking.cancelled_by_master": Template(
        channels=frozenset({Channel.TELEGRAM, Channel.EMAIL}),
        params=frozenset({"master", "service", "when", "reason"}),
        texts={
            "ru": (
                "Запись отменена: {when}",
                "Мастер отменил вашу запись.\nМастер: {master}\nУслуга: {service}\n"  # noqa: RUF001
                "Когда: {when}\nПричина: {reason}",  # noqa: RUF001
            ),
            "en": (
                "Your booking is cancelled: {when}",
                "The master cancelled your booking.\nMaster: {master}\nService: {service}\n"
                "When: {when}\nReason: {reason}",
            ),
            "fr": (
                "Votre rendez-vous est annulé : {when}",
                "Le coiffeur a annulé votre rendez-vous.\nCoiffeur : {master}\n"
                "Prestation : {service}\nQuand : {when}\nMotif : {reason}",
            ),
        },
    ),
    "booking.reminder": Template(
        channels=frozenset({Channel.TELEGRAM, Channel.EMAIL}),
        params=frozenset({"master", "service", "when"}),
        texts={
            "ru": (
                "Напоминание о записи: {when}",  # noqa: RUF001
                "Напоминаем о записи.\nМастер: {master}\nУслуга: {service}\nКогда: {when}",  # noqa: RUF001
            ),
            "en": (
                "Reminder: your booking {when}",
                "A reminder of your booking.\nMaster: {master}\nService: {service}\nWhen: {when}",
            ),
            "fr": (
                "Rappel : votre rendez-vous {when}",
                "Rappel de votre rendez-vous.\nCoiffeur : {master}\nPrestation : {service}\n"
                "Quand : {when}",
            ),
        },
    ),
    "notifications.admin_message": Template(
        channels=frozenset({Channel.TELEGRAM, Channel.EMAIL}),
        params=frozenset({"text"}),
        texts={
            "en": ("Message from Switchboard", "{text}"),
            "ru": ("Сообщение от Switchboard", "{text}"),
            "fr": ("Message de Switchboard", "{text}"),
        },
    ),
}


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str
    language: str
    link_preview: bool


class _Params(dict[str, str]):
    def __missing__(self, key: str) -> str:  # a missing param renders empty, never raises
        return ""


def render(
    template_key: str, language: str, channel: Channel, params: Mapping[str, str]
) -> Rendered:
    """Render in ``language`` (fallback en). Telegram bodies are HTML: params are escaped."""
    template = TEMPLATES[template_key]
    lang = language if language in template.texts else DEFAULT_LANGUAGE
    subject, body = template.texts[lang]
    if channel is Channel.TELEGRAM:
        values = _Params({k: html.escape(v, quote=False) for k, v in params.items()})
        # The template's own text is trusted HTML; only the params are escaped.
    else:
        values = _Params(params)
    return Rendered(
        subject=subject.format_map(_Params(params)),
        body=body.format_map(values),
        language=lang,
        link_preview=template.link_preview,
    )


# --- retries ------------------------------------------------------------------------------


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform(base/2, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    low = min(ceiling, base_s / 2)
    return (rng or random).uniform(low, ceiling)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A row of the outbox as the admin sees it (never the params)."""

    id: UUID
    dedup_key: str
    channel: Channel
    template: str
    user_id: UUID | None
    chat_id: int | None
    bot: str | None
    email: str | None
    language: str
    status: Status
    attempts: int
    next_attempt_time: datetime
    last_error: str
    create_time: datetime
    update_time: datetime
    deliver_time: datetime | None
    dead_time: datetime | None


# --- leasing and pacing ---------------------------------------------------------------------


GLOBAL_GUARD = 1.04
CHAT_GUARD = 1.02


def pace_key(bot: str, chat_id: int) -> str:
    return f"tg:{bot}:{chat_id}"


@dataclass(frozen=True, slots=True)
class Pacing:
    """How the server spaces sends: one global slot every ``spacing_s``, one per chat every
    ``chat_spacing_s``, slots handed out at most ``ahead_s`` in advance."""

    spacing_s: float
    chat_spacing_s: float
    ahead_s: float

    @classmethod
    def from_limits(cls, global_rate: float, per_chat_interval_s: float, ahead_s: float) -> Pacing:
        # Guards (4 % globally; 2 % and 10 ms per chat) keep scheduling jitter between the
        # server, the dispatchers and the API from turning an at-the-limit plan into a
        # violation as Telegram counts it.
        return cls(
            spacing_s=GLOBAL_GUARD / global_rate,
            chat_spacing_s=per_chat_interval_s * CHAT_GUARD + (0.01 if per_chat_interval_s else 0),
            ahead_s=ahead_s,
        )


@dataclass(slots=True)
class SlotPlan:
    # candidate index -> send time
    assigned: dict[int, datetime]
    # candidate index -> the time its chat is free again (the row waits until then)
    deferred: dict[int, datetime]
    # the next free global slot after this plan
    next_slot: datetime
    # pacing key -> next allowed send time, for the keys this plan used
    chat_next: dict[str, datetime]


def plan_slots(
    keys: list[str | None],
    *,
    now: datetime,
    global_next: datetime,
    chat_next: Mapping[str, datetime],
    pacing: Pacing,
    capacity: int,
    busy: frozenset[str] = frozenset(),
) -> SlotPlan:
    """Give candidates (in due order) send times on a grid of global slots.

    Slots are ``spacing`` apart from max(now, global_next) up to now + ahead; candidates take
    them in order, so sends stay ``spacing`` apart whatever the chats and no slot is skipped.
    A candidate whose chat is not free again by the next slot is deferred (the row waits for
    its chat; it is not an attempt). A chat gets one notification at a time: none while
    another to it is leased (``busy``), so the outcome of one send (a 429's retry_after) is
    known before the next is handed out. Candidates beyond the window stay due.
    """
    spacing_s = pacing.spacing_s
    spacing = timedelta(seconds=spacing_s)
    chat_spacing = timedelta(seconds=pacing.chat_spacing_s)
    horizon = now + timedelta(seconds=pacing.ahead_s)
    start = max(now, global_next)
    slots = int((horizon - start).total_seconds() / spacing_s) + 1 if start <= horizon else 0
    chats = dict(chat_next)
    used: dict[str, datetime] = {}
    taken: set[int] = set()
    lowest_free = 0
    assigned: dict[int, datetime] = {}
    deferred: dict[int, datetime] = {}
    busy_now = set(busy)
    for index, key in enumerate(keys):
        if len(assigned) >= capacity or lowest_free >= slots:
            break
        if key is not None and key in busy_now:
            deferred[index] = max(chats.get(key, now), now + timedelta(seconds=pacing.ahead_s / 4))
            continue
        need = 0
        ready = chats.get(key) if key is not None else None
        if ready is not None and ready > start:
            need = math.ceil((ready - start).total_seconds() / spacing_s - 1e-9)
            while start + need * spacing < ready:
                need += 1
        if need >= slots:
            assert ready is not None
            deferred[index] = ready
            continue
        if need > lowest_free:
            # Its chat is not free by the next free slot: taking a later slot would leave
            # the ones between unused (the cursor moves past them). Wait a little instead.
            assert ready is not None
            deferred[index] = ready
            continue
        slot = lowest_free
        taken.add(slot)
        while lowest_free in taken:
            lowest_free += 1
        when = start + slot * spacing
        assigned[index] = when
        if key is not None:
            chats[key] = used[key] = when + chat_spacing
            busy_now.add(key)
    next_slot = start + (max(taken) + 1) * spacing if taken else start
    return SlotPlan(assigned=assigned, deferred=deferred, next_slot=next_slot, chat_next=used)


@dataclass(frozen=True, slots=True)
class LeasedRow:
    """A notification just leased, recipient resolved, params still sealed."""

    id: UUID
    lease_id: UUID
    channel: Channel
    template: str
    sealed_params: bytes | None
    language: str
    chat_id: int | None
    bot: str | None
    email: str | None
    attempt: int
    send_time: datetime
    lease_expire_time: datetime


@dataclass(frozen=True, slots=True)
class Death:
    """A notification dead-lettered (for metrics; the audit event is already written)."""

    id: UUID
    channel: Channel
    reason: str


@dataclass(frozen=True, slots=True)
class LeaseBatch:
    rows: list[LeasedRow]
    # The database clock the slots were planned from, and time.monotonic() at that instant.
    now: datetime
    clock: float
    next_lease_time: datetime
    dead: list[Death]


@dataclass(frozen=True, slots=True)
class Report:
    notification_id: UUID
    lease_id: UUID
    outcome: Outcome
    error: str = ""
    retry_after_s: float = 0.0
    send_duration_s: float | None = None
    # How long before the report the send started (None: unknown).
    send_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """What a report did, for metrics."""

    id: UUID
    channel: Channel
    outcome: Outcome
    final_status: Status
    # When the notification was first due (enqueue, or its later not_before): delivery delay.
    due_time: datetime
