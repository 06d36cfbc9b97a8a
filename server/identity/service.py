"""Identity use cases: logins, sessions, service principals, roles, audit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from pydantic import SecretStr

from server.identity import model
from server.identity.model import ActingUsers, IssuedSession, SessionCache, User
from server.identity.repository import IdentityRepository
from server.kernel import paging
from server.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
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

log = logging.getLogger(__name__)
D = model.DOMAIN


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
    ) -> None:
        self._repo = repo
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
            return Principal(user=await self._act_as(service, act_as), service=service)
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

    async def _act_as(self, service: ServicePrincipal, raw_telegram_id: str) -> UserPrincipal:
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
            if user is None:
                user = await self._repo.upsert_telegram_user(
                    telegram_user_id,
                    "",
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
                raise _bad_page_token() from None
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
                raise _bad_page_token()
        size = paging.page_size(page_size)
        events = await self._repo.list_audit_events(before, action or None, size + 1)
        next_token = ""
        if len(events) > size:
            events = events[:size]
            next_token = paging.encode({"b": events[-1].id})
        return events, next_token


def _bad_page_token() -> InvalidArgument:
    return InvalidArgument(
        "INVALID_PAGE_TOKEN",
        "page_token is not a token this API returned",
        violations=[
            FieldViolation("page_token", "is not a valid page token", "INVALID_PAGE_TOKEN")
        ],
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
