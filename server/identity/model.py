"""Identity's pure types and rules: users, sessions, tokens, Telegram signatures. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
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
