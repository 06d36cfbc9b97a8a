# ruff: noqa: RUF001  (Russian texts: Cyrillic letters are intended)
"""The booking bot against the real server and the fake Bot API (no dispatcher): the master's
tools, manual bookings, refusals, races with other clients, stale buttons."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from switchboard.booking.v1 import booking_pb2 as pb
from switchboard.booking.v1 import booking_pb2_grpc as pb_grpc

from bots.booking import SPEC as BOOKING
from bots.booking.callbacks import MasterCancel, short_uuid
from bots.booking.render import day_label
from bots.runtime.app import BotApp
from tests.conftest import Platform
from tests.integration.bots.booking.chat import (
    Chat,
    Screen,
    as_user,
    client_bookings,
    make_master,
)
from tests.integration.bots.conftest import StartBots
from tests.support.api import Api, next_telegram_id
from tests.support.fake_telegram import Call, FakeBotApi


@pytest.fixture
async def bot(platform: Platform, start_bots: StartBots) -> BotApp:
    environ = {
        BOOKING.token_env: platform.secrets.booking_bot_token,
        BOOKING.service_token_env: platform.secrets.booking_bot_service_token,
    }
    return await start_bots(specs=(BOOKING,), environ=environ, bot_throttle_rate=100)


def stub(api: Api) -> pb_grpc.BookingServiceAsyncStub:
    return pb_grpc.BookingServiceStub(api.channel)


async def shop_today(api: Api, telegram_id: int) -> date:
    profile = await stub(api).GetBookingProfile(
        pb.GetBookingProfileRequest(), metadata=as_user(api, telegram_id)
    )
    return datetime.now(ZoneInfo(profile.time_zone or "UTC")).date()


async def free_slots(api: Api, telegram_id: int, master_id: str, day: date) -> pb.AvailableDay:
    got = await stub(api).GetAvailability(
        pb.GetAvailabilityRequest(
            master_id=master_id, start_date=day.isoformat(), service_id="haircut"
        ),
        metadata=as_user(api, telegram_id),
    )
    [found] = got.days
    return found


async def book_via_api(api: Api, telegram_id: int, master_id: str, slot: pb.Slot) -> pb.Booking:
    created = await stub(api).CreateBooking(
        pb.CreateBookingRequest(
            master_id=master_id,
            service_id="haircut",
            start_time=slot.start_time,
            request_id=str(uuid.uuid4()),
        ),
        metadata=as_user(api, telegram_id),
    )
    return created.booking


async def to_confirmation(chat: Chat, master_name: str, service: str = "Стрижка") -> Screen:
    masters = await chat.send("Записаться", lambda text: text == "Выберите мастера:")
    services = await chat.press(masters, master_name)
    dates = await chat.press(services, lambda label: label.startswith(f"{service} ·"))
    slots = await chat.press(dates, dates.labels[0])
    return await chat.press(slots, slots.labels[0], lambda t: t.startswith("Проверьте запись"))


async def test_master_sets_a_day_off_and_back(
    api: Api, platform: Platform, fake: FakeBotApi, bot: BotApp
) -> None:
    token = platform.secrets.booking_bot_token
    master_tg = next_telegram_id()
    master, _ = await make_master(api, master_tg, f"Мастер {uuid.uuid4().hex[:6]}")
    chat = Chat(fake, token, master_tg)
    tomorrow = await shop_today(api, master_tg) + timedelta(days=1)
    label = day_label(tomorrow)

    screen = await chat.send("Выходной")
    assert screen.text.startswith("Выходные.")
    assert len(screen.labels) == 14  # every day is worked
    screen = await chat.press(screen, label)
    assert screen.text.startswith(f"{day_label(tomorrow, year=True)} — теперь выходной.")
    assert f"🚫 {label}" in screen.labels
    day = await free_slots(api, master_tg, master.id, tomorrow)
    assert day.day_off
    assert not day.slots

    screen = await chat.press(screen, f"🚫 {label}")
    assert screen.text.startswith(f"{day_label(tomorrow, year=True)} — снова рабочий день.")
    assert label in screen.labels
    day = await free_slots(api, master_tg, master.id, tomorrow)
    assert not day.day_off
    assert day.slots


async def test_day_off_refused_while_bookings_remain(
    api: Api, platform: Platform, fake: FakeBotApi, bot: BotApp
) -> None:
    token = platform.secrets.booking_bot_token
    master_tg = next_telegram_id()
    master, _ = await make_master(api, master_tg, f"Мастер {uuid.uuid4().hex[:6]}")
    tomorrow = await shop_today(api, master_tg) + timedelta(days=1)
    client_tg = next_telegram_id()
    day = await free_slots(api, client_tg, master.id, tomorrow)
    await book_via_api(api, client_tg, master.id, day.slots[3])

    chat = Chat(fake, token, master_tg)
    screen = await chat.send("Выходной")
    alert = await chat.alert(screen, screen.data(day_label(tomorrow)))
    assert alert == f"На {day_label(tomorrow, year=True)} есть записи (1). Сначала отмените их."
    assert not (await free_slots(api, master_tg, master.id, tomorrow)).day_off


async def test_master_changes_the_lunch_break(
    api: Api, platform: Platform, fake: FakeBotApi, bot: BotApp
) -> None:
    token = platform.secrets.booking_bot_token
    master_tg = next_telegram_id()
    await make_master(api, master_tg, f"Мастер {uuid.uuid4().hex[:6]}")
    chat = Chat(fake, token, master_tg)

    async def lunch() -> pb.LocalTimeRange | None:
        profile = await stub(api).GetBookingProfile(
            pb.GetBookingProfileRequest(), metadata=as_user(api, master_tg)
        )
        return profile.master.lunch if profile.master.HasField("lunch") else None

    screen = await chat.send("Обед")
    assert screen.text.startswith("Обед сейчас: 13:00–14:00.")
    done = await chat.press(screen, "14:00–15:00")
    assert done.text == "Обед: 14:00–15:00."
    assert await lunch() == pb.LocalTimeRange(start_time="14:00", end_time="15:00")

    screen = await chat.send("Обед")
    asked = await chat.press(screen, "Другое время…", lambda t: t.startswith("Напишите время"))
    assert asked.method == "sendMessage"
    assert (await chat.send("после трёх")).text.startswith("Не понял время.")
    assert (await chat.send("15:00-14:00")).text.startswith("Не понял время.")
    assert (await chat.send("12:30 - 13:15")).text == "Обед: 12:30–13:15."
    assert await lunch() == pb.LocalTimeRange(start_time="12:30", end_time="13:15")
    # The input is over: free text is not a lunch break any more.
    assert (await chat.send("11:00-12:00")).text.startswith("Не понял. Выберите действие")

    screen = await chat.send("Обед")
    assert (await chat.press(screen, "Без обеда")).text == "Обеденный перерыв убран."
    assert await lunch() is None


async def test_manual_booking_is_made_once(
    api: Api, platform: Platform, fake: FakeBotApi, bot: BotApp
) -> None:
    token = platform.secrets.booking_bot_token
    master_tg = next_telegram_id()
    master, _ = await make_master(api, master_tg, f"Мастер {uuid.uuid4().hex[:6]}")
    chat = Chat(fake, token, master_tg)

    services = await chat.send("Ручная запись")
    assert services.text == "Ручная запись. Выберите услугу:"
    dates = await chat.press(services, lambda label: label.startswith("Борода ·"))
    slots = await chat.press(dates, dates.labels[0])
    slot_time = slots.labels[0]
    asked = await chat.press(slots, slot_time)
    assert asked.text.startswith("Ручная запись: Борода, ")
    assert asked.text.endswith(f"{slot_time}.\nНапишите имя клиента.")
    assert (await chat.send("  Пётр   Иванов ")).text.startswith("Телефон клиента")
    assert (await chat.send("позвоню позже")).text.startswith("Не похоже на телефон.")
    confirm = await chat.send("+7 900 123-45-67")
    assert confirm.text.startswith(
        "Проверьте ручную запись:\nКлиент: Пётр Иванов\nТелефон: +7 900 123-45-67\n"
        "Услуга: Борода (60 мин)"
    )
    data = confirm.data("✅ Подтвердить")
    mark, first = await chat.press_raw(confirm.message_id, data)
    _, second = await chat.press_raw(confirm.message_id, data)
    done = await chat.wait(mark, lambda text: text.startswith("Ручная запись создана"))
    assert "Клиент: Пётр Иванов" in done.text
    # Both taps are answered (after their edits), so no late edit is mistaken for a reply below.
    for query_id in (first, second):

        def answers(call: Call, query_id: str = query_id) -> bool:
            return call.params.get("callback_query_id") == query_id

        await fake.wait_for_call("answerCallbackQuery", answers, since=mark)

    listed = await stub(api).ListBookings(
        pb.ListBookingsRequest(view=pb.BOOKING_VIEW_MASTER), metadata=as_user(api, master_tg)
    )
    manual = [b for b in listed.bookings if b.source == pb.BOOKING_SOURCE_MANUAL]
    assert [(b.client_name, b.client_phone, b.service_id) for b in manual] == [
        ("Пётр Иванов", "+7 900 123-45-67", "beard")
    ]
    assert manual[0].master_id == master.id

    # The master's day shows it, with the phone.
    week = await chat.send("Неделя")
    assert f"{slot_time}–" in week.text
    assert "Пётр Иванов (+7 900 123-45-67) · Борода" in week.text


async def test_a_slot_taken_meanwhile_shows_the_dates_again(
    api: Api, platform: Platform, fake: FakeBotApi, bot: BotApp
) -> None:
    token = platform.secrets.booking_bot_token
    name = f"Мастер {uuid.uuid4().hex[:6]}"
    master, _ = await make_master(api, next_telegram_id(), name)
    chat = Chat(fake, token, next_telegram_id())
    confirm = await to_confirmation(chat, name)

    # Another client takes the very slot on the screen.
    minutes = int(confirm.data("✅ Подтвердить").split(":")[3])
    other = next_telegram_id()
    slot = pb.Slot()
    slot.start_time.seconds = minutes * 60
    await book_via_api(api, other, master.id, slot)

    alert = await chat.alert(confirm, confirm.data("✅ Подтвердить"))
    assert alert == "Это время только что заняли. Выберите другое."
    screen = await chat.wait(0, lambda text: text.endswith("Выберите дату:"))
    assert screen.message_id == confirm.message_id
    assert await client_bookings(api, chat.user_id) == []


async def test_client_cancels_and_buttons_that_are_not_theirs(
    api: Api, platform: Platform, fake: FakeBotApi, bot: BotApp
) -> None:
    token = platform.secrets.booking_bot_token
    name = f"Мастер {uuid.uuid4().hex[:6]}"
    master, _ = await make_master(api, next_telegram_id(), name)
    chat = Chat(fake, token, next_telegram_id())
    day = await free_slots(
        api, chat.user_id, master.id, await shop_today(api, chat.user_id) + timedelta(days=2)
    )
    booking = await book_via_api(api, chat.user_id, master.id, day.slots[0])

    mine = await chat.send("Моя запись")
    assert mine.text.startswith(f"Ваша запись:\nМастер: {name}\n")
    ask = await chat.press(mine, "Отменить запись")
    assert ask.text.startswith("Отменить запись?")
    kept = await chat.press(ask, "Нет, оставить")
    assert kept.text.startswith("Ваша запись:")
    ask = await chat.press(kept, "Отменить запись")
    done = await chat.press(ask, "Да, отменить")
    assert done.text.startswith("Запись отменена.")
    assert done.text.endswith("Отменена клиентом")
    [cancelled] = await client_bookings(api, chat.user_id)
    assert cancelled.status == pb.BOOKING_STATUS_CANCELLED
    assert cancelled.cancelled_by == pb.BOOKING_ACTOR_CLIENT

    # Someone else's booking, through a forged master button: the server refuses.
    stranger = Chat(fake, token, next_telegram_id())
    hello = await stranger.send("/start")
    forged = MasterCancel(b=short_uuid(booking.id)).pack()
    alert = await stranger.alert(hello, forged)
    assert alert in {"Это не ваша запись.", "Запись не найдена."}
    # Buttons the bot never made.
    assert await stranger.alert(hello, "zz:1") == "Кнопка устарела. Откройте меню заново."
    assert await stranger.alert(hello, "cm:not-a-master") == (
        "Кнопка устарела. Откройте меню заново."
    )
    # Master tools, politely refused to a client.
    for command in ("Сегодня", "Неделя", "Выходной", "Обед", "Ручная запись", "/today"):
        refused = await stranger.send(command)
        assert refused.text.startswith("Эта функция доступна только мастерам."), command
