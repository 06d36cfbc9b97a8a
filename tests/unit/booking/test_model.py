"""Booking's pure types and helpers: parsing, validation, wall clock <-> instants, manual-booking
schedule checks (schedule_refusal), busy-interval merging (BusySet)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from server.booking.model import (
    DEFAULT_LUNCH,
    DEFAULT_WORKING_HOURS,
    Actor,
    BookingSource,
    BookingStatus,
    BusySet,
    Interval,
    Master,
    MinuteRange,
    ServiceOption,
    SlotRefusal,
    WorkingHours,
    date_range,
    format_hhmm,
    format_local,
    format_when,
    local_date,
    local_day_bounds,
    local_instant,
    lunch_overlaps,
    parse_date,
    parse_hhmm,
    range_bounds,
    schedule_refusal,
    validate_working_hours,
    wall_instant,
    wall_instants,
    working_window,
)

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
WEDNESDAY = date(2026, 11, 25)
SPRING = date(2026, 3, 29)
FALL = date(2026, 10, 25)
HOUR = timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def msk(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=MOSCOW)


def master(lunch: MinuteRange | None = DEFAULT_LUNCH) -> Master:
    return Master(
        id=UUID(int=1),
        user_id=UUID(int=2),
        display_name="Марина",
        working_hours=DEFAULT_WORKING_HOURS,
        lunch=lunch,
        active=True,
        create_time=utc(2026, 1, 1),
    )


# --- enums and defaults -----------------------------------------------------------------------


def test_enum_values_match_the_database_words() -> None:
    assert [s.value for s in BookingStatus] == ["active", "cancelled", "completed"]
    assert [s.value for s in BookingSource] == ["client", "manual"]
    assert [a.value for a in Actor] == ["client", "master"]
    assert BookingStatus("cancelled") is BookingStatus.CANCELLED


def test_defaults() -> None:
    assert [h.iso_weekday for h in DEFAULT_WORKING_HOURS] == [1, 2, 3, 4, 5, 6]
    assert all(h.hours == MinuteRange(600, 1200) for h in DEFAULT_WORKING_HOURS)
    assert MinuteRange(780, 840) == DEFAULT_LUNCH
    assert str(DEFAULT_LUNCH) == "13:00-14:00"


def test_master_hours_on() -> None:
    assert master().hours_on(1) == MinuteRange(600, 1200)
    assert master().hours_on(7) is None


def fits(
    *, tz: ZoneInfo, master: Master, days_off: Collection[date], start: datetime, end: datetime
) -> bool:
    """Does a manual booking fit the schedule (no refusal)?"""
    return schedule_refusal(tz=tz, master=master, days_off=days_off, start=start, end=end) is None


def test_service_option_duration() -> None:
    option = ServiceOption("haircut_beard", "Стрижка + борода", 90, 220000, "RUB", True, 3)
    assert option.duration == timedelta(minutes=90)


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("00:00", 0), ("09:05", 545), ("13:00", 780), ("23:59", 1439), ("24:00", 1440)],
)
def test_parse_hhmm(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes


@pytest.mark.parametrize(
    "text",
    [
        "",
        "7:00",
        "07:0",
        "24:01",
        "25:00",
        "12:60",
        "-1:00",
        "12-00",
        "12:00:00",
        " 12:00",
        "12:00\n",
        "\u0661\u0662:\u0660\u0660",
        "ab:cd",
    ],
)
def test_parse_hhmm_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm(text)


def test_format_hhmm_round_trips_every_minute() -> None:
    for minutes in range(0, 1441):
        assert parse_hhmm(format_hhmm(minutes)) == minutes
    assert format_hhmm(1440) == "24:00"
    assert format_hhmm(65) == "01:05"


@pytest.mark.parametrize("minutes", [-1, 1441])
def test_format_hhmm_refuses_out_of_range(minutes: int) -> None:
    with pytest.raises(ValueError, match="range"):
        format_hhmm(minutes)


def test_parse_date() -> None:
    assert parse_date("2026-11-25") == WEDNESDAY
    assert parse_date("2028-02-29") == date(2028, 2, 29)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-02-30",
        "2026-13-01",
        "2026-1-05",
        "20261125",
        "2026-11-25\n",
        "2026-11-25T00:00",
        "0000-01-01",
        "\uff12\uff10\uff12\uff16-11-25",
    ],
)
def test_parse_date_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - both the pattern and the calendar refuse
        parse_date(text)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"), [(600, 600), (700, 600), (-1, 60), (0, 1441), (1440, 1440)]
)
def test_minute_range_refuses_bad_ranges(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="minute range"):
        MinuteRange(start, end)


def test_minute_range_parse_and_overlap() -> None:
    assert MinuteRange.parse("13:30", "24:00") == MinuteRange(810, 1440)
    with pytest.raises(ValueError, match="minute range"):
        MinuteRange.parse("14:00", "13:00")
    with pytest.raises(ValueError, match="minute range"):
        MinuteRange.parse("24:00", "24:00")
    with pytest.raises(ValueError, match="HH:MM"):
        MinuteRange.parse("13:00", "25:00")
    lunch = MinuteRange(780, 840)
    assert lunch.overlaps(MinuteRange(830, 900))
    assert not lunch.overlaps(MinuteRange(840, 900))
    assert not lunch.overlaps(MinuteRange(700, 780))


@pytest.mark.parametrize("weekday", [0, 8, -1])
def test_working_hours_refuse_bad_weekday(weekday: int) -> None:
    with pytest.raises(ValueError, match="weekday"):
        WorkingHours(weekday, MinuteRange(600, 1200))


def test_validate_working_hours() -> None:
    sunday = WorkingHours(7, MinuteRange(600, 900))
    monday = WorkingHours(1, MinuteRange(600, 1200))
    assert validate_working_hours([sunday, monday]) == (monday, sunday)
    assert validate_working_hours([]) == ()
    with pytest.raises(ValueError, match="twice"):
        validate_working_hours([monday, WorkingHours(1, MinuteRange(0, 60))])


def test_interval_refuses_naive_and_empty() -> None:
    with pytest.raises(ValueError, match="aware"):
        Interval(datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="after"):
        Interval(utc(2026, 1, 1), utc(2026, 1, 1))
    with pytest.raises(ValueError, match="after"):
        Interval(utc(2026, 1, 2), utc(2026, 1, 1))


def test_interval_overlap_is_half_open() -> None:
    window = Interval(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))
    assert window.overlaps(utc(2026, 1, 1, 10, 59), utc(2026, 1, 1, 12))
    assert not window.overlaps(utc(2026, 1, 1, 11), utc(2026, 1, 1, 12))
    assert not window.overlaps(utc(2026, 1, 1, 9), utc(2026, 1, 1, 10))
    assert window.contains(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))
    assert not window.contains(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11, 1))


def test_date_range() -> None:
    assert list(date_range(date(2026, 2, 27), date(2026, 3, 2))) == [
        date(2026, 2, 27),
        date(2026, 2, 28),
        date(2026, 3, 1),
        date(2026, 3, 2),
    ]
    assert list(date_range(WEDNESDAY, WEDNESDAY)) == [WEDNESDAY]
    assert list(date_range(WEDNESDAY, WEDNESDAY - timedelta(days=1))) == []


# --- wall clock <-> instants ------------------------------------------------------------------


def test_wall_instants() -> None:
    assert wall_instants(datetime(2026, 3, 29, 2, 30), BERLIN) == ()
    assert wall_instants(datetime(2026, 10, 25, 2, 30), BERLIN) == (
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
    )
    assert wall_instants(datetime(2026, 11, 25, 10), MOSCOW) == (utc(2026, 11, 25, 7),)


def test_wall_instant_of_gap_is_the_transition() -> None:
    for minute in (0, 1, 30, 59):
        assert wall_instant(datetime(2026, 3, 29, 2, minute), BERLIN) == utc(2026, 3, 29, 1)
    assert wall_instant(datetime(2026, 3, 29, 3, 0), BERLIN) == utc(2026, 3, 29, 1)
    assert wall_instant(datetime(2026, 3, 29, 1, 59), BERLIN) == utc(2026, 3, 29, 0, 59)
    # A 30-minute shift (Lord Howe Island, 02:00 -> 02:30 on 2026-10-04).
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert wall_instant(datetime(2026, 10, 4, 2, 15), lord_howe) == utc(2026, 10, 3, 15, 30)


def test_wall_instant_of_repeated_time_is_the_first() -> None:
    assert wall_instant(datetime(2026, 10, 25, 2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)


@pytest.mark.parametrize(
    ("zone", "day", "start", "length"),
    [
        ("Europe/Moscow", WEDNESDAY, utc(2026, 11, 24, 21), timedelta(hours=24)),
        ("Europe/Berlin", SPRING, utc(2026, 3, 28, 23), timedelta(hours=23)),
        ("Europe/Berlin", FALL, utc(2026, 10, 24, 22), timedelta(hours=25)),
        ("Europe/Berlin", date(2026, 7, 1), utc(2026, 6, 30, 22), timedelta(hours=24)),
        # Chile springs forward at midnight: 00:00 does not exist, the day starts at 01:00.
        ("America/Santiago", date(2026, 9, 6), utc(2026, 9, 6, 4), timedelta(hours=23)),
        ("America/Santiago", date(2026, 4, 4), utc(2026, 4, 4, 3), timedelta(hours=25)),
        (
            "Australia/Lord_Howe",
            date(2026, 10, 4),
            utc(2026, 10, 3, 13, 30),
            timedelta(hours=23, minutes=30),
        ),
        ("UTC", WEDNESDAY, utc(2026, 11, 25), timedelta(hours=24)),
    ],
)
def test_local_day_bounds(zone: str, day: date, start: datetime, length: timedelta) -> None:
    bounds = local_day_bounds(day, ZoneInfo(zone))
    assert bounds.start == start
    assert bounds.end - bounds.start == length
    assert bounds.start.utcoffset() == timedelta(0)
    assert bounds.end == local_day_bounds(day + timedelta(days=1), ZoneInfo(zone)).start


def test_range_bounds() -> None:
    bounds = range_bounds(SPRING - timedelta(days=1), FALL, BERLIN)
    assert bounds.start == utc(2026, 3, 27, 23)
    assert bounds.end == utc(2026, 10, 25, 23)
    with pytest.raises(ValueError, match="before"):
        range_bounds(FALL, SPRING, BERLIN)


def test_local_instant_24_00_is_next_midnight() -> None:
    assert local_instant(WEDNESDAY, 1440, MOSCOW) == utc(2026, 11, 25, 21)


def test_working_window() -> None:
    assert working_window(WEDNESDAY, master(), MOSCOW) == Interval(
        utc(2026, 11, 25, 7), utc(2026, 11, 25, 17)
    )
    assert working_window(date(2026, 11, 29), master(), MOSCOW) is None  # Sunday
    # Saturday before SPRING: +01:00; Monday after FALL: +01:00; a summer Monday: +02:00.
    assert working_window(date(2026, 3, 28), master(), BERLIN) == Interval(
        utc(2026, 3, 28, 9), utc(2026, 3, 28, 19)
    )
    assert working_window(date(2026, 7, 6), master(), BERLIN) == Interval(
        utc(2026, 7, 6, 8), utc(2026, 7, 6, 18)
    )


def test_local_formats() -> None:
    instant = utc(2026, 11, 25, 11)
    assert format_local(instant, MOSCOW) == "2026-11-25 14:00"
    assert format_when(instant, MOSCOW) == "25.11.2026 14:00"
    assert local_date(utc(2026, 11, 25, 21), MOSCOW) == date(2026, 11, 26)
    assert local_date(utc(2026, 11, 25, 20, 59), MOSCOW) == WEDNESDAY


# --- manual bookings: schedule_refusal --------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (msk(WEDNESDAY, 10, 15), msk(WEDNESDAY, 11, 15), None),  # any start minute
        (msk(WEDNESDAY, 10), msk(WEDNESDAY, 13), None),  # up to lunch
        (msk(WEDNESDAY, 14), msk(WEDNESDAY, 20), None),  # from lunch to the end
        (msk(WEDNESDAY, 19, 59), msk(WEDNESDAY, 20), None),
        (msk(WEDNESDAY, 9, 30), msk(WEDNESDAY, 10, 30), SlotRefusal.OUTSIDE_HOURS),
        (msk(WEDNESDAY, 19, 30), msk(WEDNESDAY, 20, 30), SlotRefusal.OUTSIDE_HOURS),
        (msk(WEDNESDAY, 21), msk(WEDNESDAY, 22), SlotRefusal.OUTSIDE_HOURS),
        (msk(WEDNESDAY, 19), msk(WEDNESDAY + timedelta(days=1), 11), SlotRefusal.OUTSIDE_HOURS),
        (msk(WEDNESDAY, 12, 30), msk(WEDNESDAY, 13, 15), SlotRefusal.LUNCH),
        (msk(WEDNESDAY, 13, 59), msk(WEDNESDAY, 14, 30), SlotRefusal.LUNCH),
        (msk(WEDNESDAY, 12), msk(WEDNESDAY, 15), SlotRefusal.LUNCH),
        (msk(WEDNESDAY, 11), msk(WEDNESDAY, 11), SlotRefusal.OUTSIDE_HOURS),
        (msk(WEDNESDAY, 11), msk(WEDNESDAY, 10), SlotRefusal.OUTSIDE_HOURS),
        (msk(date(2026, 11, 29), 11), msk(date(2026, 11, 29), 12), SlotRefusal.NOT_WORKING),
        (msk(date(2026, 11, 27), 11), msk(date(2026, 11, 27), 12), SlotRefusal.DAY_OFF),
    ],
)
def test_schedule_refusal(start: datetime, end: datetime, expected: SlotRefusal | None) -> None:
    days_off = {date(2026, 11, 27)}
    got = schedule_refusal(tz=MOSCOW, master=master(), days_off=days_off, start=start, end=end)
    assert got is expected


def test_manual_fits_schedule_without_lunch_and_changed_lunch() -> None:
    start, end = msk(WEDNESDAY, 13, 10), msk(WEDNESDAY, 13, 50)
    assert fits(tz=MOSCOW, master=master(lunch=None), days_off=(), start=start, end=end)
    changed = master(lunch=MinuteRange(15 * 60, 15 * 60 + 30))
    assert fits(tz=MOSCOW, master=changed, days_off=(), start=start, end=end)
    assert not fits(
        tz=MOSCOW, master=changed, days_off=(), start=msk(WEDNESDAY, 15, 20), end=msk(WEDNESDAY, 16)
    )


def test_manual_fits_schedule_uses_the_local_day_of_the_start() -> None:
    # 06:30 UTC Wednesday is 09:30 Moscow (before work); 07:30 UTC is 10:30 (fits).
    assert not fits(
        tz=MOSCOW,
        master=master(),
        days_off=(),
        start=utc(2026, 11, 25, 6, 30),
        end=utc(2026, 11, 25, 7, 30),
    )
    assert fits(
        tz=MOSCOW,
        master=master(),
        days_off=(),
        start=utc(2026, 11, 25, 7, 30),
        end=utc(2026, 11, 25, 8, 30),
    )
    # A day off is a local date: 21:30 UTC on the 26th is 00:30 on the 27th in Moscow.
    assert (
        schedule_refusal(
            tz=MOSCOW,
            master=master(),
            days_off={date(2026, 11, 27)},
            start=utc(2026, 11, 26, 21, 30),
            end=utc(2026, 11, 26, 22),
        )
        is SlotRefusal.DAY_OFF
    )


def test_manual_fits_schedule_on_a_dst_day() -> None:
    # Saturday 2026-03-28 is an ordinary Berlin day at +01:00; Monday 2026-10-26 too.
    assert fits(
        tz=BERLIN, master=master(), days_off=(), start=utc(2026, 3, 28, 9), end=utc(2026, 3, 28, 10)
    )
    assert not fits(
        tz=BERLIN,
        master=master(),
        days_off=(),
        start=utc(2026, 3, 28, 8, 30),
        end=utc(2026, 3, 28, 9, 30),
    )
    assert fits(
        tz=BERLIN, master=master(), days_off=(), start=utc(2026, 7, 6, 8), end=utc(2026, 7, 6, 9)
    )


def test_manual_fits_schedule_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        fits(
            tz=MOSCOW,
            master=master(),
            days_off=(),
            start=datetime(2026, 11, 25, 11),
            end=msk(WEDNESDAY, 12),
        )


def test_lunch_overlaps() -> None:
    bookings = [Interval(msk(WEDNESDAY, 15), msk(WEDNESDAY, 16))]
    assert lunch_overlaps(
        day=WEDNESDAY, tz=MOSCOW, lunch=MinuteRange(15 * 60 + 30, 16 * 60 + 30), bookings=bookings
    )
    assert not lunch_overlaps(
        day=WEDNESDAY, tz=MOSCOW, lunch=MinuteRange(16 * 60, 17 * 60), bookings=bookings
    )
    assert not lunch_overlaps(
        day=WEDNESDAY, tz=MOSCOW, lunch=MinuteRange(14 * 60, 15 * 60), bookings=bookings
    )
    assert not lunch_overlaps(
        day=WEDNESDAY + timedelta(days=1),
        tz=MOSCOW,
        lunch=MinuteRange(15 * 60, 16 * 60),
        bookings=bookings,
    )


# --- busy intervals ---------------------------------------------------------------------------


def test_busy_set_merges_overlapping_and_touching_intervals() -> None:
    a = Interval(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))
    b = Interval(utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 12))
    c = Interval(utc(2026, 1, 1, 12), utc(2026, 1, 1, 13))  # touches b: merged
    d = Interval(utc(2026, 1, 1, 14), utc(2026, 1, 1, 15))
    e = Interval(utc(2026, 1, 1, 14, 10), utc(2026, 1, 1, 14, 20))  # inside d
    busy = BusySet([d, c, e, a, b])
    assert len(busy) == 2  # [10:00, 13:00) and [14:00, 15:00)
    assert busy.overlaps(utc(2026, 1, 1, 12, 59), utc(2026, 1, 1, 13, 30))
    assert not busy.overlaps(utc(2026, 1, 1, 13), utc(2026, 1, 1, 14))
    assert busy.overlaps(utc(2026, 1, 1, 14, 50), utc(2026, 1, 1, 16))
    assert len(BusySet([])) == 0


def test_busy_set_overlaps() -> None:
    busy = BusySet(
        [
            Interval(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11)),
            Interval(utc(2026, 1, 1, 14), utc(2026, 1, 1, 15)),
        ]
    )
    assert len(busy) == 2
    assert busy.overlaps(utc(2026, 1, 1, 10, 59), utc(2026, 1, 1, 11, 30))
    assert busy.overlaps(utc(2026, 1, 1, 9), utc(2026, 1, 1, 16))
    assert busy.overlaps(utc(2026, 1, 1, 14, 10), utc(2026, 1, 1, 14, 20))
    assert not busy.overlaps(utc(2026, 1, 1, 11), utc(2026, 1, 1, 14))
    assert not busy.overlaps(utc(2026, 1, 1, 8), utc(2026, 1, 1, 10))
    assert not busy.overlaps(utc(2026, 1, 1, 15), utc(2026, 1, 1, 16))
    assert not BusySet([]).overlaps(utc(2026, 1, 1), utc(2026, 1, 2))


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Moscow", WEDNESDAY),
        ("Europe/Berlin", SPRING),
        ("Europe/Berlin", FALL),
        ("Europe/Berlin", date(2026, 7, 1)),
        ("America/Santiago", date(2026, 9, 6)),
        ("Asia/Kolkata", WEDNESDAY),
        ("Pacific/Chatham", date(2026, 4, 5)),
    ],
)
def test_local_instant_fast_path_agrees_with_wall_instant(zone: str, day: date) -> None:
    tz = ZoneInfo(zone)
    midnight = datetime(day.year, day.month, day.day)
    for minutes in range(0, 1441, 5):
        wall = midnight + timedelta(minutes=minutes)
        assert local_instant(day, minutes, tz) == wall_instant(wall, tz), (zone, wall)
