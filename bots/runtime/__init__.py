"""The shared runtime of Switchboard's Telegram bots (aiogram 3).

- :mod:`bots.runtime.spec`: :class:`BotSpec`, what a bot is (name, token variable, router).
- :mod:`bots.runtime.app`: :class:`BotApp`, several bots in one process (polling or webhook).
- :mod:`bots.runtime.middlewares`: throttling, the platform user per update, role gating.
- :mod:`bots.runtime.platform`: gRPC to the server as a service principal acting as the user.
- :mod:`bots.runtime.i18n`, :mod:`bots.runtime.errors`: languages and server errors as text.
"""

from bots.runtime.app import BotApp, ConfigError
from bots.runtime.i18n import Catalog, pick_language
from bots.runtime.middlewares import Texts, requires
from bots.runtime.platform import Platform, PlatformClient
from bots.runtime.spec import BotSpec

__all__ = [
    "BotApp",
    "BotSpec",
    "Catalog",
    "ConfigError",
    "Platform",
    "PlatformClient",
    "Texts",
    "pick_language",
    "requires",
]
