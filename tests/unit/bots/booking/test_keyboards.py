# ruff: noqa: RUF001  (Russian texts: Cyrillic letters are intended)
"""Keyboards of the booking bot, its message catalog and its reason map."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup
from google.protobuf import timestamp_pb2
from switchboard.booking.v1 import booking_pb2 as pb

from bots.booking import SPEC
from bots.booking.callbacks import (
    BookingCancel,
    ClientDate,
    ClientMaster,
    DayOffToggle,
    LunchChoice,
    MasterCancel,
    MasterDay,
    Menu,
    expand_uuid,
)
from bots.booking.keyboards import (
    LUNCH_CLEAR,
    LUNCH_TYPE,
    cancel_ask_keyboard,
    confirm_keyboard,
    dates_keyboard,
    day_schedule_keyboard,
    days_off_keyboard,
    lunch_keyboard,
    main_menu,
    masters_keyboard,
    my_booking_keyboard,
    slots_keyboard,
    week_keyboard,
)
from bots.booking.messages import BUTTONS, MESSAGES, REASONS, RU
from bots.registry import BOTS
from bots.runtime.i18n import LANGUAGES, RUNTIME_MESSAGES, Catalog
from bots.runtime.middlewares import Texts

ROOT = Path(__file__).resolve().parents[4]
MOSCOW = ZoneInfo("Europe/Moscow")
t = Texts(Catalog(RUNTIME_MESSAGES, MESSAGES), "ru")
M1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
M2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def labels(markup: InlineKeyboardMarkup) -> list[list[str]]:
    return [[b.text for b in row] for row in markup.inline_keyboard]


def datas(markup: InlineKeyboardMarkup) -> list[str]:
    found = [b.callback_data or "" for row in markup.inline_keyboard for b in row]
    assert all(0 < len(d.encode()) <= 64 for d in found)
    return found


def test_main_menu() -> None:
    client = main_menu(False)
    assert [[b.text for b in row] for row in client.keyboard] == [
        ["Записаться", "Моя запись"],
        ["Помощь"],
    ]
    assert client.is_persistent
    assert client.resize_keyboard
    master = main_menu(True)
    assert [[b.text for b in row] for row in master.keyboard] == [
        ["Сегодня", "Неделя"],
        ["Выходной", "Обед"],
        ["Ручная запись"],
        ["Записаться", "Моя запись"],
        ["Помощь"],
    ]
    assert {b.text for row in master.keyboard for b in row} == set(BUTTONS.values())


def test_masters_keyboard_carries_the_master() -> None:
    masters = [pb.Master(id=M1, display_name="Алексей"), pb.Master(id=M2, display_name="Марина")]
    markup = masters_keyboard(masters, lambda m: ClientMaster(m=m).pack())
    assert labels(markup) == [["Алексей"], ["Марина"]]
    assert [expand_uuid(ClientMaster.unpack(d).m) for d in datas(markup)] == [M1, M2]


def test_dates_three_per_row_then_back() -> None:
    days = [date(2026, 11, d) for d in range(23, 30)]
    markup = dates_keyboard(
        days,
        lambda d: ClientDate(m="a" * 22, s="haircut", d=d.strftime("%Y%m%d")).pack(),
        ("« Назад", Menu(action="book").pack()),
    )
    assert labels(markup) == [
        ["Пн 23.11", "Вт 24.11", "Ср 25.11"],
        ["Чт 26.11", "Пт 27.11", "Сб 28.11"],
        ["Вс 29.11"],
        ["« Назад"],
    ]
    assert ClientDate.unpack(datas(markup)[0]).d == "20261123"


def test_slots_four_per_row() -> None:
    slots = [pb.Slot(local_time=f"{h:02d}:00") for h in range(10, 16)]
    markup = slots_keyboard(slots, lambda s: "x:" + s.local_time.replace(":", ""), ("back", "b"))
    assert labels(markup) == [["10:00", "11:00", "12:00", "13:00"], ["14:00", "15:00"], ["back"]]


def test_confirm_and_cancel_keyboards() -> None:
    markup = confirm_keyboard(t, "ok", "back")
    assert labels(markup) == [["✅ Подтвердить"], ["« Назад"]]
    other = confirm_keyboard(t, "ok", "close", back_label=t("button.cancel_flow"))
    assert labels(other)[-1] == ["✖ Не записываться"]
    booking = pb.Booking(id=M1)
    [data] = datas(my_booking_keyboard(t, booking))
    assert BookingCancel.unpack(data) == BookingCancel(b=BookingCancel.unpack(data).b, sure=0)
    assert expand_uuid(BookingCancel.unpack(data).b) == M1
    ask = cancel_ask_keyboard(t, booking)
    assert labels(ask) == [["Да, отменить", "Нет, оставить"]]
    yes, no = datas(ask)
    assert BookingCancel.unpack(yes).sure == 1
    assert Menu.unpack(no).action == "my"


def _ts(h: int, m: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(
        seconds=int(datetime(2026, 11, 25, h, m, tzinfo=UTC).timestamp())
    )


def test_day_schedule_offers_cancel_for_active_future_bookings_only() -> None:
    now = int(datetime(2026, 11, 25, 9, 30, tzinfo=UTC).timestamp())
    bookings = [
        pb.Booking(id=M1, client_name="Past", start_time=_ts(8), status=pb.BOOKING_STATUS_ACTIVE),
        pb.Booking(id=M2, client_name="Иван", start_time=_ts(11), status=pb.BOOKING_STATUS_ACTIVE),
        pb.Booking(
            id=M1, client_name="Gone", start_time=_ts(12), status=pb.BOOKING_STATUS_CANCELLED
        ),
    ]
    day = date(2026, 11, 25)
    markup = day_schedule_keyboard(
        t,
        bookings,
        day,
        MOSCOW,
        previous=date(2026, 11, 24),
        following=date(2026, 11, 26),
        now_seconds=now,
    )
    assert labels(markup) == [["Отменить 14:00 Иван"], ["‹ Вт 24.11", "Чт 26.11 ›"]]
    cancel, prev, nxt = datas(markup)
    assert expand_uuid(MasterCancel.unpack(cancel).b) == M2
    assert MasterDay.unpack(prev).d == "20261124"
    assert MasterDay.unpack(nxt).d == "20261126"


def test_week_and_days_off() -> None:
    days = [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)]
    week = week_keyboard(days, {date(2026, 11, 24): 3})
    assert labels(week) == [["Пн 23.11 (0)", "Вт 24.11 (3)"], ["Ср 25.11 (0)"]]
    off = days_off_keyboard(days, {date(2026, 11, 24)})
    assert labels(off) == [["Пн 23.11", "🚫 Вт 24.11", "Ср 25.11"]]
    toggles = [DayOffToggle.unpack(d) for d in datas(off)]
    assert [(x.d, x.off) for x in toggles] == [("20261123", 1), ("20261124", 0), ("20261125", 1)]


def test_lunch_keyboard() -> None:
    markup = lunch_keyboard(t)
    assert labels(markup) == [
        ["12:00–13:00", "13:00–14:00"],
        ["14:00–15:00", "15:00–16:00"],
        ["Без обеда", "Другое время…"],
    ]
    choices = [LunchChoice.unpack(d) for d in datas(markup)]
    assert choices[1] == LunchChoice(start=780, end=840)
    assert choices[-2:] == [LUNCH_CLEAR, LUNCH_TYPE]


# -- the catalog and the reasons ----------------------------------------------------------------


def test_every_key_the_code_uses_exists() -> None:
    source = "\n".join(
        (ROOT / "bots" / "booking" / name).read_text(encoding="utf-8")
        for name in ("handlers.py", "keyboards.py", "render.py", "__init__.py")
    )
    used = set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", source))
    used |= set(REASONS.values()) | set(SPEC.commands.values())
    assert used, "no keys found"
    assert used <= set(RU), sorted(used - set(RU))
    # And no Russian text is dead (two keys are picked by a variable).
    own = set(RU) - set(RUNTIME_MESSAGES["ru"])
    dynamic = {"master.cancelled", "master.cancelled_manual"}
    assert own - used == dynamic


def test_every_template_formats() -> None:
    for key, template in RU.items():
        names = set(re.findall(r"{(\w+)}", template))
        assert template.format(**{n: "x" for n in names}), key


def test_every_reason_of_the_contract_has_a_message() -> None:
    proto = (ROOT / "proto/switchboard/booking/v1/booking.proto").read_text(encoding="utf-8")
    header = proto.split("service BookingService", 1)[0]
    reasons = set(re.findall(r"^//\s+([A-Z_]{4,})\s+[A-Z_]+\s", header, re.M))
    admin_only = {"USER_NOT_FOUND", "MASTER_EXISTS"}
    assert len(reasons) > 10
    assert reasons - admin_only <= set(REASONS), sorted(reasons - admin_only - set(REASONS))


def test_same_russian_catalog_in_every_language() -> None:
    assert set(MESSAGES) == set(LANGUAGES)
    assert all(MESSAGES[lang] == RU for lang in LANGUAGES)


def test_registered() -> None:
    assert SPEC in BOTS
    assert SPEC.name == "booking"
    assert SPEC.principal == "booking-bot"
    assert SPEC.token_env == "SWITCHBOARD_BOOKING_BOT_TOKEN"
    assert SPEC.service_token_env == "SWITCHBOARD_SERVICE_TOKEN_BOOKING_BOT"
    for env in ("dev", "test", "prod"):
        text = (ROOT / "configs" / f"{env}.yaml").read_text(encoding="utf-8")
        assert re.search(r"^  booking-bot:\n    scopes: \[identity\.act_as\]$", text, re.M), env
