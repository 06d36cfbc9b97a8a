"""Who is calling: pure types shared by the kernel and the domains."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from uuid import UUID


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    user_id: UUID
    role: Role
    session_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: anonymous, a user (session), a service, or a service acting as a user."""

    user: UserPrincipal | None = None
    service: ServicePrincipal | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.user is None and self.service is None

    def label(self) -> str:
        """Non-secret identity for logs, audit and rate-limit keys."""
        if self.user is not None and self.service is not None:
            return f"user:{self.user.user_id}(via service:{self.service.name})"
        if self.user is not None:
            return f"user:{self.user.user_id}"
        if self.service is not None:
            return f"service:{self.service.name}"
        return "anonymous"


ANONYMOUS = Principal()

# The scope a service needs to act on behalf of a Telegram user (x-telegram-user-id).
ACT_AS_SCOPE = "identity.act_as"

# Session tokens start with this, so a leaked one is recognisable (and scrubbed from logs).
SESSION_TOKEN_PREFIX = "sbs_"  # noqa: S105  (a prefix, not a secret)
