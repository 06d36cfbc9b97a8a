# ruff: noqa: RUF001  (Russian texts: Cyrillic letters are intended)
"""Rendering and parsing of the booking bot (pure functions, Russian texts)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import timestamp_pb2
from switchboard.booking.v1 import booking_pb2 as pb

from bots.booking.messages import MESSAGES
from bots.booking.render import (
    booking_lines,
    count_by_day,
    day_label,
    fit_message,
    format_local_start,
    format_price,
    lunch_label,
    parse_hhmm,
    parse_lunch,
    schedule_line,
    schedule_text,
    service_label,
    slot_summary,
    valid_phone,
    zone,
)
from bots.runtime.app import catalog_for
from bots.runtime.i18n import RUNTIME_MESSAGES, Catalog
from bots.runtime.middlewares import Texts

MOSCOW = ZoneInfo("Europe/Moscow")
t = Texts(Catalog(RUNTIME_MESSAGES, MESSAGES), "ru")


def _ts(dt: datetime) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(dt.timestamp()))


def booking(**kw: object) -> pb.Booking:
    start = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # 14:00 in Moscow
    end = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    fields: dict[str, object] = {
        "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "master_display_name": "Алексей",
        "service_id": "haircut",
        "service_name": "Стрижка",
        "start_time": _ts(start),
        "end_time": _ts(end),
        "status": pb.BOOKING_STATUS_ACTIVE,
        "source": pb.BOOKING_SOURCE_CLIENT,
        "client_name": "Иван",
        "price_minor_units": 150000,
        "currency_code": "RUB",
        "local_start": "2026-11-25 14:00",
    }
    fields.update(kw)
    return pb.Booking(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (150000, "RUB", "1 500 ₽"),
        (220050, "RUB", "2 200,50 ₽"),
        (0, "RUB", "0 ₽"),
        (100000000, "RUB", "1 000 000 ₽"),
        (999, "USD", "9,99 $"),
        (1000, "GEL", "10 GEL"),
    ],
)
def test_prices(minor: int, currency: str, shown: str) -> None:
    assert format_price(minor, currency) == shown


def test_dates() -> None:
    assert day_label(date(2026, 11, 25)) == "Ср 25.11"
    assert day_label(date(2026, 11, 29), year=True) == "Вс 29.11.2026"
    assert format_local_start("2026-11-25 14:00") == "25.11.2026 14:00"
    assert format_local_start("garbage") == "garbage"
    assert zone("Europe/Moscow") == MOSCOW
    assert zone("Not/AZone") == ZoneInfo("UTC")
    assert zone("") == ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("13:30-14:15", (810, 855)),
        (" 13.30 – 14.15 ", (810, 855)),
        ("9:00-10:00", (540, 600)),
        ("13:00-24:00", (780, 1440)),
        ("14:00-13:00", None),  # start after end
        ("13:00-13:00", None),
        ("24:00-24:30", None),
        ("25:00-26:00", None),
        ("13:60-14:00", None),
        ("обед", None),
        ("", None),
    ],
)
def test_parse_lunch(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_lunch(text) == parsed


def test_parse_hhmm() -> None:
    assert parse_hhmm("00:00") == 0
    assert parse_hhmm("13.45") == 825
    assert parse_hhmm("24:00") == 1440
    for bad in ("24:01", "1:2", "ab:cd", ""):
        with pytest.raises(ValueError, match="not a time"):
            parse_hhmm(bad)


@pytest.mark.parametrize(
    ("phone", "ok"),
    [
        ("+7 900 123-45-67", True),
        ("+7(900)1234567", True),
        ("89001234567", True),
        ("12", False),
        ("phone", False),
        ("+7 900 123 45 67 89 00 11 22 33", False),
        ("", False),
    ],
)
def test_phones(phone: str, ok: bool) -> None:
    assert valid_phone(phone) is ok


def test_booking_for_the_client() -> None:
    text = booking_lines(t, booking())
    assert text == (
        "Мастер: Алексей\nУслуга: Стрижка (60 мин)\nКогда: 25.11.2026 14:00\nСтоимость: 1 500 ₽"
    )


def test_booking_cancelled_by_the_master_shows_the_reason() -> None:
    text = booking_lines(
        t,
        booking(
            status=pb.BOOKING_STATUS_CANCELLED,
            cancelled_by=pb.BOOKING_ACTOR_MASTER,
            cancel_reason="Заболел",
        ),
    )
    assert text.endswith("\nОтменена мастером: Заболел")
    by_client = booking_lines(
        t, booking(status=pb.BOOKING_STATUS_CANCELLED, cancelled_by=pb.BOOKING_ACTOR_CLIENT)
    )
    assert by_client.endswith("\nОтменена клиентом")


def test_booking_for_the_master_shows_the_client() -> None:
    manual = booking(source=pb.BOOKING_SOURCE_MANUAL, client_phone="+7 900 123-45-67")
    text = booking_lines(t, manual, for_master=True)
    assert text.splitlines()[:2] == ["Клиент: Иван", "Телефон: +7 900 123-45-67"]
    assert "Мастер:" not in text


def test_schedule_lines_in_local_time() -> None:
    assert schedule_line(t, booking(), MOSCOW) == "14:00–15:00 Иван · Стрижка"
    manual = booking(client_phone="+7 900 123-45-67", client_name="Пётр")
    assert schedule_line(t, manual, MOSCOW) == "14:00–15:00 Пётр (+7 900 123-45-67) · Стрижка"
    cancelled = booking(status=pb.BOOKING_STATUS_CANCELLED)
    assert schedule_line(t, cancelled, MOSCOW).endswith("(отменена)")
    # The same instant on a Berlin clock.
    assert schedule_line(t, booking(), ZoneInfo("Europe/Berlin")).startswith("12:00–13:00")


def test_schedule_text() -> None:
    assert schedule_text(t, "Расписание:", [], MOSCOW) == "Расписание:\nЗаписей нет."
    late = booking(
        start_time=_ts(datetime(2026, 11, 26, 20, 30, tzinfo=UTC)),  # 23:30 Moscow
        end_time=_ts(datetime(2026, 11, 26, 21, 30, tzinfo=UTC)),  # 00:30 next day
    )
    text = schedule_text(t, "Неделя:", [booking(), late], MOSCOW, by_day=True)
    assert text.splitlines() == [
        "Неделя:",
        "",
        "Ср 25.11",
        "14:00–15:00 Иван · Стрижка",
        "",
        "Чт 26.11",
        "23:30–00:30 Иван · Стрижка",
    ]
    assert count_by_day([booking(), late, booking()], MOSCOW) == {
        date(2026, 11, 25): 2,
        date(2026, 11, 26): 1,
    }


def test_slot_summary_and_service_label() -> None:
    service = pb.ServiceOption(
        id="haircut_beard",
        name="Стрижка + борода",
        duration_minutes=90,
        price_minor_units=220000,
        currency_code="RUB",
    )
    assert service_label(service) == "Стрижка + борода · 90 мин · 2 200 ₽"
    summary = slot_summary(t, master="Марина", service=service, when="25.11.2026 14:00")
    assert summary.splitlines() == [
        "Мастер: Марина",
        "Услуга: Стрижка + борода (90 мин)",
        "Когда: 25.11.2026 14:00",
        "Стоимость: 2 200 ₽",
    ]
    manual = slot_summary(
        t, master=None, service=service, when="x", client="Пётр", phone="+7 900 1234567"
    )
    assert manual.splitlines()[:2] == ["Клиент: Пётр", "Телефон: +7 900 1234567"]


def test_lunch_label() -> None:
    master = pb.Master(lunch=pb.LocalTimeRange(start_time="13:00", end_time="14:00"))
    assert lunch_label(master) == "13:00–14:00"
    assert lunch_label(pb.Master()) is None


def test_fit_message_cuts_at_a_line() -> None:
    assert fit_message("short") == "short"
    long = "\n".join(f"line {i:04d}" for i in range(1000))
    cut = fit_message(long, more="…и ещё")
    assert len(cut) <= 4096
    assert cut.endswith("\n…и ещё")
    assert all(line.startswith("line ") for line in cut.splitlines()[:-1])


def test_the_bot_speaks_russian_to_everyone() -> None:
    """Russian for every user language, the runtime's own messages (errors, throttling) too."""
    from bots.booking import SPEC

    catalog = catalog_for(SPEC)
    for language in ("en", "fr", "ru", "de", None):
        assert catalog.text(language, "error.permission_denied") == (
            "Извините, у вас нет прав на это действие."
        )
        assert catalog.text(language, "throttled", seconds=3).startswith("Вы отправляете")
        assert catalog.text(language, "reason.slot_taken").startswith("Это время только что")


def test_a_client_without_a_name() -> None:
    """Users first seen by the bot have no display name yet: shown as a dash, never blank."""
    unnamed = booking(client_name="")
    assert booking_lines(t, unnamed, for_master=True).startswith("Клиент: —\n")
    assert schedule_line(t, unnamed, MOSCOW) == "14:00–15:00 — · Стрижка"
