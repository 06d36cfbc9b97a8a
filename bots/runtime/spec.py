"""What a bot is: a name, its router, its service principal and its messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiogram import Router

from bots.runtime.i18n import Messages

__all__ = ["BotSpec", "env_name"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def env_name(name: str) -> str:
    """ "login-bot" -> "LOGIN_BOT" (the part of an environment variable's name)."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


@dataclass(frozen=True)
class BotSpec:
    """One bot of the process.

    ``name`` is the bot's name in Switchboard (notifications address a chat "through bot
    <name>"); its token comes from ``SWITCHBOARD_<NAME>_BOT_TOKEN``. ``principal`` is the
    service principal it acts as (token ``SWITCHBOARD_SERVICE_TOKEN_<PRINCIPAL>``).
    ``router`` builds a fresh router (a router can belong to one dispatcher only).
    ``commands`` maps each command to the catalog key of its description (setMyCommands, per
    language); ``reasons`` maps server ErrorInfo reasons to catalog keys.
    """

    name: str
    principal: str
    router: Callable[[], Router]
    messages: Messages = field(default_factory=dict)
    commands: Mapping[str, str] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"bot name {self.name!r} must match {_NAME.pattern}")

    @property
    def token_env(self) -> str:
        return f"SWITCHBOARD_{env_name(self.name)}_BOT_TOKEN"

    @property
    def service_token_env(self) -> str:
        return f"SWITCHBOARD_SERVICE_TOKEN_{env_name(self.principal)}"

    def token(self, environ: Mapping[str, str]) -> str | None:
        value = environ.get(self.token_env, "").strip()
        return value or None
