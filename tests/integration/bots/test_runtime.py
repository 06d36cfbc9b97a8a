"""The bot runtime against the real server: role gating, permission errors, webhook mode."""

from __future__ import annotations

import secrets as pysecrets
import time

import aiohttp
from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.options.v1 import access_pb2

from bots.login import SPEC as LOGIN
from bots.runtime import BotSpec, Platform, Texts, requires
from server.devstack.embedded import free_port
from tests.conftest import Platform as Stack
from tests.integration.bots.conftest import StartBots, bot_environ, say
from tests.support.api import next_telegram_id
from tests.support.fake_telegram import FakeBotApi
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

GATE_TOKEN = f"{700_000 + pysecrets.randbelow(99_999)}:" + pysecrets.token_urlsafe(30)


async def _count_users(message: Message, platform: Platform, t: Texts) -> None:
    users = await platform.admin.ListUsers(pb.ListUsersRequest(page_size=5))
    await message.answer(f"users: {len(users.users)}")


async def _menu(message: Message) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="One", callback_data="pick:1")],
            [InlineKeyboardButton(text="Admin", callback_data="admin:wipe")],
        ]
    )
    await message.answer("Pick one", reply_markup=keyboard)


async def _picked(query: CallbackQuery, me: pb.User) -> None:
    await query.answer("ok")
    if isinstance(query.message, Message):
        await query.message.edit_text(f"picked {query.data} by {me.id}")


def _gate_router() -> Router:
    router = Router(name="gate")
    router.message.register(_menu, Command("menu"))
    router.callback_query.register(_picked, F.data.startswith("pick:"))
    router.callback_query.register(
        _picked, F.data.startswith("admin:"), flags=requires(access_pb2.ROLE_ADMIN)
    )
    # Declared role: refused by the runtime before any call when the server says "user".
    router.message.register(_count_users, Command("users"), flags=requires(access_pb2.ROLE_ADMIN))
    # Not declared: the server refuses (PERMISSION_DENIED) and the runtime says so.
    router.message.register(_count_users, Command("users_anyway"))
    return router


GATE = BotSpec(name="gate", principal="login-bot", router=_gate_router)


async def test_roles_are_decided_by_the_server(
    platform: Stack, fake: FakeBotApi, start_bots: StartBots
) -> None:
    environ = bot_environ(platform, SWITCHBOARD_GATE_BOT_TOKEN=GATE_TOKEN)
    app = await start_bots(specs=(LOGIN, GATE), environ=environ)
    assert sorted(r.spec.name for r in app.bots) == ["gate", "login"]
    user = next_telegram_id()
    refused = await say(fake, GATE_TOKEN, user, "/users", language_code="ru")
    assert refused == "Извините, у вас нет прав на это действие."  # noqa: RUF001
    denied = await say(fake, GATE_TOKEN, user, "/users_anyway")
    assert denied == "Sorry, you are not allowed to do that."
    # The super admin (by configuration, on the server) passes both.
    admin_answer = await say(fake, GATE_TOKEN, SUPER_ADMIN_TELEGRAM_ID, "/users")
    assert admin_answer.startswith("users: ")
    # Both bots run in the same process, each on its own token.
    welcome = await say(fake, platform.secrets.login_bot_token, user, "/start")
    assert welcome.startswith("Hello!")


async def test_webhook_mode_checks_the_secret_token(
    platform: Stack, fake: FakeBotApi, start_bots: StartBots
) -> None:
    port = free_port()
    secret = pysecrets.token_urlsafe(24)
    app = await start_bots(
        bot_mode="webhook",
        bot_webhook_url="https://bots.example.test/hooks",
        bot_webhook_secret=secret,
        bot_webhook_listen=f"127.0.0.1:{port}",
    )
    assert app.webhook_port == port
    token = platform.secrets.login_bot_token
    set_hook = fake.calls_of("setWebhook", token=token)[-1].params
    assert set_hook["url"] == "https://bots.example.test/hooks/login"
    assert set_hook["secret_token"] == secret
    assert "message" in set_hook["allowed_updates"]
    assert not fake.calls_of("getUpdates")  # no polling in webhook mode

    user = next_telegram_id()
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "W", "language_code": "fr"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    url = f"http://127.0.0.1:{port}/webhook/login"
    header = "X-Telegram-Bot-Api-Secret-Token"
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {header: "wrong"}, {header: secret + "x"}):
            async with http.post(url, json=update, headers=headers) as resp:
                assert resp.status == 403
        assert fake.sent_messages(user) == []
        async with http.post(url, json=update, headers={header: secret}) as resp:
            assert resp.status == 200
    answer = await fake.wait_for_message(user, token=token)
    assert answer["text"].startswith("Bonjour !")
    assert len(fake.sent_messages(user)) == 1


async def test_inline_buttons_and_role_gated_callbacks(
    platform: Stack, fake: FakeBotApi, start_bots: StartBots
) -> None:
    environ = bot_environ(platform, SWITCHBOARD_GATE_BOT_TOKEN=GATE_TOKEN)
    await start_bots(specs=(GATE,), environ=environ)
    user = next_telegram_id()
    mark = fake.mark()
    await fake.user_sends(GATE_TOKEN, user, "/menu")
    menu = await fake.wait_for_call(
        "sendMessage", lambda c: c.ok and c.params["chat_id"] == user, since=mark, timeout=10
    )
    buttons = menu.params["reply_markup"]["inline_keyboard"]
    assert [row[0]["callback_data"] for row in buttons] == ["pick:1", "admin:wipe"]
    menu_id = menu.response["message_id"]
    mark = fake.mark()
    await fake.user_presses(GATE_TOKEN, user, menu_id, "pick:1")
    edited = await fake.wait_for_call("editMessageText", since=mark, timeout=10)
    assert edited.params["text"].startswith("picked pick:1 by ")
    answered = await fake.wait_for_call("answerCallbackQuery", since=mark, timeout=10)
    assert answered.params["text"] == "ok"

    mark = fake.mark()
    await fake.user_presses(GATE_TOKEN, user, menu_id, "admin:wipe", language_code="fr")
    refused = await fake.wait_for_call("answerCallbackQuery", since=mark, timeout=10)
    assert refused.params == {
        "callback_query_id": refused.params["callback_query_id"],
        "text": "Désolé, vous n'avez pas le droit de faire cela.",
        "show_alert": True,
    }
    assert not fake.calls_of("editMessageText")[1:]  # nothing edited for the refused press
