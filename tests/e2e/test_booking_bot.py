# ruff: noqa: RUF001  (Russian texts: Cyrillic letters are intended)
"""End to end: the booking bot, the real server and the real dispatcher.

A client books through the bot's keyboards and receives the confirmation, delivered by the real
dispatcher (``python -m workers.dispatcher``, a child process) through the booking bot's token;
the master sees the booking in the schedule and cancels it with a reason; the client receives
the notice with that reason. A client asking for a master's tool is refused politely (by the
bot, and by the server too). Telegram is the fake Bot API on both sides.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from switchboard.booking.v1 import booking_pb2 as pb
from switchboard.booking.v1 import booking_pb2_grpc as pb_grpc

from bots.booking import SPEC as BOOKING
from bots.runtime.app import BotApp
from tests.conftest import Platform
from tests.integration.bots.booking.chat import (
    Chat,
    as_user,
    client_bookings,
    make_master,
    refused,
)
from tests.support.api import Api, next_telegram_id
from tests.support.bots import running_bots, running_dispatcher
from tests.support.fake_telegram import FakeBotApi

pytestmark = pytest.mark.e2e


@pytest.fixture
async def booking_bot(platform: Platform, fake: FakeBotApi) -> AsyncIterator[BotApp]:
    async with running_bots(
        platform, fake, BOOKING, bot_throttle_rate=100, bot_throttle_window=1.0
    ) as app:
        yield app


@pytest.fixture
def dispatcher(
    platform: Platform, fake: FakeBotApi, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log_path = workdir / "booking-bot-dispatcher.log"
    with running_dispatcher(platform, fake.base_url, log_path, BOOKING) as proc:
        yield proc


def _dispatcher_failed(exc: Exception, proc: subprocess.Popen[bytes], workdir: Path) -> None:
    log = (workdir / "booking-bot-dispatcher.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"{exc}; dispatcher exit code {proc.poll()}, log tail:\n{log}")


async def test_client_books_master_cancels_with_a_reason(
    api: Api,
    platform: Platform,
    fake: FakeBotApi,
    booking_bot: BotApp,
    dispatcher: subprocess.Popen[bytes],
    workdir: Path,
) -> None:
    token = platform.secrets.booking_bot_token
    master_name = f"Мастер {uuid.uuid4().hex[:6]}"
    master_tg = next_telegram_id()
    master, _ = await make_master(api, master_tg, master_name)
    client = Chat(fake, token, next_telegram_id())
    master_chat = Chat(fake, token, master_tg)

    # --- the client books through the keyboards ----------------------------------------------
    hello = await client.send("/start")
    assert hello.text.startswith("Здравствуйте! Я помогу записаться")
    assert hello.keyboard == [["Записаться", "Моя запись"], ["Помощь"]]

    masters = await client.send("Записаться")
    assert masters.text == "Выберите мастера:"
    services = await client.press(masters, master_name)
    assert services.text == f"Мастер: {master_name}\nВыберите услугу:"
    assert "Стрижка · 60 мин · 1 500 ₽" in services.labels
    dates = await client.press(services, lambda label: label.startswith("Стрижка ·"))
    assert dates.text == f"Мастер: {master_name}\nУслуга: Стрижка\nВыберите дату:"
    assert 1 <= len(dates.labels) - 1 <= 14  # the dates, then « Назад
    first_day = dates.labels[0]
    slots = await client.press(dates, first_day)
    assert slots.text.endswith(f"Дата: {first_day}\nВыберите время:")
    slot_time = slots.labels[0]
    assert re.fullmatch(r"[0-2][0-9]:[0-5][0-9]", slot_time)
    confirm = await client.press(slots, slot_time)
    assert confirm.text.startswith("Проверьте запись:\nМастер: " + master_name)
    assert "Услуга: Стрижка (60 мин)" in confirm.text
    assert "Стоимость: 1 500 ₽" in confirm.text
    when = re.search(r"Когда: ([0-9.]+ [0-9:]+)", confirm.text)
    assert when is not None
    assert when.group(1).endswith(slot_time)

    # A double tap on «Подтвердить»: one booking.
    data = confirm.data("✅ Подтвердить")
    mark, _ = await client.press_raw(confirm.message_id, data)
    await client.press_raw(confirm.message_id, data)
    done = await client.wait(mark, lambda text: text.startswith("Готово, вы записаны!"))
    assert f"Когда: {when.group(1)}" in done.text
    bookings = await client_bookings(api, client.user_id)
    assert len(bookings) == 1
    [booking] = bookings
    assert booking.status == pb.BOOKING_STATUS_ACTIVE
    assert booking.master_id == master.id

    # The confirmation, delivered by the dispatcher through the booking bot.
    try:
        notice = await client.wait(
            mark,
            lambda text: text.startswith("Вы записаны.") and master_name in text,
            methods=("sendmessage",),
            timeout=20,
        )
    except TimeoutError as exc:
        _dispatcher_failed(exc, dispatcher, workdir)
    assert f"Когда: {when.group(1)}" in notice.text

    # Booking again is refused while this one stands.
    again = await client.send("Записаться", lambda text: text.startswith("У вас уже есть"))
    assert "Отменить запись" in again.labels

    # --- the client tries a master's tool: refused politely, by the bot and by the server ------
    refusal = await client.send("Сегодня")
    assert refusal.text.startswith("Эта функция доступна только мастерам.")
    assert refusal.keyboard == [["Записаться", "Моя запись"], ["Помощь"]]
    assert (await client.send("/dayoff")).text == refusal.text
    denied = await refused(
        pb_grpc.MasterServiceStub(api.channel).SetDayOff(
            pb.SetDayOffRequest(date="2099-01-01"), metadata=as_user(api, client.user_id)
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED

    # --- the master sees it in the schedule and cancels it with a reason ---------------------
    hello = await master_chat.send("/start", lambda text: text.startswith("Здравствуйте, "))
    assert ["Сегодня", "Неделя"] in hello.keyboard
    week = await master_chat.send("Неделя", lambda text: text.startswith("Расписание на неделю"))
    assert f"{slot_time}–" in week.text
    assert "· Стрижка" in week.text
    day = await master_chat.press(
        week,
        lambda label: label.startswith(first_day) and label.endswith("(1)"),
        lambda text: text.startswith("Расписание на "),
    )
    ask = await master_chat.press(
        day,
        lambda label: label.startswith(f"Отменить {slot_time}"),
        lambda text: text.startswith("Отмена записи:"),
    )
    assert "Напишите причину отмены" in ask.text
    mark = fake.mark()
    cancelled = await master_chat.send(
        "Мастер заболел, простите", lambda text: text.startswith("Запись отменена.")
    )
    assert "Клиент получит уведомление с причиной" in cancelled.text
    assert "Отменена мастером: Мастер заболел, простите" in cancelled.text

    # --- the client receives the notice with that reason ---------------------------------------
    try:
        notice = await client.wait(
            mark,
            lambda text: "Мастер заболел, простите" in text,
            methods=("sendmessage",),
            timeout=20,
        )
    except TimeoutError as exc:
        _dispatcher_failed(exc, dispatcher, workdir)
    assert master_name in notice.text
    assert when.group(1) in notice.text
    [booking] = await client_bookings(api, client.user_id)
    assert booking.status == pb.BOOKING_STATUS_CANCELLED
    assert booking.cancelled_by == pb.BOOKING_ACTOR_MASTER
    assert booking.cancel_reason == "Мастер заболел, простите"

    # The client's «Моя запись» is empty again; the master got the booking.created notice.
    mine = await client.send("Моя запись", lambda text: text.startswith("У вас нет"))
    assert mine.labels == ["Записаться"]
    created = await master_chat.wait(
        0, lambda text: text.startswith("Новая запись."), methods=("sendmessage",), timeout=20
    )
    assert f"Когда: {when.group(1)}" in created.text
    assert dispatcher.poll() is None
