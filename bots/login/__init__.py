"""The login bot (``SWITCHBOARD_LOGIN_BOT_TOKEN``, service principal ``login-bot``)."""

from __future__ import annotations

from bots.login.handlers import BOT_NAME, router
from bots.login.messages import MESSAGES, REASONS
from bots.runtime.spec import BotSpec

__all__ = ["SPEC"]

SPEC = BotSpec(
    name=BOT_NAME,
    principal="login-bot",
    router=router,
    messages=MESSAGES,
    commands={"start": "command.start", "language": "command.language"},
    reasons=REASONS,
)
