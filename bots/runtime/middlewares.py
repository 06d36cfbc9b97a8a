"""The runtime's middlewares: throttling, the platform user of each update, role gating.

Registered by :func:`bots.runtime.app.build_dispatcher` in this order (outer, on ``update``):

1. :class:`ThrottlingMiddleware`: drops a user's updates beyond the configured rate, before
   they cost a server call, answering the first dropped one politely;
2. :class:`PlatformMiddleware`: resolves the Telegram user to the platform user (``GetMe``
   acting as that user, cached briefly), picks the answer language, and puts into the handler
   data ``platform`` (stubs acting as the user), ``me`` (the platform ``User``), ``lang`` and
   ``t`` (the localized message catalog); a server error raised by a handler becomes a short
   localized answer, anything else a generic one (the details go to the log, with the request id);

and (inner, on ``message`` and ``callback_query``) :class:`RoleMiddleware`: a handler declared
with ``flags=requires(Role.ROLE_ADMIN)`` is refused, with the localized "not allowed" answer,
when the role the server reported is lower. The server still checks every call itself: a
``PERMISSION_DENIED`` from it gets the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import grpc.aio
from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, Update, User
from switchboard.identity.v1 import identity_pb2
from switchboard.options.v1 import access_pb2

from bots.runtime.errors import explain
from bots.runtime.i18n import Catalog, pick_language
from bots.runtime.platform import PlatformClient, UserCache
from bots.runtime.throttling import Throttle

__all__ = [
    "PlatformMiddleware",
    "RoleMiddleware",
    "Texts",
    "ThrottlingMiddleware",
    "reply",
    "requires",
]

log = logging.getLogger("switchboard.bots")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class Texts:
    """The catalog in one language: ``t("key", name=value)``."""

    def __init__(self, catalog: Catalog, language: str) -> None:
        self.catalog = catalog
        self.language = language

    def __call__(self, key: str, /, **params: object) -> str:
        return self.catalog.text(self.language, key, **params)


def requires(role: int) -> dict[str, Any]:
    """Handler flags declaring the lowest role allowed (``access_pb2.Role`` value)."""
    return {"role": int(role)}


async def reply(event: TelegramObject, data: Mapping[str, Any], text: str) -> None:
    """Answers the update as best fits it (message reply, callback alert, or the chat)."""
    target: TelegramObject | None = event.event if isinstance(event, Update) else event
    try:
        if isinstance(target, Message):
            await target.answer(text)
        elif isinstance(target, CallbackQuery):
            await target.answer(text, show_alert=True)
        else:
            chat = data.get("event_chat")
            bot = data.get("bot")
            if isinstance(chat, Chat) and bot is not None:
                await bot.send_message(chat.id, text)
    except TelegramAPIError as exc:
        log.warning("could not answer the user: %s", exc)


class ThrottlingMiddleware(BaseMiddleware):
    """At most ``throttle.rate`` updates per user per ``throttle.window`` seconds."""

    def __init__(self, throttle: Throttle, catalog: Catalog) -> None:
        self.throttle = throttle
        self.catalog = catalog

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        if not isinstance(user, User):
            return await handler(event, data)
        decision = self.throttle.hit(user.id)
        if decision.allowed:
            return await handler(event, data)
        if decision.notify:
            log.info("throttled a user for %.1fs", decision.retry_after)
            language = pick_language(None, user.language_code)
            await reply(
                event,
                data,
                self.catalog.text(language, "throttled", seconds=decision.retry_after_seconds),
            )
        return None


class PlatformMiddleware(BaseMiddleware):
    """The platform user of each update, the acting stubs, the language; server errors -> text."""

    def __init__(
        self,
        client: PlatformClient,
        cache: UserCache,
        catalog: Catalog,
        reasons: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.catalog = catalog
        self.reasons = dict(reasons or {})

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        if not isinstance(user, User) or user.is_bot:
            data.update(
                platform=self.client.service, me=None, lang="en", t=Texts(self.catalog, "en")
            )
            return await handler(event, data)
        platform = self.client.acting(user.id, user.full_name)
        texts = Texts(self.catalog, pick_language(None, user.language_code))
        data.update(platform=platform, me=None, lang=texts.language, t=texts, user_cache=self.cache)
        try:
            me = self.cache.get(user.id)
            if me is None:
                me = (await platform.auth.GetMe(identity_pb2.GetMeRequest())).user
                self.cache.put(user.id, me)
            texts = Texts(self.catalog, pick_language(me.language, user.language_code))
            data.update(me=me, lang=texts.language, t=texts)
            return await handler(event, data)
        except grpc.aio.AioRpcError as exc:
            explained = explain(exc, self.reasons)
            if explained.code in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            ):
                self.cache.forget(user.id)  # the role may have changed: ask again next time
            await reply(event, data, texts(explained.key, **explained.params))
            return None
        except Exception:
            update = data.get("event_update")
            update_id = update.update_id if isinstance(update, Update) else "-"
            log.exception("update %s failed", update_id)
            await reply(event, data, texts("error.internal_no_id"))
            return None


_ROLE_NAMES = {
    "user": access_pb2.ROLE_USER,
    "admin": access_pb2.ROLE_ADMIN,
    "super_admin": access_pb2.ROLE_SUPER_ADMIN,
}


class RoleMiddleware(BaseMiddleware):
    """Refuses handlers flagged with a higher role than the server reported for the user."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        required = get_flag(data, "role")
        if required is None:
            return await handler(event, data)
        level = _ROLE_NAMES.get(required, 0) if isinstance(required, str) else int(required)
        me = data.get("me")
        role = me.role if isinstance(me, identity_pb2.User) else access_pb2.ROLE_UNSPECIFIED
        if role >= level > 0:
            return await handler(event, data)
        texts = data.get("t")
        text = texts("error.permission_denied") if isinstance(texts, Texts) else "Not allowed."
        await reply(event, data, text)
        return None
