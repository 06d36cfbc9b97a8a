"""free_slots / slot_refusal against a brute-force reference that walks every real minute of the
day and reads its wall clock: random masters, lunches, busy intervals, now, steps and durations,
on ordinary and daylight-saving days in several zones (fixed seed, so failures reproduce)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from functools import cache
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from server.booking.model import (
    Interval,
    Master,
    MinuteRange,
    WorkingHours,
    free_slots,
    slot_refusal,
)

MINUTE = timedelta(minutes=1)

DAYS = [
    ("Europe/Berlin", date(2026, 3, 29)),  # spring forward 02:00 -> 03:00
    ("Europe/Berlin", date(2026, 10, 25)),  # fall back 03:00 -> 02:00
    ("Europe/Berlin", date(2026, 6, 10)),
    ("Europe/Moscow", date(2026, 11, 25)),
    ("America/New_York", date(2026, 3, 8)),
    ("America/New_York", date(2026, 11, 1)),
    ("America/Santiago", date(2026, 9, 6)),  # midnight does not exist
    ("America/Santiago", date(2026, 4, 4)),  # 23:00-24:00 repeats
    ("Australia/Lord_Howe", date(2026, 10, 4)),  # 30-minute shift
    ("Australia/Lord_Howe", date(2026, 4, 5)),
]


@cache
def minute_walls(zone: str, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """(instant, naive wall time) for every real minute from a day before to two days after."""
    tz = ZoneInfo(zone)
    first = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    return tuple(
        (instant, instant.astimezone(tz).replace(tzinfo=None))
        for instant in (first + MINUTE * i for i in range(3 * 24 * 60))
    )


def boundary(zone: str, day: date, minutes: int) -> datetime:
    """The first real minute whose wall clock is at or after ``minutes`` past local midnight."""
    target = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    for instant, wall in minute_walls(zone, day):
        if wall >= target:
            return instant
    raise AssertionError("not found")


def reference(
    zone: str,
    day: date,
    hours: MinuteRange,
    lunch: MinuteRange | None,
    busy: list[Interval],
    duration: timedelta,
    step: timedelta,
    now: datetime,
) -> list[tuple[datetime, str]]:
    work_start, work_end = boundary(zone, day, hours.start), boundary(zone, day, hours.end)
    lunch_span = None
    if lunch is not None:
        lunch_span = (boundary(zone, day, lunch.start), boundary(zone, day, lunch.end))
    grid_start = datetime(day.year, day.month, day.day) + timedelta(minutes=hours.start)
    grid_end = datetime(day.year, day.month, day.day) + timedelta(minutes=hours.end)
    found = []
    for instant, wall in minute_walls(zone, day):
        if not grid_start <= wall < grid_end or (wall - grid_start) % step:
            continue
        end = instant + duration
        if instant < work_start or end > work_end or instant <= now:
            continue
        if lunch_span is not None and lunch_span[0] < end and instant < lunch_span[1]:
            continue
        if any(b.start < end and instant < b.end for b in busy):
            continue
        found.append((instant, wall.strftime("%H:%M")))
    return found


def random_case(rng: random.Random) -> tuple[object, ...]:
    zone, day = rng.choice(DAYS)
    start = rng.choice([0, 0, 60, 90, 120, 150, 180, 600, rng.randrange(0, 1380)])
    end = rng.choice([1440, 1440, 1200, start + rng.randrange(1, 1440 - start + 1)])
    end = max(end, start + 1)
    hours = MinuteRange(start, min(end, 1440))
    lunch = None
    if rng.random() < 0.7:
        lunch_start = rng.randrange(0, 1410)
        lunch = MinuteRange(lunch_start, min(1440, lunch_start + rng.choice([15, 30, 60, 120])))
    step = timedelta(minutes=rng.choice([15, 30, 45, 60, 60, 90]))
    duration = timedelta(minutes=rng.choice([15, 30, 60, 60, 90, 120, 200]))
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=14)
    busy = []
    for _ in range(rng.randrange(0, 6)):
        begin = day_start + MINUTE * rng.randrange(0, 40 * 60)
        busy.append(Interval(begin, begin + MINUTE * rng.randrange(1, 240)))
    now = day_start + MINUTE * rng.randrange(0, 40 * 60)
    return zone, day, hours, lunch, busy, duration, step, now


@pytest.mark.parametrize("seed", range(40))
def test_free_slots_match_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(8):
        zone, day, hours, lunch, busy, duration, step, now = random_case(rng)
        assert isinstance(zone, str)
        assert isinstance(day, date)
        assert isinstance(hours, MinuteRange)
        assert lunch is None or isinstance(lunch, MinuteRange)
        assert isinstance(busy, list)
        assert isinstance(duration, timedelta)
        assert isinstance(step, timedelta)
        assert isinstance(now, datetime)
        tz = ZoneInfo(zone)
        who = Master(
            id=UUID(int=1),
            user_id=UUID(int=2),
            display_name="m",
            working_hours=(WorkingHours(day.isoweekday(), hours),),
            lunch=lunch,
            active=True,
            create_time=now,
        )
        result = free_slots(
            day=day,
            tz=tz,
            master=who,
            day_off=False,
            busy=busy,
            duration=duration,
            step=step,
            now=now,
        )
        expected = reference(zone, day, hours, lunch, busy, duration, step, now)
        got = [(slot.start, slot.local_time) for slot in result.slots]
        context = (zone, day, hours, lunch, busy, duration, step, now)
        assert got == expected, context
        assert all(slot.end == slot.start + duration for slot in result.slots)
        # slot_refusal finds nothing wrong exactly with every listed start, judging and on the minutes around them.
        free = {start for start, _ in expected}
        probes = set(free) | {start + MINUTE for start in free} | {start - step for start in free}
        for probe in probes:
            refusal = slot_refusal(
                day=day,
                tz=tz,
                master=who,
                day_off=False,
                busy=busy,
                duration=duration,
                step=step,
                now=now,
                start=probe,
            )
            assert (refusal is None) == (probe in free), (probe, refusal, context)
