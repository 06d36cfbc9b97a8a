"""Every bot of the project (``python -m bots`` runs those whose token is set)."""

from __future__ import annotations

from bots.booking import SPEC as BOOKING
from bots.login import SPEC as LOGIN
from bots.runtime.spec import BotSpec

__all__ = ["BOTS"]

BOTS: tuple[BotSpec, ...] = (LOGIN, BOOKING)
