"""The fake Bot API answers aiogram's Bot like Telegram does (tests/support/fake_telegram.py)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup

from tests.support.fake_telegram import FakeBotApi

TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
async def bot(fake: FakeBotApi) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url, is_local=True))
    value = Bot(TOKEN, session=session)
    try:
        yield value
    finally:
        await value.session.close()


async def test_get_me_and_send_message(fake: FakeBotApi, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "test123456_bot"

    first = await bot.send_message(42, "hello <b>you</b>", parse_mode="HTML")
    second = await bot.send_message(42, "123")
    assert second.message_id == first.message_id + 1
    assert first.chat.id == 42
    assert first.text == "hello <b>you</b>"
    assert first.date.timestamp() == pytest.approx(time.time(), abs=5)

    sent = fake.sent_messages(42)
    assert [p["text"] for p in sent] == ["hello <b>you</b>", "123"]
    assert sent[0]["chat_id"] == 42
    assert sent[0]["parse_mode"] == "HTML"
    assert isinstance(sent[1]["text"], str)  # text fields are never JSON-decoded
    call = fake.calls_of("sendMessage")[0]
    assert call.token == TOKEN
    assert call.response["message_id"] == first.message_id
    assert call.time <= fake.calls_of("sendMessage")[1].time
    assert fake.sent_messages(43) == []


async def test_reply_markup_edit_and_delete(fake: FakeBotApi, bot: Bot) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="yes")]]
    )
    message = await bot.send_message(7, "choose", reply_markup=markup)
    params = fake.sent_messages(7)[0]
    assert params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"

    edited = await bot.edit_message_text("chosen", chat_id=7, message_id=message.message_id)
    assert not isinstance(edited, bool)
    assert edited.text == "chosen"
    await bot.edit_message_reply_markup(chat_id=7, message_id=message.message_id)
    assert await bot.delete_message(7, message.message_id) is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(7, message.message_id)
    assert await bot.answer_callback_query("1", text="ok", show_alert=True) is True
    answer = fake.calls_of("answerCallbackQuery")[0].params
    assert answer == {"callback_query_id": "1", "text": "ok", "show_alert": True}


async def test_commands_webhook_and_harmless_methods(fake: FakeBotApi, bot: Bot) -> None:
    assert await bot.set_my_commands([BotCommand(command="start", description="Start")])
    assert fake.calls_of("setMyCommands")[0].params["commands"] == [
        {"command": "start", "description": "Start"}
    ]
    hook_secret = secrets.token_urlsafe(16)
    assert await bot.set_webhook("https://example.test/hook", secret_token=hook_secret)
    info = await bot.get_webhook_info()
    assert info.url == "https://example.test/hook"
    assert fake.calls_of("setWebhook")[0].params["secret_token"] == hook_secret
    # While a webhook is set, getUpdates conflicts, as on Telegram.
    with pytest.raises(Exception, match="webhook is active"):
        await bot.get_updates(timeout=0)
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.close()
    assert await bot.log_out()


async def test_error_injection(fake: FakeBotApi, bot: Bot) -> None:
    fake.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(1, "x")
    assert caught.value.retry_after == 3
    await bot.send_message(1, "x")  # only the next call failed

    fake.fail_next("sendMessage", status=400, times=2, chat_id=2)
    await bot.send_message(3, "other chat is not affected")
    for _ in range(2):
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.send_message(2, "x")
    await bot.send_message(2, "x")

    fake.block_chat(5)
    for _ in range(3):
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await bot.send_message(5, "x")
    assert fake.sent_messages(5) == []
    blocked = fake.calls_of("sendMessage")[-1]
    assert blocked.response == {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    statuses = [c.status for c in fake.calls_of("sendMessage")]
    assert statuses == [429, 200, 200, 400, 400, 200, 403, 403, 403]


async def test_updates_long_poll_and_offset(fake: FakeBotApi, bot: Bot) -> None:
    assert await bot.get_updates(timeout=0) == []
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    await fake.user_sends(TOKEN, 42, "/start abc", language_code="fr")
    updates = await poll
    assert time.monotonic() - started < 3
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None
    assert message.text == "/start abc"
    assert message.from_user is not None
    assert message.from_user.id == 42
    assert message.from_user.language_code == "fr"
    assert message.entities is not None
    assert message.entities[0].type == "bot_command"

    # Not confirmed yet: served again; confirmed by the next offset.
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]
    sent = await bot.send_message(42, "pick", reply_markup=None)
    await fake.user_presses(TOKEN, 42, sent.message_id, "pick:1", user_id=42)
    rest = await bot.get_updates(offset=updates[0].update_id + 1, timeout=1)
    assert len(rest) == 1
    query = rest[0].callback_query
    assert query is not None
    assert query.data == "pick:1"
    assert query.message is not None
    assert query.message.message_id == sent.message_id
    assert await bot.get_updates(offset=rest[0].update_id + 1, timeout=0) == []

    # An empty long poll waits about `timeout`.
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert 0.8 < time.monotonic() - started < 3


async def test_wait_for_message(fake: FakeBotApi, bot: Bot) -> None:
    mark = fake.mark()
    waiter = asyncio.create_task(fake.wait_for_message(9, lambda p: "two" in p["text"]))
    await bot.send_message(9, "one")
    await bot.send_message(9, "two")
    assert (await waiter)["text"] == "two"
    assert (await fake.wait_for_message(9, since=mark))["text"] == "one"
    with pytest.raises(TimeoutError, match="no matching message"):
        await fake.wait_for_message(9, since=fake.mark(), timeout=0.2)


async def test_json_body_and_unknown_method(fake: FakeBotApi) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{fake.base_url}/bot{TOKEN}/sendMessage"
        async with http.post(url, json={"chat_id": 11, "text": "json body"}) as resp:
            body = await resp.json()
        assert body["ok"] is True
        assert body["result"]["chat"]["id"] == 11
        async with http.post(f"{fake.base_url}/bot{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert (await resp.json())["ok"] is False
        async with http.get(f"{fake.base_url}/botnotoken/getMe") as resp:
            assert resp.status == 401
    assert fake.sent_messages(11)[0]["text"] == "json body"
    assert [c.method for c in fake.calls] == ["sendMessage", "noSuchMethod", "getMe"]


async def test_multipart_body_is_recorded(fake: FakeBotApi) -> None:
    form = aiohttp.FormData()
    form.add_field("chat_id", "12")
    form.add_field("caption", "42")
    form.add_field("document", b"hello", filename="a.txt")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.base_url}/bot{TOKEN}/sendDocument", data=form) as resp,
    ):
        assert resp.status == 404  # not implemented, but recorded
    params = fake.calls_of("sendDocument")[0].params
    assert params == {"chat_id": 12, "caption": "42", "document": {"filename": "a.txt", "size": 5}}


async def test_revoked_token_is_unauthorized(fake: FakeBotApi, bot: Bot) -> None:
    from aiogram.exceptions import TelegramUnauthorizedError

    assert (await bot.get_me()).id == 123456
    fake.revoke_token(TOKEN)
    with pytest.raises(TelegramUnauthorizedError):
        await bot.get_me()
    assert [c.status for c in fake.calls_of("getMe")] == [200, 401]


async def test_allowed_updates_filter_what_is_delivered(fake: FakeBotApi, bot: Bot) -> None:
    await fake.user_presses(TOKEN, 42, 1, "ignored")
    await fake.user_sends(TOKEN, 42, "kept")
    updates = await bot.get_updates(timeout=0, allowed_updates=["message"])
    assert [u.message.text for u in updates if u.message] == ["kept"]
    assert all(u.callback_query is None for u in updates)
