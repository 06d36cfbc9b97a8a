"""Slot computation: working hours, days off, lunch (default and changed), busy intervals, the past,
daylight-saving days (Europe/Berlin spring forward and fall back), "24:00" ends, Moscow without DST."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from server.booking.model import (
    DEFAULT_LUNCH,
    DEFAULT_WORKING_HOURS,
    DaySlots,
    Interval,
    Master,
    MinuteRange,
    SlotRefusal,
    WorkingHours,
    free_slots,
    free_slots_range,
    slot_refusal,
)

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)
HALF = timedelta(minutes=30)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)

# 2026-11-25 is a Wednesday, 2026-11-29 a Sunday (Moscow is UTC+3 all year).
WEDNESDAY = date(2026, 11, 25)
SUNDAY = date(2026, 11, 29)
# Europe/Berlin: clocks go 02:00 -> 03:00 on 2026-03-29 and 03:00 -> 02:00 on 2026-10-25 (Sundays).
SPRING = date(2026, 3, 29)
FALL = date(2026, 10, 25)


def master(
    hours: Sequence[WorkingHours] = DEFAULT_WORKING_HOURS,
    lunch: MinuteRange | None = DEFAULT_LUNCH,
) -> Master:
    return Master(
        id=UUID(int=1),
        user_id=UUID(int=2),
        display_name="Алексей",
        working_hours=tuple(hours),
        lunch=lunch,
        active=True,
        create_time=LONG_AGO,
    )


def every_day(start: int, end: int) -> tuple[WorkingHours, ...]:
    return tuple(WorkingHours(weekday, MinuteRange(start, end)) for weekday in range(1, 8))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def msk(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=MOSCOW)


def slots(
    day: date = WEDNESDAY,
    *,
    tz: ZoneInfo = MOSCOW,
    who: Master | None = None,
    day_off: bool = False,
    busy: Sequence[Interval] = (),
    duration: timedelta = HOUR,
    step: timedelta = HOUR,
    now: datetime = LONG_AGO,
) -> DaySlots:
    return free_slots(
        day=day,
        tz=tz,
        master=who or master(),
        day_off=day_off,
        busy=busy,
        duration=duration,
        step=step,
        now=now,
    )


def local_times(result: DaySlots) -> list[str]:
    return [slot.local_time for slot in result.slots]


def test_normal_day_default_master_moscow() -> None:
    result = slots()
    assert result.day == WEDNESDAY
    assert not result.day_off
    assert not result.not_working
    assert local_times(result) == [
        "10:00",
        "11:00",
        "12:00",
        "14:00",
        "15:00",
        "16:00",
        "17:00",
        "18:00",
        "19:00",
    ]
    first, last = result.slots[0], result.slots[-1]
    assert first.start == utc(2026, 11, 25, 7, 0)  # Moscow is UTC+3, no DST
    assert first.end == utc(2026, 11, 25, 8, 0)
    assert last.end == utc(2026, 11, 25, 17, 0)  # 20:00 local
    assert all(slot.start.utcoffset() == timedelta(0) for slot in result.slots)
    assert all(slot.end - slot.start == HOUR for slot in result.slots)


def test_moscow_summer_has_the_same_offset() -> None:
    result = slots(date(2026, 7, 15))
    assert result.slots[0].start == utc(2026, 7, 15, 7, 0)
    assert len(result.slots) == 9


def test_day_off_yields_nothing_and_sets_the_flag() -> None:
    result = slots(day_off=True)
    assert result.slots == ()
    assert result.day_off
    assert not result.not_working


def test_weekday_without_working_hours_is_not_working() -> None:
    result = slots(SUNDAY)
    assert result.slots == ()
    assert result.not_working
    assert not result.day_off


def test_day_off_on_a_non_working_weekday_reports_the_day_off() -> None:
    result = slots(SUNDAY, day_off=True)
    assert result.day_off
    assert not result.not_working


def test_master_without_any_hours_is_never_working() -> None:
    result = slots(who=master(hours=()))
    assert result.not_working


def test_no_lunch_gives_the_whole_day() -> None:
    result = slots(who=master(lunch=None))
    assert len(result.slots) == 10
    assert "13:00" in local_times(result)


def test_changed_lunch_moves_the_gap() -> None:
    # 14:30-15:00: the 14:00 slot overlaps it; 13:00 is free again.
    result = slots(who=master(lunch=MinuteRange(14 * 60 + 30, 15 * 60)))
    times = local_times(result)
    assert "13:00" in times
    assert "14:00" not in times
    assert "15:00" in times
    assert len(times) == 9


def test_long_lunch_removes_several_slots() -> None:
    result = slots(who=master(lunch=MinuteRange(12 * 60, 15 * 60)))
    assert local_times(result) == ["10:00", "11:00", "15:00", "16:00", "17:00", "18:00", "19:00"]


def test_lunch_with_half_hour_grid() -> None:
    result = slots(step=HALF)
    times = local_times(result)
    # 12:30, 13:00 and 13:30 would overlap 13:00-14:00 with a 60-minute service.
    assert "12:00" in times
    assert "12:30" not in times
    assert "13:00" not in times
    assert "13:30" not in times
    assert "14:00" in times
    assert times[-1] == "19:00"  # 19:30 would end after 20:00
    assert len(times) == 19 - 3


def test_slot_touching_lunch_is_free() -> None:
    # Half-open: 12:00-13:00 ends exactly where lunch starts; 14:00 starts where it ends.
    times = local_times(slots())
    assert "12:00" in times
    assert "14:00" in times


def test_occupied_exact_slot() -> None:
    busy = [Interval(msk(WEDNESDAY, 11), msk(WEDNESDAY, 12))]
    times = local_times(slots(busy=busy))
    assert "11:00" not in times
    assert "10:00" in times
    assert "12:00" in times
    assert len(times) == 8


def test_occupied_partial_overlap_blocks_both_neighbours() -> None:
    busy = [Interval(msk(WEDNESDAY, 11, 30), msk(WEDNESDAY, 12, 15))]
    times = local_times(slots(busy=busy))
    assert "11:00" not in times
    assert "12:00" not in times
    assert "10:00" in times


def test_occupied_by_a_one_minute_booking() -> None:
    busy = [Interval(msk(WEDNESDAY, 16, 59), msk(WEDNESDAY, 17, 0))]
    times = local_times(slots(busy=busy))
    assert "16:00" not in times
    assert "17:00" in times


def test_busy_touching_is_not_an_overlap() -> None:
    busy = [
        Interval(msk(WEDNESDAY, 9), msk(WEDNESDAY, 10)),
        Interval(msk(WEDNESDAY, 20), msk(WEDNESDAY, 21)),
    ]
    assert len(slots(busy=busy).slots) == 9


def test_busy_unsorted_overlapping_and_outside_the_day() -> None:
    busy = [
        Interval(msk(WEDNESDAY, 17), msk(WEDNESDAY, 18)),
        Interval(msk(WEDNESDAY, 10), msk(WEDNESDAY, 11, 30)),
        Interval(msk(WEDNESDAY, 10, 15), msk(WEDNESDAY, 10, 45)),  # inside the previous one
        Interval(msk(WEDNESDAY, 15), msk(WEDNESDAY, 16)),
        Interval(msk(WEDNESDAY - timedelta(days=1), 10), msk(WEDNESDAY - timedelta(days=1), 20)),
        Interval(msk(WEDNESDAY + timedelta(days=1), 0), msk(WEDNESDAY + timedelta(days=2), 0)),
    ]
    assert local_times(slots(busy=busy)) == ["12:00", "14:00", "16:00", "18:00", "19:00"]


def test_busy_spanning_the_whole_day() -> None:
    busy = [Interval(msk(WEDNESDAY, 0), msk(WEDNESDAY + timedelta(days=1), 0))]
    result = slots(busy=busy)
    assert result.slots == ()
    assert not result.day_off
    assert not result.not_working


def test_busy_in_another_time_zone_is_compared_as_instants() -> None:
    # 08:00 UTC is 11:00 Moscow.
    busy = [Interval(utc(2026, 11, 25, 8), datetime(2026, 11, 25, 10, tzinfo=BERLIN))]
    assert "11:00" not in local_times(slots(busy=busy))
    assert "12:00" in local_times(slots(busy=busy))


def test_past_slots_are_hidden_when_now_is_mid_day() -> None:
    result = slots(now=msk(WEDNESDAY, 12, 30))
    assert local_times(result) == ["14:00", "15:00", "16:00", "17:00", "18:00", "19:00"]


def test_a_slot_starting_exactly_now_is_past() -> None:
    times = local_times(slots(now=msk(WEDNESDAY, 14)))
    assert times[0] == "15:00"
    times = local_times(slots(now=msk(WEDNESDAY, 14) - timedelta(microseconds=1)))
    assert times[0] == "14:00"


def test_a_started_slot_is_past_even_if_it_has_not_ended() -> None:
    times = local_times(slots(now=msk(WEDNESDAY, 10, 1)))
    assert times[0] == "11:00"


def test_now_after_the_day_hides_everything_but_keeps_flags_clear() -> None:
    result = slots(now=msk(WEDNESDAY, 23))
    assert result.slots == ()
    assert not result.not_working
    assert not result.day_off


def test_now_in_another_zone() -> None:
    now = datetime(2026, 11, 25, 10, 30, tzinfo=BERLIN)  # 12:30 Moscow
    assert local_times(slots(now=now))[0] == "14:00"


def test_duration_longer_than_step() -> None:
    result = slots(duration=timedelta(minutes=90))
    # 12:00 (to 13:30) and 13:00 hit lunch; 19:00 would end at 20:30.
    assert local_times(result) == ["10:00", "11:00", "14:00", "15:00", "16:00", "17:00", "18:00"]
    assert all(slot.end - slot.start == timedelta(minutes=90) for slot in result.slots)


def test_duration_longer_than_step_with_busy() -> None:
    busy = [Interval(msk(WEDNESDAY, 16), msk(WEDNESDAY, 17))]
    result = slots(duration=timedelta(minutes=90), busy=busy)
    # 15:00-16:30 overlaps 16:00; 16:00 itself is taken; 17:00-18:30 is fine.
    assert local_times(result) == ["10:00", "11:00", "14:00", "17:00", "18:00"]


def test_duration_shorter_than_step() -> None:
    result = slots(duration=timedelta(minutes=20), who=master(lunch=None))
    assert len(result.slots) == 10
    assert result.slots[0].end == msk(WEDNESDAY, 10, 20)


def test_duration_longer_than_the_whole_day() -> None:
    assert slots(duration=timedelta(hours=11)).slots == ()


def test_end_at_24_00() -> None:
    who = master(hours=every_day(18 * 60, 24 * 60), lunch=None)
    result = slots(who=who)
    assert local_times(result) == ["18:00", "19:00", "20:00", "21:00", "22:00", "23:00"]
    assert result.slots[-1].end == utc(2026, 11, 25, 21, 0)  # next local midnight


def test_whole_day_master_moscow() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    result = slots(who=who)
    assert len(result.slots) == 24
    assert result.slots[0].start == utc(2026, 11, 24, 21, 0)
    assert result.slots[-1].end == utc(2026, 11, 25, 21, 0)


def test_grid_starts_at_work_start_not_at_midnight() -> None:
    who = master(hours=every_day(10 * 60 + 15, 12 * 60 + 15), lunch=None)
    assert local_times(slots(who=who, step=timedelta(minutes=45), duration=HALF)) == [
        "10:15",
        "11:00",
        "11:45",
    ]


def test_odd_step_last_slot_must_fit() -> None:
    who = master(hours=every_day(10 * 60, 11 * 60), lunch=None)
    result = slots(who=who, step=timedelta(minutes=25), duration=timedelta(minutes=25))
    assert local_times(result) == ["10:00", "10:25"]  # 10:50 would end at 11:15


@pytest.mark.parametrize(
    ("step", "duration"), [(timedelta(0), HOUR), (HOUR, timedelta(0)), (-HOUR, HOUR)]
)
def test_non_positive_step_or_duration_is_refused(step: timedelta, duration: timedelta) -> None:
    with pytest.raises(ValueError, match="positive"):
        slots(step=step, duration=duration)


# --- daylight saving time ---------------------------------------------------------------------


def test_berlin_spring_forward_whole_day_master() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    result = slots(SPRING, tz=BERLIN, who=who)
    assert len(result.slots) == 23
    starts = [slot.start for slot in result.slots]
    # Consecutive real hours from local midnight (+01:00) to the next one (+02:00).
    assert starts == [utc(2026, 3, 28, 23) + HOUR * i for i in range(23)]
    assert result.slots[-1].end == utc(2026, 3, 29, 22)
    times = local_times(result)
    assert "02:00" not in times  # 02:00-02:59 does not exist that day
    assert times[:4] == ["00:00", "01:00", "03:00", "04:00"]
    assert times[-1] == "23:00"


def test_berlin_fall_back_whole_day_master() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    result = slots(FALL, tz=BERLIN, who=who)
    assert len(result.slots) == 25
    starts = [slot.start for slot in result.slots]
    assert starts == [utc(2026, 10, 24, 22) + HOUR * i for i in range(25)]
    assert result.slots[-1].end == utc(2026, 10, 25, 23)
    times = local_times(result)
    assert times[:5] == ["00:00", "01:00", "02:00", "02:00", "03:00"]
    # The first 02:00 is the CEST one (fold=0), the second the CET one.
    assert result.slots[2].start == utc(2026, 10, 25, 0)
    assert result.slots[3].start == utc(2026, 10, 25, 1)


def test_berlin_fall_back_half_hour_grid_stays_contiguous() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    result = slots(FALL, tz=BERLIN, who=who, step=HALF, duration=HALF)
    assert len(result.slots) == 50
    starts = [slot.start for slot in result.slots]
    assert starts == [utc(2026, 10, 24, 22) + HALF * i for i in range(50)]
    assert local_times(result)[4:10] == ["02:00", "02:30", "02:00", "02:30", "03:00", "03:30"]


def test_berlin_ordinary_days_around_the_transitions() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    for day, first in [
        (SPRING - timedelta(days=1), utc(2026, 3, 27, 23)),
        (SPRING + timedelta(days=1), utc(2026, 3, 29, 22)),
        (FALL - timedelta(days=1), utc(2026, 10, 23, 22)),
        (FALL + timedelta(days=1), utc(2026, 10, 25, 23)),
    ]:
        result = slots(day, tz=BERLIN, who=who)
        assert len(result.slots) == 24, day
        assert result.slots[0].start == first, day


@pytest.mark.parametrize(("day", "offset_hours"), [(SPRING, 2), (FALL, 1)])
def test_berlin_normal_hours_on_transition_days(day: date, offset_hours: int) -> None:
    who = master(hours=every_day(10 * 60, 20 * 60))
    result = slots(day, tz=BERLIN, who=who)
    # The transition happens at night: the day shows the usual 9 slots at the new offset.
    assert local_times(result) == [
        "10:00",
        "11:00",
        "12:00",
        "14:00",
        "15:00",
        "16:00",
        "17:00",
        "18:00",
        "19:00",
    ]
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert result.slots[0].start == base + timedelta(hours=10 - offset_hours)
    assert result.slots[-1].end == base + timedelta(hours=20 - offset_hours)
    lunch_gap = result.slots[3].start - result.slots[2].end
    assert lunch_gap == HOUR


def test_berlin_without_lunch_on_transition_days() -> None:
    who = master(hours=every_day(10 * 60, 20 * 60), lunch=None)
    assert len(slots(SPRING, tz=BERLIN, who=who).slots) == 10
    assert len(slots(FALL, tz=BERLIN, who=who).slots) == 10


def test_berlin_work_starting_inside_the_gap() -> None:
    # 02:30 does not exist on SPRING: work starts at the transition (03:00 CEST = 01:00 UTC);
    # the grid wall time 02:30 is skipped, 03:30 and 04:30 remain.
    who = master(hours=every_day(2 * 60 + 30, 5 * 60), lunch=None)
    result = slots(SPRING, tz=BERLIN, who=who, duration=HALF)
    assert local_times(result) == ["03:30", "04:30"]
    assert result.slots[0].start == utc(2026, 3, 29, 1, 30)
    result = slots(SPRING, tz=BERLIN, who=who, duration=HOUR)
    assert local_times(result) == ["03:30"]  # 04:30-05:30 ends after 05:00


def test_berlin_work_entirely_inside_the_gap_is_not_working() -> None:
    who = master(hours=every_day(2 * 60 + 10, 2 * 60 + 50), lunch=None)
    result = slots(SPRING, tz=BERLIN, who=who, duration=timedelta(minutes=10))
    assert result.slots == ()
    assert result.not_working


def test_berlin_lunch_inside_the_gap_takes_no_time() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=MinuteRange(2 * 60, 3 * 60))
    assert len(slots(SPRING, tz=BERLIN, who=who).slots) == 23


def test_berlin_lunch_over_the_repeated_hour_takes_two_real_hours() -> None:
    # 02:00 (first, CEST) .. 03:00 (CET) is two hours of real time; both 02:00 slots are lunch.
    who = master(hours=every_day(0, 24 * 60), lunch=MinuteRange(2 * 60, 3 * 60))
    result = slots(FALL, tz=BERLIN, who=who)
    assert len(result.slots) == 23
    assert "02:00" not in local_times(result)


def test_berlin_work_ending_in_the_repeated_hour_uses_its_first_occurrence() -> None:
    # Work 00:00-02:30 on FALL ends at 02:30 CEST (00:30 UTC): the CET 02:00 slot is after it.
    who = master(hours=every_day(0, 2 * 60 + 30), lunch=None)
    result = slots(FALL, tz=BERLIN, who=who, duration=HALF)
    assert local_times(result) == ["00:00", "01:00", "02:00"]
    assert result.slots[-1].start == utc(2026, 10, 25, 0)


def test_berlin_busy_in_the_repeated_hour_blocks_only_that_occurrence() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    busy = [Interval(utc(2026, 10, 25, 1), utc(2026, 10, 25, 2))]  # the CET 02:00-03:00
    result = slots(FALL, tz=BERLIN, who=who, busy=busy)
    assert len(result.slots) == 24
    assert local_times(result).count("02:00") == 1
    assert utc(2026, 10, 25, 0) in [slot.start for slot in result.slots]


def test_range_matches_single_days_and_applies_days_off() -> None:
    who = master()
    days_off = {WEDNESDAY + timedelta(days=1)}
    busy = [
        Interval(msk(WEDNESDAY, 11), msk(WEDNESDAY, 12)),
        Interval(msk(WEDNESDAY + timedelta(days=2), 15), msk(WEDNESDAY + timedelta(days=2), 17)),
    ]
    now = msk(WEDNESDAY, 10, 30)
    result = free_slots_range(
        first=WEDNESDAY,
        last=WEDNESDAY + timedelta(days=6),
        tz=MOSCOW,
        master=who,
        days_off=days_off,
        busy=busy,
        duration=HOUR,
        step=HOUR,
        now=now,
    )
    assert [day.day for day in result] == [WEDNESDAY + timedelta(days=i) for i in range(7)]
    for day in result:
        assert day == slots(day.day, who=who, day_off=day.day in days_off, busy=busy, now=now)
    assert result[1].day_off
    assert result[4].not_working  # Sunday
    assert len(result[0].slots) == 7  # 10:00 past, 11:00 busy
    assert len(result[2].slots) == 7  # 15:00 and 16:00 busy


def test_empty_range_when_last_before_first() -> None:
    result = free_slots_range(
        first=WEDNESDAY,
        last=WEDNESDAY - timedelta(days=1),
        tz=MOSCOW,
        master=master(),
        days_off=(),
        busy=(),
        duration=HOUR,
        step=HOUR,
        now=LONG_AGO,
    )
    assert result == ()


# --- slot_refusal --------------------------------------------------------------------------


def refusal(start: datetime, **kwargs: object) -> SlotRefusal | None:
    arguments: dict[str, object] = {
        "tz": MOSCOW,
        "master": master(),
        "day_off": False,
        "busy": (),
        "duration": HOUR,
        "step": HOUR,
        "now": LONG_AGO,
        "start": start,
    }
    arguments.update(kwargs)
    return slot_refusal(**arguments)  # type: ignore[arg-type]


def test_every_listed_slot_is_free() -> None:
    for day, tz, who in [
        (WEDNESDAY, MOSCOW, master()),
        (SPRING, BERLIN, master(hours=every_day(0, 24 * 60), lunch=None)),
        (FALL, BERLIN, master(hours=every_day(0, 24 * 60), lunch=None)),
    ]:
        result = slots(day, tz=tz, who=who)
        assert result.slots
        for slot in result.slots:
            assert refusal(slot.start, tz=tz, master=who, day=day) is None
            assert refusal(slot.start, tz=tz, master=who) is None


def test_slot_refusal_agrees_with_free_slots_minute_by_minute() -> None:
    cases = [
        (WEDNESDAY, MOSCOW, master(), [Interval(msk(WEDNESDAY, 15, 30), msk(WEDNESDAY, 16, 10))]),
        (FALL, BERLIN, master(hours=every_day(0, 24 * 60), lunch=MinuteRange(600, 660)), []),
        (SPRING, BERLIN, master(hours=every_day(0, 24 * 60), lunch=MinuteRange(600, 660)), []),
    ]
    for day, tz, who, busy in cases:
        now = datetime(day.year, day.month, day.day, 6, tzinfo=tz)
        kwargs = {"day": day, "tz": tz, "master": who, "busy": busy, "now": now}
        free = {
            slot.start
            for slot in slots(
                day, tz=tz, who=who, busy=busy, now=now, step=HALF, duration=HOUR
            ).slots
        }
        assert free
        # Walk real time in UTC (aware arithmetic in a ZoneInfo zone would walk the wall clock).
        instant = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC) - 3 * HOUR
        end = instant + timedelta(hours=30)
        while instant < end:
            verdict = refusal(instant, step=HALF, **kwargs)
            assert (verdict is None) == (instant in free), (instant, verdict)
            instant += timedelta(minutes=5)


def test_refusal_reasons() -> None:
    assert refusal(msk(WEDNESDAY, 10)) is None
    assert refusal(msk(WEDNESDAY, 10), day_off=True) is SlotRefusal.DAY_OFF
    assert refusal(msk(SUNDAY, 10)) is SlotRefusal.NOT_WORKING
    assert refusal(msk(WEDNESDAY, 10, 15)) is SlotRefusal.OFF_GRID
    assert refusal(msk(WEDNESDAY, 10) + timedelta(seconds=1)) is SlotRefusal.OFF_GRID
    assert refusal(msk(WEDNESDAY, 9)) is SlotRefusal.OFF_GRID
    assert refusal(msk(WEDNESDAY, 20)) is SlotRefusal.OFF_GRID
    assert refusal(msk(WEDNESDAY, 19), duration=timedelta(minutes=90)) is SlotRefusal.OUTSIDE_HOURS
    assert refusal(msk(WEDNESDAY, 13)) is SlotRefusal.LUNCH
    assert refusal(msk(WEDNESDAY, 12), duration=timedelta(minutes=90)) is SlotRefusal.LUNCH
    assert refusal(msk(WEDNESDAY, 10), now=msk(WEDNESDAY, 10)) is SlotRefusal.PAST
    assert refusal(msk(WEDNESDAY, 10), now=msk(WEDNESDAY, 12)) is SlotRefusal.PAST
    taken = [Interval(msk(WEDNESDAY, 10, 30), msk(WEDNESDAY, 10, 40))]
    assert refusal(msk(WEDNESDAY, 10), busy=taken) is SlotRefusal.BUSY
    assert refusal(msk(WEDNESDAY, 11), busy=taken) is None


def test_refusal_with_a_day_that_is_not_the_starts_local_day() -> None:
    # 2026-11-25 22:00 UTC is 01:00 on the 26th in Moscow.
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    assert refusal(utc(2026, 11, 25, 22), master=who) is None
    assert refusal(utc(2026, 11, 25, 22), master=who, day=WEDNESDAY) is SlotRefusal.OFF_GRID
    assert refusal(utc(2026, 11, 25, 22), master=who, day=date(2026, 11, 26)) is None


def test_refusal_of_the_gap_and_repeated_hour() -> None:
    who = master(hours=every_day(0, 24 * 60), lunch=None)
    # 01:00 UTC on SPRING is 03:00 CEST: on the grid. 00:30 UTC is 01:30 CET: not on it.
    assert refusal(utc(2026, 3, 29, 1), tz=BERLIN, master=who) is None
    assert refusal(utc(2026, 3, 29, 0, 30), tz=BERLIN, master=who) is SlotRefusal.OFF_GRID
    # Both occurrences of 02:00 on FALL are free slots.
    assert refusal(utc(2026, 10, 25, 0), tz=BERLIN, master=who) is None
    assert refusal(utc(2026, 10, 25, 1), tz=BERLIN, master=who) is None


def test_slot_refusal_rejects_a_naive_start() -> None:
    with pytest.raises(ValueError, match="aware"):
        refusal(datetime(2026, 11, 25, 10))
