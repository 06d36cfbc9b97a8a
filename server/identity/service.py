"""Identity use cases: logins, sessions, service principals, roles, audit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
from pydantic import SecretStr

from server.identity import model
from server.identity.model import (
    ActingUsers,
    ChannelView,
    CodePurpose,
    CodeVerdict,
    EmailCode,
    IssuedSession,
    SessionCache,
    TelegramChannel,
    User,
)
from server.identity.repository import IdentityRepository, Tx
from server.kernel import paging
from server.kernel.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from server.kernel.principal import (
    ACT_AS_SCOPE,
    Principal,
    Role,
    ServicePrincipal,
    UserPrincipal,
)
from server.notifications.model import Channel, Notice, ToEmail, ToTelegramChat

log = logging.getLogger(__name__)
D = model.DOMAIN

# Queues a notice in the caller's open transaction (server.notifications.repository.enqueue
# with the data key's SecretBox bound); True when queued, False for a known dedup key.
Outbox = Callable[[Tx, Notice], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    env: str
    login_bot_token: SecretStr | None
    login_bot_username: str
    telegram_auth_max_age: timedelta
    session_ttl_s: int
    handshake_ttl_s: int
    handshake_heartbeat_s: float
    super_admin_telegram_ids: frozenset[int]
    super_admin_emails: frozenset[str]
    dev_login_enabled: bool
    service_principals: dict[str, frozenset[str]]  # name -> scopes
    service_tokens: dict[str, SecretStr]  # name -> token (hashed at construction)
    session_cache_ttl_s: float = 0.0
    # Email codes (docs/identity.md). The key is derived from SWITCHBOARD_DATA_KEY.
    email_code_key: bytes = b""
    email_code_ttl_s: int = 600
    email_code_max_attempts: int = 5
    email_code_min_interval_s: float = 60.0
    email_code_max_per_hour: int = 5
    channel_binding_ttl_s: int = 600


@dataclass(frozen=True, slots=True)
class HandshakeUpdate:
    state: str  # "pending" | "confirmed" | "expired"
    user: User | None = None
    session: IssuedSession | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IdentityService:
    def __init__(
        self,
        repo: IdentityRepository,
        config: IdentityConfig,
        *,
        stopping: asyncio.Event | None = None,
        clock: Callable[[], datetime] = _utcnow,
        publish: Callable[[str], Awaitable[None]] | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._repo = repo
        self._outbox = outbox
        self._config = config
        self._clock = clock
        self._stopping = stopping or asyncio.Event()
        self._cache = SessionCache(config.session_cache_ttl_s)
        self._acting = ActingUsers(config.session_cache_ttl_s)
        self._publish = publish
        # Service tokens are kept only as SHA-256 digests.
        self._services: dict[bytes, ServicePrincipal] = {
            model.hash_token(token.get_secret_value()): ServicePrincipal(
                name=name, scopes=config.service_principals.get(name, frozenset())
            )
            for name, token in config.service_tokens.items()
        }

    # --- authentication (the kernel's Authenticator) --------------------------------------

    async def authenticate(self, metadata: dict[str, str], request_id: str) -> Principal:
        header = metadata.get("authorization", "")
        act_as = metadata.get("x-telegram-user-id", "")
        if not header:
            if act_as:
                raise Unauthenticated(
                    "ACT_AS_NEEDS_SERVICE", "acting as a user needs a service token", domain=D
                )
            return Principal()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "MALFORMED_AUTHORIZATION", "authorization must be 'Bearer <token>'", domain=D
            )
        digest = model.hash_token(token.strip())
        service = self._services.get(digest)
        if service is not None:
            if not act_as:
                return Principal(service=service)
            name = metadata.get("x-telegram-user-name", "")
            return Principal(user=await self._act_as(service, act_as, name), service=service)
        if act_as:
            raise PermissionDenied(
                "ACT_AS_NOT_ALLOWED", "only service principals may act as a user", domain=D
            )
        record = self._cache.get(digest, time.monotonic())
        if record is None:
            record = await self._repo.find_session(digest)
            if (
                record is not None
                and record.revoke_time is None
                and record.user.delete_time is None
            ):
                self._cache.put(digest, record, time.monotonic())
        if (
            record is None
            or record.revoke_time is not None
            or record.expire_time <= self._clock()
            or record.user.delete_time is not None
        ):
            raise Unauthenticated(
                "SESSION_INVALID", "the session is unknown, expired or revoked", domain=D
            )
        return Principal(
            user=UserPrincipal(user_id=record.user.id, role=record.user.role, session_id=record.id)
        )

    async def _act_as(
        self, service: ServicePrincipal, raw_telegram_id: str, raw_name: str = ""
    ) -> UserPrincipal:
        if ACT_AS_SCOPE not in service.scopes:
            raise PermissionDenied(
                "ACT_AS_NOT_ALLOWED",
                f"service {service.name} lacks the {ACT_AS_SCOPE} scope",
                domain=D,
            )
        try:
            telegram_user_id = int(raw_telegram_id)
        except ValueError:
            raise InvalidArgument(
                "INVALID_ACT_AS", "x-telegram-user-id must be a Telegram user id", domain=D
            ) from None
        if telegram_user_id <= 0:
            raise InvalidArgument("INVALID_ACT_AS", "x-telegram-user-id must be positive", domain=D)
        user = self._acting.get(telegram_user_id, time.monotonic())
        if user is None:
            user = await self._repo.find_telegram_user(telegram_user_id)
            name = model.acting_display_name(raw_name)
            # First sight (or a user still without a name): the bot's Telegram name names them.
            if user is None or (name and not user.display_name and user.delete_time is None):
                user = await self._repo.upsert_telegram_user(
                    telegram_user_id,
                    name,
                    "",
                    super_admin=telegram_user_id in self._config.super_admin_telegram_ids,
                    login_time=None,
                )
            if user.delete_time is None:
                self._acting.put(user, time.monotonic())
        if user.delete_time is not None:
            raise PermissionDenied("USER_DELETED", "this user has been deleted", domain=D)
        return UserPrincipal(user_id=user.id, role=user.role)

    async def bootstrap(self) -> None:
        """At start: users already known by a configured Telegram id or email become super admins.

        New users get the role when they first appear (login, act-as); this covers the ones that
        existed before the setting named them, and users known only by email.
        """
        changed = await self._repo.grant_super_admin(
            sorted(self._config.super_admin_telegram_ids), sorted(self._config.super_admin_emails)
        )
        for user_id in changed:
            await self._invalidate(user_id=user_id)
            await self.record(
                actor="config", action="user.promote", target=f"user:{user_id}", request_id="",
                attributes={"role": "super_admin", "source": "bootstrap"},
            )  # fmt: skip

    # --- cached sessions, kept coherent across replicas ------------------------------------

    async def _invalidate(
        self, *, user_id: UUID | None = None, session_id: UUID | None = None
    ) -> None:
        message = f"user:{user_id}" if user_id is not None else f"session:{session_id}"
        self.apply_invalidation(message)
        if self._publish is not None:
            await self._publish(message)

    def apply_invalidation(self, message: str) -> None:
        """Forget what a replica (this one or another) changed: "user:<id>" or "session:<id>"."""
        kind, _, raw = message.partition(":")
        try:
            value = UUID(raw)
        except ValueError:
            log.warning("ignoring malformed invalidation", extra={"kind": kind})
            return
        if kind == "user":
            self._cache.evict_user(value)
            self._acting.evict_user(value)
        elif kind == "session":
            self._cache.evict_session(value)

    # --- audit (the kernel's AuditSink) ---------------------------------------------------

    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        request_id: str,
        attributes: dict[str, str] | None = None,
    ) -> None:
        await self._repo.add_audit_event(
            actor=actor, action=action, target=target, request_id=request_id, attributes=attributes
        )

    # --- logins --------------------------------------------------------------------------

    async def login_with_telegram_widget(
        self, fields: dict[str, str], request_id: str
    ) -> tuple[User, IssuedSession]:
        token = self._config.login_bot_token
        if token is None:
            raise FailedPrecondition(
                "TELEGRAM_LOGIN_NOT_CONFIGURED",
                "Telegram login is not configured on this server",
                domain=D,
            )
        telegram_user_id = int(fields["id"])
        try:
            model.verify_telegram_widget(
                fields,
                token.get_secret_value(),
                now=self._clock(),
                max_age=self._config.telegram_auth_max_age,
            )
        except model.TelegramSignatureError as exc:
            await self.record(
                actor="anonymous",
                action="auth.login_failed",
                target=f"telegram:{telegram_user_id}",
                request_id=request_id,
                attributes={"reason": exc.reason, "method": "telegram_widget"},
            )
            raise Unauthenticated(exc.reason, exc.message, domain=D) from None
        profile = model.TelegramProfile(
            telegram_user_id=telegram_user_id,
            display_name=model.display_name_of(
                fields.get("first_name", ""),
                fields.get("last_name", ""),
                fields.get("username", ""),
                telegram_user_id,
            ),
            username=fields.get("username", ""),
        )
        return await self._log_in(profile, "telegram_widget", request_id)

    async def dev_login(
        self, telegram_user_id: int, display_name: str, request_id: str
    ) -> tuple[User, IssuedSession]:
        if not self._config.dev_login_enabled or self._config.env != "dev":
            raise FailedPrecondition(
                "DEV_LOGIN_DISABLED", "dev login is disabled on this server", domain=D
            )
        profile = model.TelegramProfile(
            telegram_user_id=telegram_user_id, display_name=display_name
        )
        return await self._log_in(profile, "dev", request_id)

    async def _log_in(
        self, profile: model.TelegramProfile, method: str, request_id: str
    ) -> tuple[User, IssuedSession]:
        """Create or refresh the user, issue a session, audit the login."""
        user = await self._repo.upsert_telegram_user(
            profile.telegram_user_id,
            profile.display_name,
            profile.username,
            super_admin=profile.telegram_user_id in self._config.super_admin_telegram_ids,
            login_time=self._clock(),
        )
        if user.delete_time is not None:
            raise PermissionDenied("USER_DELETED", "this user has been deleted", domain=D)
        await self._invalidate(user_id=user.id)  # the profile may have changed
        session = await self._issue_session(user.id)
        await self.record(
            actor=f"user:{user.id}",
            action="auth.login",
            target=f"user:{user.id}",
            request_id=request_id,
            attributes={"method": method},
        )
        return user, session

    async def _issue_session(self, user_id: UUID) -> IssuedSession:
        token = model.new_session_token()
        expire_time = model.session_expiry(self._clock(), self._config.session_ttl_s)
        session_id = await self._repo.create_session(user_id, model.hash_token(token), expire_time)
        return IssuedSession(id=session_id, token=token, expire_time=expire_time)

    async def logout(self, principal: Principal, request_id: str) -> None:
        if principal.user is None or principal.user.session_id is None:
            raise FailedPrecondition("NOT_A_SESSION", "only a session can log out", domain=D)
        await self._repo.revoke_session(principal.user.session_id)
        await self._invalidate(session_id=principal.user.session_id)
        await self.record(
            actor=principal.label(),
            action="auth.logout",
            target=f"user:{principal.user.user_id}",
            request_id=request_id,
        )

    # --- the bot handshake ---------------------------------------------------------------

    async def start_telegram_login(self) -> tuple[str, str, str, datetime]:
        code = model.new_login_code()
        handshake_token = model.new_handshake_token()
        expire_time = self._clock() + timedelta(seconds=self._config.handshake_ttl_s)
        await self._repo.create_handshake(
            model.hash_token(code), model.hash_token(handshake_token), expire_time
        )
        deep_link = f"https://t.me/{self._config.login_bot_username}?start={code}"
        return code, deep_link, handshake_token, expire_time

    async def confirm_telegram_login(
        self, code: str, principal: Principal, display_name: str, username: str, request_id: str
    ) -> User:
        if principal.user is None:
            raise FailedPrecondition(
                "ACT_AS_REQUIRED",
                "confirm on behalf of the Telegram user (x-telegram-user-id)",
                domain=D,
            )
        user = await self._repo.update_profile(principal.user.user_id, display_name, username)
        if user is None:
            raise NotFound("USER_NOT_FOUND", "the user does not exist", domain=D)
        await self._invalidate(user_id=user.id)  # the profile may have changed
        if not await self._repo.confirm_handshake(model.hash_token(code), user.id):
            raise NotFound(
                "HANDSHAKE_NOT_FOUND", "the login code is unknown, used or expired", domain=D
            )
        await self.record(
            actor=principal.label(),
            action="auth.handshake_confirmed",
            target=f"user:{user.id}",
            request_id=request_id,
        )
        return user

    async def wait_telegram_login(
        self, handshake_token: str, request_id: str
    ) -> AsyncIterator[HandshakeUpdate]:
        digest = model.hash_token(handshake_token)
        poll_s = min(0.5, self._config.handshake_heartbeat_s)
        last_heartbeat = 0.0
        loop = asyncio.get_running_loop()
        while True:
            handshake = await self._repo.find_handshake(digest)
            if handshake is None:
                raise NotFound("HANDSHAKE_NOT_FOUND", "no such login handshake", domain=D)
            if handshake.claim_time is not None:
                yield HandshakeUpdate("expired")
                return
            if handshake.confirm_time is not None:
                token = model.new_session_token()
                expire_time = model.session_expiry(self._clock(), self._config.session_ttl_s)
                claimed = await self._repo.claim_handshake(
                    handshake.id, model.hash_token(token), expire_time
                )
                if claimed is None:
                    yield HandshakeUpdate("expired")
                    return
                user, session_id = claimed
                await self.record(
                    actor=f"user:{user.id}",
                    action="auth.login",
                    target=f"user:{user.id}",
                    request_id=request_id,
                    attributes={"method": "telegram_bot"},
                )
                yield HandshakeUpdate(
                    "confirmed", user, IssuedSession(session_id, token, expire_time)
                )
                return
            if handshake.expire_time <= self._clock():
                yield HandshakeUpdate("expired")
                return
            if loop.time() - last_heartbeat >= self._config.handshake_heartbeat_s:
                last_heartbeat = loop.time()
                yield HandshakeUpdate("pending")
            if self._stopping.is_set():
                raise Unavailable("SHUTTING_DOWN", "the server is restarting; wait again", domain=D)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=poll_s)

    # --- users ---------------------------------------------------------------------------

    async def get_me(self, principal: Principal) -> User:
        if principal.user is None:
            raise Unauthenticated("UNAUTHENTICATED", "no user", domain=D)
        if principal.user.session_id is not None:
            cached = self._cache.session(principal.user.session_id, time.monotonic())
            if cached is not None:
                return cached.user
        user = await self._repo.get_user(principal.user.user_id)
        if user is None or user.delete_time is not None:
            raise NotFound("USER_NOT_FOUND", "the user does not exist", domain=D)
        return user

    async def list_users(self, page_size: int, page_token: str) -> tuple[list[User], str]:
        cursor = paging.decode(page_token)
        after: tuple[datetime, UUID] | None = None
        if cursor is not None:
            try:
                after = (datetime.fromisoformat(cursor["t"]), UUID(cursor["i"]))
            except (KeyError, TypeError, ValueError):
                raise paging.invalid_token(domain=D) from None
        size = paging.page_size(page_size)
        users = await self._repo.list_users(after, size + 1)
        next_token = ""
        if len(users) > size:
            users = users[:size]
            last = users[-1]
            next_token = paging.encode({"t": last.create_time.isoformat(), "i": str(last.id)})
        return users, next_token

    async def promote_user(self, principal: Principal, user_id: str, request_id: str) -> User:
        target = _parse_uuid(user_id, "user_id")
        user = await self._repo.set_role(target, Role.ADMIN, only_from=Role.USER)
        if user is None:
            raise NotFound("USER_NOT_FOUND", "the user does not exist", domain=D)
        await self._invalidate(user_id=user.id)
        await self.record(
            actor=principal.label(),
            action="user.promote",
            target=f"user:{user.id}",
            request_id=request_id,
            attributes={"role": user.role.value},
        )
        return user

    async def delete_user(self, principal: Principal, user_id: str, request_id: str) -> None:
        target = _parse_uuid(user_id, "user_id")
        if principal.user is not None and principal.user.user_id == target:
            raise FailedPrecondition("CANNOT_DELETE_SELF", "you cannot delete yourself", domain=D)
        if not await self._repo.soft_delete_user(target):
            raise NotFound("USER_NOT_FOUND", "the user does not exist", domain=D)
        await self._invalidate(user_id=target)
        await self.record(
            actor=principal.label(),
            action="user.delete",
            target=f"user:{target}",
            request_id=request_id,
        )

    async def list_audit_events(
        self, page_size: int, page_token: str, action: str
    ) -> tuple[list[model.AuditEvent], str]:
        cursor = paging.decode(page_token)
        before: int | None = None
        if cursor is not None:
            before = cursor.get("b")
            if not isinstance(before, int):
                raise paging.invalid_token(domain=D)
        size = paging.page_size(page_size)
        events = await self._repo.list_audit_events(before, action or None, size + 1)
        next_token = ""
        if len(events) > size:
            events = events[:size]
            next_token = paging.encode({"b": events[-1].id})
        return events, next_token

    # --- email codes: login and verification ----------------------------------------------

    def _code_key(self) -> bytes:
        # An empty HMAC key would make six-digit digests reversible by anyone.
        if not self._config.email_code_key:
            raise FailedPrecondition(
                "EMAIL_CODES_NOT_CONFIGURED", "this server cannot issue email codes", domain=D
            )
        return self._config.email_code_key

    async def _enqueue(self, tx: Tx, notice: Notice) -> None:
        if self._outbox is None:
            raise FailedPrecondition(
                "NOTIFICATIONS_NOT_CONFIGURED", "this server cannot send notifications", domain=D
            )
        await self._outbox(tx, notice)

    async def request_email_code(
        self,
        email_address: str,
        purpose: CodePurpose,
        *,
        principal: Principal | None = None,
        language: str = "",
        request_id: str = "",
    ) -> tuple[datetime, datetime]:
        """Store a new code for the address and queue its mail, in one transaction.

        Returns (code expire time, earliest time of the next request). Refused with
        RESOURCE_EXHAUSTED EMAIL_CODE_RATE_LIMITED (with the wait) when the address asked too
        often. For VERIFY, the code belongs to the calling user.
        """
        config = self._config
        email = model.normalize_email(email_address)
        user_id: UUID | None = None
        if purpose is CodePurpose.VERIFY:
            if principal is None or principal.user is None:
                raise Unauthenticated("UNAUTHENTICATED", "no user", domain=D)
            user_id = principal.user.user_id
        now = self._clock()
        code = model.new_email_code()
        code_id = uuid4()
        async with self._repo.transaction() as tx:
            await self._repo.lock_email_address(tx, email)
            recent = await self._repo.email_code_times(tx, email, now - timedelta(hours=1))
            wait = model.code_request_wait_s(
                now,
                recent,
                min_interval_s=config.email_code_min_interval_s,
                max_per_hour=config.email_code_max_per_hour,
            )
            if wait > 0:
                retry_after = math.ceil(wait)
                raise ResourceExhausted(
                    "EMAIL_CODE_RATE_LIMITED",
                    f"too many codes for this address; try again in {retry_after} s",
                    retry_after_s=retry_after,
                    domain=D,
                    metadata={"retry_after_s": str(retry_after)},
                )
            if user_id is not None:
                owner = await self._repo.get_user(user_id, tx)
                if owner is None or owner.delete_time is not None:
                    raise NotFound("USER_NOT_FOUND", "the user does not exist", domain=D)
                chosen = owner.language
            else:
                known = await self._repo.find_email_user(tx, email)
                chosen = known.language if known is not None and known.delete_time is None else None
            # The user's own choice, else the client's, else the default. The code keeps only
            # the client's: a first login gives it to the user it creates (a choice made there).
            mail_language = chosen or language or model.DEFAULT_LANGUAGE
            row = EmailCode(
                id=code_id,
                email=email,
                purpose=purpose,
                user_id=user_id,
                code_hash=model.hash_email_code(self._code_key(), code_id, code),
                attempts=0,
                max_attempts=config.email_code_max_attempts,
                create_time=now,
                expire_time=now + timedelta(seconds=config.email_code_ttl_s),
                consume_time=None,
                lock_time=None,
                language=(language or None) if user_id is None else None,
            )
            await self._repo.insert_email_code(tx, row)
            await self._enqueue(
                tx,
                Notice(
                    ToEmail(email, mail_language),
                    Channel.EMAIL,
                    "identity.email_code",
                    {"code": code, "ttl_minutes": str(math.ceil(config.email_code_ttl_s / 60))},
                    dedup_key=f"identity.email_code:{code_id}",
                ),
            )
        await self.record(
            actor=principal.label() if principal is not None else "anonymous",
            action="auth.email_code_sent",
            target=f"email:{model.mask_email(email)}",
            request_id=request_id,
            attributes={"purpose": purpose.value, "code_id": str(code_id)},
        )
        next_wait = model.code_request_wait_s(
            now,
            [*recent, now],
            min_interval_s=config.email_code_min_interval_s,
            max_per_hour=config.email_code_max_per_hour,
        )
        return row.expire_time, now + timedelta(seconds=next_wait)

    async def _judge_email_code(
        self,
        tx: Tx,
        email: str,
        purpose: CodePurpose,
        user_id: UUID | None,
        code: str,
        now: datetime,
    ) -> tuple[CodeVerdict, EmailCode | None]:
        """Judge the presented code against the address's newest code and record the outcome.

        The row is locked (FOR UPDATE) for the transaction, so concurrent guesses are counted
        one after another and can never exceed the attempt limit.
        """
        row = await self._repo.newest_email_code(tx, email, purpose, user_id)
        verdict = model.judge_email_code(row, code, self._code_key(), now)
        if row is not None and verdict in (CodeVerdict.WRONG, CodeVerdict.LOCKED_NOW):
            await self._repo.count_email_code_failure(
                tx, row.id, lock=verdict is CodeVerdict.LOCKED_NOW, now=now
            )
        elif row is not None and verdict is CodeVerdict.ACCEPTED:
            await self._repo.consume_email_code(tx, row.id, now)
        return verdict, row

    async def _email_code_refused(
        self,
        verdict: CodeVerdict,
        row: EmailCode | None,
        email: str,
        *,
        actor: str,
        action: str,
        request_id: str,
    ) -> DomainError:
        """Audit a refused code and return the error the caller gets."""
        error: DomainError
        if verdict is CodeVerdict.WRONG:
            left = row.attempts_left - 1 if row is not None else 0
            error = InvalidArgument(
                "EMAIL_CODE_WRONG",
                f"the code is wrong; {left} attempt(s) left",
                violations=[FieldViolation("code", "is not the code sent", "EMAIL_CODE_WRONG")],
                domain=D,
                metadata={"attempts_left": str(left)},
            )
        elif verdict in (CodeVerdict.LOCKED, CodeVerdict.LOCKED_NOW):
            error = FailedPrecondition(
                "EMAIL_CODE_LOCKED",
                "too many wrong attempts: this code is locked; request a new one",
                domain=D,
                metadata={"attempts_left": "0"},
            )
        elif verdict is CodeVerdict.EXPIRED:
            error = FailedPrecondition(
                "EMAIL_CODE_EXPIRED", "the code has expired; request a new one", domain=D
            )
        else:
            error = NotFound(
                "EMAIL_CODE_NOT_FOUND",
                "no pending code for this address; request a new one",
                domain=D,
            )
        target = f"email:{model.mask_email(email)}"
        attributes = {"reason": error.reason, "method": "email"}
        if row is not None:
            attributes["code_id"] = str(row.id)
        await self.record(
            actor=actor, action=action, target=target, request_id=request_id,
            attributes=attributes,
        )  # fmt: skip
        if verdict is CodeVerdict.LOCKED_NOW:
            await self.record(
                actor=actor, action="auth.email_code_locked", target=target,
                request_id=request_id, attributes=attributes,
            )  # fmt: skip
        return error

    async def login_with_email_code(
        self, email_address: str, code: str, request_id: str
    ) -> tuple[User, IssuedSession]:
        """Log in with the newest login code of the address; the first login creates the user."""
        email = model.normalize_email(email_address)
        now = self._clock()
        token = model.new_session_token()
        expire_time = model.session_expiry(now, self._config.session_ttl_s)
        user: User | None = None
        session_id: UUID | None = None
        async with self._repo.transaction() as tx:
            verdict, row = await self._judge_email_code(
                tx, email, CodePurpose.LOGIN, None, code, now
            )
            if verdict is CodeVerdict.ACCEPTED and row is not None:
                user = await self._repo.email_login_user(
                    tx,
                    email,
                    display_name=email.partition("@")[0][:64],
                    language=row.language,
                    super_admin=email in self._config.super_admin_emails,
                    now=now,
                )
                if user.delete_time is not None:
                    raise PermissionDenied("USER_DELETED", "this user has been deleted", domain=D)
                session_id = await self._repo.create_session(
                    user.id, model.hash_token(token), expire_time, tx
                )
        if user is None or session_id is None:
            raise await self._email_code_refused(
                verdict, row, email, actor="anonymous", action="auth.login_failed",
                request_id=request_id,
            )  # fmt: skip
        await self._invalidate(user_id=user.id)
        await self.record(
            actor=f"user:{user.id}",
            action="auth.login",
            target=f"user:{user.id}",
            request_id=request_id,
            attributes={"method": "email"},
        )
        return user, IssuedSession(id=session_id, token=token, expire_time=expire_time)

    async def confirm_email_verification(
        self, principal: Principal, email_address: str, code: str, request_id: str
    ) -> User:
        """Make the address the caller's verified email, with the code sent to it."""
        if principal.user is None:
            raise Unauthenticated("UNAUTHENTICATED", "no user", domain=D)
        user_id = principal.user.user_id
        email = model.normalize_email(email_address)
        now = self._clock()
        user: User | None = None
        try:
            async with self._repo.transaction() as tx:
                verdict, row = await self._judge_email_code(
                    tx, email, CodePurpose.VERIFY, user_id, code, now
                )
                if verdict is CodeVerdict.ACCEPTED and row is not None:
                    user = await self._repo.set_verified_email(
                        tx,
                        user_id,
                        email,
                        super_admin=email in self._config.super_admin_emails,
                        now=now,
                    )
                    if user is None:
                        raise NotFound("USER_NOT_FOUND", "the user does not exist", domain=D)
                    await self._enqueue(
                        tx,
                        Notice(
                            ToEmail(email, user.language_or_default),
                            Channel.EMAIL,
                            "identity.email_verified",
                            {},
                            dedup_key=f"identity.email_verified:{row.id}",
                        ),
                    )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                "EMAIL_IN_USE", "this address is the email of another account", domain=D
            ) from None
        actor = principal.label()
        if user is None:
            raise await self._email_code_refused(
                verdict, row, email, actor=actor, action="channel.email_verify_failed",
                request_id=request_id,
            )  # fmt: skip
        await self._invalidate(user_id=user.id)
        await self.record(
            actor=actor,
            action="channel.email_verified",
            target=f"user:{user.id}",
            request_id=request_id,
            attributes={"email": model.mask_email(email)},
        )
        return user

    # --- Telegram chat channels ------------------------------------------------------------

    async def start_telegram_channel_binding(
        self, principal: Principal
    ) -> tuple[str, str, datetime]:
        if principal.user is None:
            raise Unauthenticated("UNAUTHENTICATED", "no user", domain=D)
        code = model.new_binding_code()
        now = self._clock()
        expire_time = now + timedelta(seconds=self._config.channel_binding_ttl_s)
        await self._repo.create_binding_code(
            principal.user.user_id, model.hash_token(code), now, expire_time
        )
        deep_link = (
            f"https://t.me/{self._config.login_bot_username}?start={model.BIND_PREFIX}{code}"
        )
        return code, deep_link, expire_time

    async def confirm_telegram_channel_binding(
        self, principal: Principal, code: str, chat_id: int, bot: str, request_id: str
    ) -> tuple[TelegramChannel, User]:
        """Bind the chat to the user who started the binding and queue the chat's greeting."""
        bot = bot or model.DEFAULT_BOT
        digest = model.hash_token(model.strip_bind_prefix(code))
        now = self._clock()
        not_found = NotFound(
            "BINDING_CODE_NOT_FOUND", "the binding code is unknown, used or expired", domain=D
        )
        retried = False
        try:
            async with self._repo.transaction() as tx:
                binding = await self._repo.binding_code_for_update(tx, digest)
                if binding is None:
                    raise not_found
                user = await self._repo.get_user(binding.user_id, tx)
                if user is None or user.delete_time is not None:
                    raise not_found
                if binding.use_time is not None:
                    # A retry of the same confirmation answers the same; anything else is refused.
                    used = (
                        await self._repo.get_channel(tx, binding.channel_id)
                        if binding.channel_id is not None
                        else None
                    )
                    if (
                        used is None
                        or used.delete_time is not None
                        or (used.chat_id, used.bot) != (chat_id, bot)
                    ):
                        raise not_found
                    channel, retried = used, True
                else:
                    if binding.expire_time <= now:
                        raise not_found
                    existing = await self._repo.live_channel_of_chat(tx, bot, chat_id)
                    if existing is not None and existing.user_id != user.id:
                        raise _chat_bound_elsewhere()
                    channel = existing or await self._repo.insert_confirmed_channel(
                        tx, user.id, chat_id, bot, now
                    )
                    await self._repo.use_binding_code(tx, binding.id, channel.id, now)
                    await self._enqueue(
                        tx,
                        Notice(
                            ToTelegramChat(chat_id, bot, user.language_or_default),
                            Channel.TELEGRAM,
                            "identity.telegram_channel_bound",
                            {},
                            dedup_key=f"identity.telegram_channel_bound:{channel.id}",
                        ),
                    )
        except asyncpg.UniqueViolationError:
            raise _chat_bound_elsewhere() from None
        if not retried:
            await self.record(
                actor=principal.label(),
                action="channel.telegram_bound",
                target=f"user:{user.id}",
                request_id=request_id,
                attributes={"channel_id": str(channel.id), "bot": bot},
            )
        return channel, user

    async def list_channels(
        self, principal: Principal, page_size: int, page_token: str
    ) -> tuple[list[ChannelView], str]:
        if principal.user is None:
            raise Unauthenticated("UNAUTHENTICATED", "no user", domain=D)
        cursor = paging.decode(page_token)
        after: tuple[datetime, UUID] | None = None
        if cursor is not None:
            try:
                after = (datetime.fromisoformat(cursor["t"]), UUID(cursor["i"]))
            except (KeyError, TypeError, ValueError):
                raise paging.invalid_token(domain=D) from None
        size = paging.page_size(page_size)
        views: list[ChannelView] = []
        if cursor is None:
            user = await self._repo.get_user(principal.user.user_id)
            if user is not None and user.email and user.email_verify_time is not None:
                views.append(
                    ChannelView(
                        id=model.EMAIL_CHANNEL_ID,
                        kind="email",
                        email=user.email,
                        create_time=user.email_verify_time,
                        confirm_time=user.email_verify_time,
                    )
                )
        room = size - len(views)
        chats = await self._repo.list_channels(principal.user.user_id, after, room + 1)
        next_token = ""
        if len(chats) > room:
            chats = chats[:room]
            last = chats[-1] if chats else None
            if last is not None:
                next_token = paging.encode({"t": last.create_time.isoformat(), "i": str(last.id)})
            else:  # a page of size 1 held the email: the chats start on the next page
                next_token = paging.encode({"t": datetime.min.replace(tzinfo=UTC).isoformat(),
                                            "i": str(UUID(int=0))})  # fmt: skip
        views.extend(
            ChannelView(
                id=str(c.id),
                kind="telegram",
                telegram_chat_id=c.chat_id,
                bot=c.bot,
                create_time=c.create_time,
                confirm_time=c.confirm_time,
            )
            for c in chats
        )
        return views, next_token

    async def delete_channel(self, principal: Principal, channel_id: str, request_id: str) -> None:
        if principal.user is None:
            raise Unauthenticated("UNAUTHENTICATED", "no user", domain=D)
        if channel_id == model.EMAIL_CHANNEL_ID:
            raise FailedPrecondition(
                "EMAIL_CHANNEL_NOT_DELETABLE",
                "the email channel cannot be deleted; verify another address instead",
                domain=D,
            )
        target = _parse_uuid(channel_id, "channel_id")
        channel = await self._repo.delete_channel(principal.user.user_id, target)
        if channel is None:
            raise NotFound("CHANNEL_NOT_FOUND", "no such channel", domain=D)
        await self.record(
            actor=principal.label(),
            action="channel.telegram_deleted",
            target=f"user:{channel.user_id}",
            request_id=request_id,
            attributes={"channel_id": str(channel.id), "bot": channel.bot},
        )

    async def set_language(self, principal: Principal, language: str) -> User:
        if principal.user is None:
            raise Unauthenticated("UNAUTHENTICATED", "no user", domain=D)
        # The request's pattern (ru|en|fr, model.LANGUAGES) is enforced by the pipeline.
        user = await self._repo.set_language(principal.user.user_id, language)
        if user is None:
            raise NotFound("USER_NOT_FOUND", "the user does not exist", domain=D)
        await self._invalidate(user_id=user.id)
        return user


def _chat_bound_elsewhere() -> AlreadyExists:
    return AlreadyExists(
        "TELEGRAM_CHAT_BOUND_ELSEWHERE",
        "this chat is already bound to another account; unbind it there first",
        domain=D,
    )


def _parse_uuid(value: str, field: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidArgument(
            "INVALID_FIELDS",
            f"{field} must be a UUID",
            violations=[FieldViolation(field, "must be a UUID")],
            domain=D,
        ) from None
