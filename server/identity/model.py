"""Identity's pure types and rules: users, sessions, tokens, Telegram signatures. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import unquote
from uuid import UUID

from server.kernel.errors import ERROR_DOMAIN
from server.kernel.principal import SESSION_TOKEN_PREFIX, Role

DOMAIN = f"identity.{ERROR_DOMAIN}"


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    telegram_user_id: int | None
    display_name: str
    username: str
    email: str | None
    role: Role
    create_time: datetime
    last_login_time: datetime | None
    delete_time: datetime | None = None
    #: The language the user chose (ru|en|fr); None: never chose (see ``language_or_default``).
    language: str | None = None
    email_verify_time: datetime | None = None

    @property
    def language_or_default(self) -> str:
        """The language to write to the user in: their choice, else the default (en)."""
        return self.language or DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True)
class TelegramProfile:
    telegram_user_id: int
    display_name: str
    username: str = ""


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A session just created: the only moment its plain token exists."""

    id: UUID
    token: str
    expire_time: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: UUID
    user: User
    expire_time: datetime
    revoke_time: datetime | None


@dataclass(frozen=True, slots=True)
class Handshake:
    id: UUID
    expire_time: datetime
    user_id: UUID | None
    confirm_time: datetime | None
    claim_time: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    actor: str
    action: str
    target: str
    create_time: datetime
    request_id: str
    attributes: dict[str, str]


def hash_token(token: str) -> bytes:
    """Tokens and codes are stored only as SHA-256 digests."""
    return hashlib.sha256(token.encode()).digest()


def new_session_token() -> str:
    return SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_login_code() -> str:
    return secrets.token_urlsafe(12)  # 16 url-safe characters


def new_handshake_token() -> str:
    return "sbh_" + secrets.token_urlsafe(32)


def display_name_of(first_name: str, last_name: str, username: str, telegram_id: int) -> str:
    name = " ".join(part for part in (first_name, last_name) if part).strip()
    return name or username or f"telegram:{telegram_id}"


MAX_DISPLAY_NAME = 100


def acting_display_name(raw: str) -> str:
    """The name a bot passes for the user it acts as (percent-encoded UTF-8): decoded, control
    characters dropped, trimmed, at most 100 characters. Bad encodings give no name."""
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return ""
    cleaned = "".join(ch for ch in text if ch.isprintable())
    return " ".join(cleaned.split())[:MAX_DISPLAY_NAME]


def telegram_check_string(fields: dict[str, str]) -> str:
    """Telegram's data-check-string: sorted ``key=value`` lines of every field but ``hash``."""
    return "\n".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "hash" and fields[k] != "")


def telegram_widget_hash(fields: dict[str, str], bot_token: str) -> str:
    secret_key = hashlib.sha256(bot_token.encode()).digest()
    data = telegram_check_string(fields).encode()
    return hmac.new(secret_key, data, hashlib.sha256).hexdigest()


class TelegramSignatureError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def verify_telegram_widget(
    fields: dict[str, str], bot_token: str, *, now: datetime, max_age: timedelta
) -> None:
    """Check a Login Widget payload per Telegram's documented algorithm.

    Raises TelegramSignatureError with a reason: HASH_MISMATCH, AUTH_DATE_EXPIRED or
    AUTH_DATE_IN_FUTURE. The comparison is constant-time.
    """
    expected = telegram_widget_hash(fields, bot_token)
    if not hmac.compare_digest(expected, fields.get("hash", "")):
        raise TelegramSignatureError(
            "TELEGRAM_HASH_MISMATCH", "the Telegram login data is not signed correctly"
        )
    auth_date = int(fields["auth_date"])
    age = now.timestamp() - auth_date
    if age > max_age.total_seconds():
        raise TelegramSignatureError(
            "TELEGRAM_AUTH_DATE_EXPIRED", "the Telegram login data is too old"
        )
    # A little clock skew is tolerated; anything beyond is forged or from a broken clock.
    if age < -60:
        raise TelegramSignatureError(
            "TELEGRAM_AUTH_DATE_IN_FUTURE", "the Telegram login data is dated in the future"
        )


