"""The barbershop's booking bot (``SWITCHBOARD_BOOKING_BOT_TOKEN``, service principal
``booking-bot``): Russian menus for clients and masters over the booking domain's gRPC API."""

from __future__ import annotations

from bots.booking.handlers import BOT_NAME, router
from bots.booking.messages import MESSAGES, REASONS
from bots.runtime.spec import BotSpec

__all__ = ["SPEC"]

SPEC = BotSpec(
    name=BOT_NAME,
    principal="booking-bot",
    router=router,
    messages=MESSAGES,
    commands={
        "start": "command.start",
        "book": "command.book",
        "my": "command.my",
        "help": "command.help",
    },
    reasons=REASONS,
)
