"""The login bot: ``/start <code>`` confirms a login handshake, ``/start bind_<code>`` binds the
chat for notifications, plain ``/start`` says hello, ``/language xx`` sets the user's language."""

from __future__ import annotations

import re

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from switchboard.identity.v1 import channels_pb2, identity_pb2

from bots.runtime.i18n import LANGUAGES
from bots.runtime.middlewares import Texts
from bots.runtime.platform import Platform, UserCache

__all__ = ["BOT_NAME", "router"]

BOT_NAME = "login"
BIND_PREFIX = "bind_"
# The shapes the server accepts (identity.proto / channels.proto); anything else is refused here
# with the same answer as an unknown code, without a server call.
_LOGIN_CODE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# The payload as received (the server strips the prefix; its request pattern is the same).
_BIND_CODE = re.compile(r"^bind_[A-Za-z0-9]{8,64}$")


def router() -> Router:
    r = Router(name=BOT_NAME)
    r.message.register(start_with_code, CommandStart(deep_link=True))
    r.message.register(start, CommandStart())
    r.message.register(language, Command("language"))
    r.message.register(unknown, F.text)
    return r


async def start_with_code(
    message: Message, command: CommandObject, platform: Platform, t: Texts
) -> None:
    payload = (command.args or "").strip()
    if payload.startswith(BIND_PREFIX):
        await _bind(message, payload, platform, t)
        return
    if not _LOGIN_CODE.match(payload):
        await message.answer(t("login.code_not_found"))
        return
    sender = message.from_user
    await platform.auth.ConfirmTelegramLogin(
        identity_pb2.ConfirmTelegramLoginRequest(
            code=payload,
            display_name=(sender.full_name if sender else "")[:256],
            username=((sender.username if sender else None) or "")[:64],
        )
    )
    await message.answer(t("login.confirmed"))


async def _bind(message: Message, code: str, platform: Platform, t: Texts) -> None:
    if message.chat.type != ChatType.PRIVATE:
        await message.answer(t("bind.private_only"))
        return
    if not _BIND_CODE.match(code):
        await message.answer(t("bind.code_not_found"))
        return
    await platform.channels.ConfirmTelegramChannelBinding(
        channels_pb2.ConfirmTelegramChannelBindingRequest(
            code=code, chat_id=message.chat.id, bot=BOT_NAME
        )
    )
    await message.answer(t("bind.confirmed"))


async def start(message: Message, t: Texts) -> None:
    await message.answer(t("login.welcome"))


async def language(
    message: Message,
    command: CommandObject,
    platform: Platform,
    t: Texts,
    user_cache: UserCache | None = None,
) -> None:
    wanted = (command.args or "").strip().lower()
    if wanted not in LANGUAGES:
        await message.answer(t("language.usage"))
        return
    await platform.channels.SetLanguage(channels_pb2.SetLanguageRequest(language=wanted))
    if user_cache is not None and platform.telegram_user_id is not None:
        user_cache.forget(platform.telegram_user_id)
    await message.answer(t.catalog.text(wanted, "language.set"))


async def unknown(message: Message, t: Texts) -> None:
    await message.answer(t("unknown"))