def session_expiry(now: datetime, ttl_s: int) -> datetime:
    return now + timedelta(seconds=ttl_s)


class SessionCache:
    """Recently seen sessions by token digest, so most calls skip the database.

    Entries live ``ttl_s`` seconds at most. Whatever changes a session or its user (logout,
    promotion, deletion) evicts it here and, through the service, on every other replica; the
    TTL bounds staleness if such a message is lost. Only valid sessions are cached.
    """

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._by_digest: dict[bytes, tuple[float, SessionRecord]] = {}
        self._digest_of: dict[UUID, bytes] = {}

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    def get(self, digest: bytes, now: float) -> SessionRecord | None:
        entry = self._by_digest.get(digest)
        if entry is None:
            return None
        if now - entry[0] > self._ttl:
            self._drop(digest)
            return None
        return entry[1]

    def session(self, session_id: UUID, now: float) -> SessionRecord | None:
        digest = self._digest_of.get(session_id)
        return self.get(digest, now) if digest is not None else None

    def put(self, digest: bytes, record: SessionRecord, now: float) -> None:
        if not self.enabled:
            return
        if digest not in self._by_digest and len(self._by_digest) >= self._max:
            # Drop the oldest insertion (dicts keep insertion order): cheap and good enough.
            self._drop(next(iter(self._by_digest)))
        self._by_digest[digest] = (now, record)
        self._digest_of[record.id] = digest

    def evict_session(self, session_id: UUID) -> None:
        digest = self._digest_of.get(session_id)
        if digest is not None:
            self._drop(digest)

    def evict_user(self, user_id: UUID) -> None:
        """Rare (promotion, deletion): a scan is fine."""
        for digest in [d for d, (_, r) in self._by_digest.items() if r.user.id == user_id]:
            self._drop(digest)

    def _drop(self, digest: bytes) -> None:
        entry = self._by_digest.pop(digest, None)
        if entry is not None:
            self._digest_of.pop(entry[1].id, None)

    def __len__(self) -> int:
        return len(self._by_digest)


class ActingUsers:
    """Users services recently acted as, by Telegram id: a bot's every update skips PostgreSQL.

    Same rules as :class:`SessionCache`: ``ttl_s`` at most, evicted on every replica when the
    user changes (role, deletion).
    """

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._by_telegram_id: dict[int, tuple[float, User]] = {}

    def get(self, telegram_user_id: int, now: float) -> User | None:
        entry = self._by_telegram_id.get(telegram_user_id)
        if entry is None or now - entry[0] > self._ttl:
            return None
        return entry[1]

    def put(self, user: User, now: float) -> None:
        if self._ttl <= 0 or user.telegram_user_id is None:
            return
        if len(self._by_telegram_id) >= self._max:
            self._by_telegram_id.clear()
        self._by_telegram_id[user.telegram_user_id] = (now, user)

    def evict_user(self, user_id: UUID) -> None:
        for key in [k for k, (_, u) in self._by_telegram_id.items() if u.id == user_id]:
            del self._by_telegram_id[key]


# --- channels, email codes ----------------------------------------------------------------

LANGUAGES = ("ru", "en", "fr")
DEFAULT_LANGUAGE = "en"
DEFAULT_BOT = "login"
BIND_PREFIX = "bind_"
EMAIL_CHANNEL_ID = "email"
EMAIL_CODE_DIGITS = 6
_BINDING_ALPHABET = string.ascii_letters + string.digits


class CodePurpose(StrEnum):
    LOGIN = "login"
    VERIFY = "verify"


class CodeVerdict(StrEnum):
    """What presenting a code to the newest code row of an address means."""

    ACCEPTED = "accepted"
    WRONG = "wrong"  # counted as an attempt
    LOCKED_NOW = "locked_now"  # wrong, and it was the last attempt: the code locks
    LOCKED = "locked"  # locked earlier: nothing is counted
    EXPIRED = "expired"
    USED = "used"  # consumed earlier (or no code at all)


