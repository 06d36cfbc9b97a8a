"""Callback data of the booking bot: compact codecs, the 64-byte limit, malformed data refused."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from aiogram.filters.callback_data import CallbackData

from bots.booking.callbacks import (
    BookingCancel,
    ClientConfirm,
    ClientDate,
    ClientMaster,
    ClientService,
    ClientSlot,
    DayOffToggle,
    LunchChoice,
    ManualConfirm,
    ManualDate,
    ManualService,
    ManualSlot,
    MasterCancel,
    MasterDay,
    Menu,
    booking_request_id,
    day_code,
    expand_uuid,
    fits_service_id,
    from_minutes,
    new_nonce,
    parse_day,
    short_uuid,
    to_minutes,
)

MASTER = "0f8fad5b-d9cb-469f-a165-70867728950e"
LONGEST_SERVICE = "s" * 20


def test_short_uuid_round_trip() -> None:
    for value in (MASTER, str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"):
        short = short_uuid(value)
        assert len(short) == 22
        assert ":" not in short
        assert expand_uuid(short) == value
    assert short_uuid(uuid.UUID(MASTER)) == short_uuid(MASTER)


@pytest.mark.parametrize("bad", ["", "abc", "x" * 21, "x" * 23, "!" * 22])
def test_expand_uuid_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match=r"short UUID|base64"):
        expand_uuid(bad)


def test_days_and_minutes() -> None:
    day = date(2026, 11, 25)
    assert day_code(day) == "20261125"
    assert parse_day("20261125") == day
    for bad in ("2026-11-25", "20261399", "2026112", "abcdefgh", ""):
        with pytest.raises(ValueError, match=r"YYYYMMDD|out of range|must be in"):
            parse_day(bad)
    instant = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert from_minutes(to_minutes(instant)) == instant
    moscow = instant.astimezone(timezone(timedelta(hours=3)))
    assert to_minutes(moscow) == to_minutes(instant)
    with pytest.raises(ValueError, match="naive"):
        to_minutes(datetime(2026, 11, 25, 11, 0))  # naive


def test_nonce_and_request_id() -> None:
    nonces = {new_nonce() for _ in range(200)}
    assert len(nonces) == 200
    assert all(len(n) == 8 for n in nonces)
    a = booking_request_id(42, "m", "haircut", 123, "nonce123")
    assert uuid.UUID(a).version == 5
    # The same screen (double tap, retry): the same id. Another screen or user: another id.
    assert booking_request_id(42, "m", "haircut", 123, "nonce123") == a
    assert booking_request_id(42, "m", "haircut", 123, "nonce124") != a
    assert booking_request_id(43, "m", "haircut", 123, "nonce123") != a
    assert booking_request_id(42, "m", "beard", 123, "nonce123") != a


def _worst_cases() -> list[CallbackData]:
    m = short_uuid(MASTER)
    s = LONGEST_SERVICE
    minutes = to_minutes(datetime(2099, 12, 31, 23, 59, tzinfo=UTC))
    return [
        Menu(action="manual"),
        ClientMaster(m=m),
        ClientService(m=m, s=s),
        ClientDate(m=m, s=s, d="20991231"),
        ClientSlot(m=m, s=s, t=minutes),
        ClientConfirm(m=m, s=s, t=minutes, n=new_nonce()),
        BookingCancel(b=m, sure=1),
        MasterDay(d="20991231"),
        MasterCancel(b=m),
        DayOffToggle(d="20991231", off=1),
        LunchChoice(start=1380, end=1440),
        ManualService(s=s),
        ManualDate(s=s, d="20991231"),
        ManualSlot(s=s, t=minutes),
        ManualConfirm(n=new_nonce()),
    ]


def test_every_button_fits_telegram_and_round_trips() -> None:
    prefixes = set()
    for data in _worst_cases():
        packed = data.pack()
        assert len(packed.encode()) <= 64, packed
        assert type(data).unpack(packed) == data
        prefixes.add(packed.split(":", 1)[0])
    assert len(prefixes) == len(_worst_cases()), "prefixes must be distinct"


@pytest.mark.parametrize(
    ("cls", "raw"),
    [
        (ClientMaster, "cm:short"),  # not a short UUID
        (ClientMaster, "cm:" + "a" * 22 + ":extra"),  # too many parts
        (ClientMaster, "cs:" + "a" * 22),  # another prefix
        (ClientService, "cs:" + "a" * 22 + ":bad service"),  # space in the id
        (ClientService, "cs:" + "a" * 22 + ":" + "s" * 21),  # too long
        (ClientDate, "cd:" + "a" * 22 + ":haircut:2026-11-25"),
        (ClientSlot, "ct:" + "a" * 22 + ":haircut:-5"),
        (ClientSlot, "ct:" + "a" * 22 + ":haircut:soon"),
        (ClientConfirm, "ck:" + "a" * 22 + ":haircut:100:short"),
        (BookingCancel, "cx:" + "a" * 22 + ":2"),
        (DayOffToggle, "do:20261125:7"),
        (LunchChoice, "lu:600:1441"),
        (Menu, "mn:delete_everything"),
        (ManualConfirm, "mk:"),
    ],
)
def test_malformed_data_is_refused(cls: type[CallbackData], raw: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        cls.unpack(raw)


def test_service_ids_that_fit() -> None:
    assert fits_service_id("haircut_beard")
    assert fits_service_id(LONGEST_SERVICE)
    assert not fits_service_id("s" * 21)
    assert not fits_service_id("with:colon")
    assert not fits_service_id("")