@dataclass(frozen=True, slots=True)
class EmailCode:
    id: UUID
    email: str
    purpose: CodePurpose
    user_id: UUID | None
    code_hash: bytes
    attempts: int
    max_attempts: int
    create_time: datetime
    expire_time: datetime
    consume_time: datetime | None
    lock_time: datetime | None
    #: The language the requester chose (for the user a first login creates); None: none.
    language: str | None = None

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts)


@dataclass(frozen=True, slots=True)
class TelegramChannel:
    id: UUID
    user_id: UUID
    chat_id: int
    bot: str
    create_time: datetime
    confirm_time: datetime | None
    delete_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A confirmed channel as the user sees it: a Telegram chat or the verified email."""

    id: str
    kind: str  # "telegram" | "email"
    telegram_chat_id: int = 0
    bot: str = ""
    email: str = ""
    create_time: datetime | None = None
    confirm_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class BindingCode:
    id: UUID
    user_id: UUID
    expire_time: datetime
    use_time: datetime | None
    channel_id: UUID | None


def normalize_email(address: str) -> str:
    """Addresses are compared and stored lower-cased, without surrounding blanks."""
    return address.strip().lower()


def mask_email(address: str) -> str:
    """For logs and audit attributes: ``a***@example.com`` (never the whole address)."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def new_email_code() -> str:
    """Six uniformly random digits, from the OS's CSPRNG."""
    return f"{secrets.randbelow(10**EMAIL_CODE_DIGITS):0{EMAIL_CODE_DIGITS}d}"


def email_code_key(data_key: bytes) -> bytes:
    """The HMAC key for email codes, derived from the data key (never the data key itself)."""
    return hmac.new(data_key, b"switchboard/identity/email-code/v1", hashlib.sha256).digest()


def hash_email_code(key: bytes, code_id: UUID, code: str) -> bytes:
    """HMAC-SHA256 over the row id and the code.

    A six-digit code has only a million values, so a bare hash could be reversed by trying
    them all; the secret key makes that impossible without the key, and the row id makes every
    digest unique (the same code sent twice never gives the same digest).
    """
    return hmac.new(key, code_id.bytes + b":" + code.encode(), hashlib.sha256).digest()


def judge_email_code(row: EmailCode | None, code: str, key: bytes, now: datetime) -> CodeVerdict:
    """Decide what a presented code means for the newest code row. Constant-time comparison.

    Order matters: a used, locked or expired code is refused before the code is even compared,
    so those states cannot be probed for the right code (and do not count attempts).
    """
    if row is None or row.consume_time is not None:
        return CodeVerdict.USED
    if row.lock_time is not None or row.attempts >= row.max_attempts:
        return CodeVerdict.LOCKED
    if row.expire_time <= now:
        return CodeVerdict.EXPIRED
    if hmac.compare_digest(hash_email_code(key, row.id, code), row.code_hash):
        return CodeVerdict.ACCEPTED
    return CodeVerdict.LOCKED_NOW if row.attempts + 1 >= row.max_attempts else CodeVerdict.WRONG


def code_request_wait_s(
    now: datetime,
    recent: list[datetime],
    *,
    min_interval_s: float,
    max_per_hour: int,
) -> float:
    """Seconds until the address may get another code (0: now), given its codes' create times.

    Two rules: at least ``min_interval_s`` since the newest code, and at most ``max_per_hour``
    codes in any rolling hour.
    """
    wait = 0.0
    if recent:
        newest = max(recent)
        wait = max(wait, min_interval_s - (now - newest).total_seconds())
    window = sorted(t for t in recent if (now - t).total_seconds() < 3600)
    if len(window) >= max_per_hour:
        # The oldest code that must leave the window before another fits.
        leaving = window[len(window) - max_per_hour]
        wait = max(wait, 3600 - (now - leaving).total_seconds())
    return max(0.0, wait)


def new_binding_code() -> str:
    """20 letters and digits (~119 bits): fits Telegram's /start parameter with ``bind_``."""
    return "".join(secrets.choice(_BINDING_ALPHABET) for _ in range(20))


def strip_bind_prefix(code: str) -> str:
    return code[len(BIND_PREFIX) :] if code.startswith(BIND_PREFIX) else code
