"""Booking's pure types and rules: masters, service options, bookings, slot computation. No I/O.

Times of day are the shop's local wall-clock values, kept as minutes after local midnight
(0..1440, "24:00" = 1440 = the next local midnight). Instants are aware datetimes (UTC).

How a local wall time becomes an instant (``wall_instant``): a wall time that exists once maps to
that instant; an ambiguous one (the repeated hour when clocks fall back) takes its first occurrence
(``fold=0``); one that does not exist (the gap when clocks spring forward) maps to the first instant
whose wall clock is at or after it, i.e. the moment of the transition. Working hours, lunch breaks
and day bounds are converted that way.

Slots (``free_slots``): the candidate starts are every instant of the day whose local wall time lies
on the grid ``work_start + k * step`` of that local date. A grid wall time inside a spring-forward gap
has no instant and is skipped; one inside a fall-back repeated hour has two instants, and both are
candidates (the repeated hour is real working time: a master working 00:00-24:00 has 23 one-hour
slots on the spring-forward day and 25 on the fall-back day). A slot lasts ``duration`` of real
elapsed time from its start; it must end at or before the work end instant, must not overlap the
lunch break or any busy interval, and must start strictly after ``now``.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from uuid import UUID
from zoneinfo import ZoneInfo

from server.kernel.errors import ERROR_DOMAIN

DOMAIN = f"booking.{ERROR_DOMAIN}"

MINUTES_PER_DAY = 24 * 60


class BookingStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class BookingSource(StrEnum):
    CLIENT = "client"
    MANUAL = "manual"


class Actor(StrEnum):
    CLIENT = "client"
    MASTER = "master"


class SlotRefusal(StrEnum):
    """Why a start instant is not a free slot (``slot_refusal``); maps onto the contract's reasons."""

    DAY_OFF = "day_off"  # SLOT_UNAVAILABLE
    NOT_WORKING = "not_working"  # SLOT_UNAVAILABLE: no working hours that weekday
    OFF_GRID = "off_grid"  # SLOT_UNAVAILABLE: not a grid start of that day
    OUTSIDE_HOURS = "outside_hours"  # SLOT_UNAVAILABLE: would end after the work end
    LUNCH = "lunch"  # SLOT_UNAVAILABLE
    PAST = "past"  # SLOT_IN_PAST
    BUSY = "busy"  # SLOT_TAKEN


@dataclass(frozen=True, slots=True)
class MinuteRange:
    """A daily local time range, minutes after local midnight: 0 <= start < end <= 1440."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end <= MINUTES_PER_DAY):
            raise ValueError(f"bad minute range {self.start}..{self.end}")

    @classmethod
    def parse(cls, start: str, end: str) -> MinuteRange:
        """From "HH:MM" texts; ValueError on bad input or an end not after the start."""
        return cls(parse_hhmm(start), parse_hhmm(end))

    def overlaps(self, other: MinuteRange) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{format_hhmm(self.start)}-{format_hhmm(self.end)}"


@dataclass(frozen=True, slots=True)
class WorkingHours:
    iso_weekday: int  # 1 = Monday .. 7 = Sunday
    hours: MinuteRange

    def __post_init__(self) -> None:
        if not 1 <= self.iso_weekday <= 7:
            raise ValueError(f"bad ISO weekday {self.iso_weekday}")


@dataclass(frozen=True, slots=True)
class Master:
    id: UUID
    user_id: UUID
    display_name: str
    working_hours: tuple[WorkingHours, ...]
    lunch: MinuteRange | None
    active: bool
    create_time: datetime

    def hours_on(self, iso_weekday: int) -> MinuteRange | None:
        for item in self.working_hours:
            if item.iso_weekday == iso_weekday:
                return item.hours
        return None


@dataclass(frozen=True, slots=True)
class ServiceOption:
    id: str
    name: str
    duration_minutes: int
    price_minor_units: int
    currency_code: str
    active: bool
    position: int

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open span of time [start, end) between aware instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be aware datetimes")
        if not self.start < self.end:
            raise ValueError("interval end must be after its start")

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end

    def contains(self, start: datetime, end: datetime) -> bool:
        return self.start <= start and end <= self.end


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime
    end: datetime
    local_time: str  # "HH:MM", the local wall-clock start


@dataclass(frozen=True, slots=True)
class DaySlots:
    day: date
    slots: tuple[Slot, ...]
    day_off: bool
    not_working: bool


@dataclass(frozen=True, slots=True)
class Booking:
    id: UUID
    master_id: UUID
    master_display_name: str
    service_id: str
    service_name: str
    start: datetime
    end: datetime
    status: BookingStatus
    source: BookingSource
    client_user_id: UUID | None
    client_name: str
    client_phone: str | None
    price_minor_units: int
    currency_code: str
    create_time: datetime
    cancel_time: datetime | None
    cancelled_by: Actor | None
    cancel_reason: str


@dataclass(frozen=True, slots=True)
class DayOff:
    day: date
    note: str


DEFAULT_WORKING_HOURS: tuple[WorkingHours, ...] = tuple(
    WorkingHours(weekday, MinuteRange(10 * 60, 20 * 60)) for weekday in range(1, 7)
)
DEFAULT_LUNCH = MinuteRange(13 * 60, 14 * 60)

_HHMM = re.compile(r"(?:([01][0-9]|2[0-3]):([0-5][0-9]))|24:00")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def parse_hhmm(text: str) -> int:
    """ "HH:MM" (00:00..23:59) or "24:00" -> minutes after midnight; ValueError on bad input."""
    match = _HHMM.fullmatch(text)
    if match is None:
        raise ValueError(f"not a time of day (HH:MM): {text!r}")
    if match.group(1) is None:
        return MINUTES_PER_DAY
    return int(match.group(1)) * 60 + int(match.group(2))


def format_hhmm(minutes: int) -> str:
    """Minutes after midnight (0..1440) -> "HH:MM" ("24:00" for 1440)."""
    if not 0 <= minutes <= MINUTES_PER_DAY:
        raise ValueError(f"minutes out of range: {minutes}")
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_date(text: str) -> date:
    """ "YYYY-MM-DD" -> date; ValueError on any other form or an impossible date."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a date (YYYY-MM-DD): {text!r}")
    return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))


def validate_working_hours(items: Sequence[WorkingHours]) -> tuple[WorkingHours, ...]:
    """At most one entry per weekday; returned sorted by weekday. ValueError on a repeat."""
    seen: set[int] = set()
    for item in items:
        if item.iso_weekday in seen:
            raise ValueError(f"weekday {item.iso_weekday} given twice")
        seen.add(item.iso_weekday)
    return tuple(sorted(items, key=lambda item: item.iso_weekday))


def date_range(first: date, last: date) -> Iterator[date]:
    """Every date from first to last, both included (nothing when last < first)."""
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


# --- wall clock <-> instants ------------------------------------------------------------------


def _wall(day: date, minutes: int) -> datetime:
    """The naive local wall-clock datetime ``minutes`` after midnight of ``day`` (1440 = next day)."""
    return datetime.combine(day, time()) + timedelta(minutes=minutes)


def wall_instants(wall: datetime, tz: ZoneInfo) -> tuple[datetime, ...]:
    """Every UTC instant whose local wall time in ``tz`` is the naive ``wall``: none inside a
    spring-forward gap, two (in order) inside a fall-back repeated hour, one otherwise."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return (first,)
    if first < second:  # ambiguous: fold=0 is the earlier occurrence
        return (first, second)
    return ()  # a gap: fold=0 uses the offset before the transition, so it lands after fold=1


def wall_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a local wall time stands for: its first occurrence; for a wall time inside a
    spring-forward gap, the first instant whose wall clock is at or after it (the transition)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first <= second:
        return first
    # In the gap the transition lies in (second, first]: the first instant whose wall clock is at
    # or after ``wall``. Offsets change on whole seconds, so search the integer timestamps.
    low, high = int(second.timestamp()), int(first.timestamp())  # wall(low) < wall <= wall(high)
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def local_instant(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """The instant of ``minutes`` after local midnight of ``day`` (see ``wall_instant``)."""
    offset = _day_offset(day, tz)
    if offset is not None:
        return (_wall(day, minutes) - offset).replace(tzinfo=UTC)
    return wall_instant(_wall(day, minutes), tz)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    """The local date of an aware instant."""
    return instant.astimezone(tz).date()


def format_local(instant: datetime, tz: ZoneInfo) -> str:
    """ "YYYY-MM-DD HH:MM" local (Booking.local_start)."""
    return instant.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def format_when(instant: datetime, tz: ZoneInfo) -> str:
    """ "DD.MM.YYYY HH:MM" local, as notifications show it."""
    return instant.astimezone(tz).strftime("%d.%m.%Y %H:%M")


def local_day_bounds(day: date, tz: ZoneInfo) -> Interval:
    """[local midnight of ``day``, next local midnight) as UTC instants."""
    return Interval(local_instant(day, 0, tz), local_instant(day, MINUTES_PER_DAY, tz))


def range_bounds(first: date, last: date, tz: ZoneInfo) -> Interval:
    """[local midnight of ``first``, local midnight after ``last``) as UTC instants."""
    if last < first:
        raise ValueError("range end before its start")
    return Interval(local_instant(first, 0, tz), local_instant(last + timedelta(days=1), 0, tz))


def _minute_interval(day: date, hours: MinuteRange, tz: ZoneInfo) -> Interval | None:
    start = local_instant(day, hours.start, tz)
    end = local_instant(day, hours.end, tz)
    if start < end:
        return Interval(start, end)
    return None  # the whole range lies inside a spring-forward gap


def working_window(day: date, master: Master, tz: ZoneInfo) -> Interval | None:
    """The master's working hours on ``day`` as instants; None when they do not work that weekday."""
    hours = master.hours_on(day.isoweekday())
    if hours is None:
        return None
    return _minute_interval(day, hours, tz)


def lunch_window(day: date, master: Master, tz: ZoneInfo) -> Interval | None:
    """The master's lunch break on ``day`` as instants; None without one."""
    if master.lunch is None:
        return None
    return _minute_interval(day, master.lunch, tz)


# --- busy intervals ---------------------------------------------------------------------------


class BusySet:
    """Busy intervals merged into sorted disjoint spans, for fast overlap checks."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, busy: Sequence[Interval]) -> None:
        starts: list[datetime] = []
        ends: list[datetime] = []
        # Kept in UTC: comparing aware datetimes of one tzinfo skips offset lookups.
        for item in sorted(busy, key=lambda interval: interval.start):
            start, end = item.start.astimezone(UTC), item.end.astimezone(UTC)
            if ends and start <= ends[-1]:
                if end > ends[-1]:
                    ends[-1] = end
            else:
                starts.append(start)
                ends.append(end)
        self._starts = starts
        self._ends = ends

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Does [start, end) overlap any busy interval?"""
        index = bisect.bisect_right(self._ends, start)  # first span ending after start
        return index < len(self._starts) and self._starts[index] < end

    def __len__(self) -> int:
        return len(self._starts)


# --- slots ------------------------------------------------------------------------------------


def _check(step: timedelta, duration: timedelta) -> None:
    if step <= timedelta(0) or duration <= timedelta(0):
        raise ValueError("step and duration must be positive")


def _candidates(
    day: date, hours: MinuteRange, tz: ZoneInfo, step: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """(instant, naive wall time) of every grid start of the day, in wall-clock order."""
    wall = _wall(day, hours.start)
    wall_end = _wall(day, hours.end)
    offset = _day_offset(day, tz)
    if offset is not None:  # the usual day: no transition
        while wall < wall_end:
            yield (wall - offset).replace(tzinfo=UTC), wall
            wall += step
        return
    while wall < wall_end:
        for instant in wall_instants(wall, tz):
            yield instant, wall
        wall += step


@functools.lru_cache(maxsize=4096)
def _day_offset(day: date, tz: ZoneInfo) -> timedelta | None:
    """The UTC offset of ``tz`` on the local date ``day`` when it is the same all day: local
    midnight and the next local midnight each exist once, with that offset (tz database zones
    never change twice within a day). None on a transition day."""
    offsets = {
        wall.replace(tzinfo=tz, fold=fold).utcoffset()
        for wall in (_wall(day, 0), _wall(day, MINUTES_PER_DAY))
        for fold in (0, 1)
    }
    if len(offsets) == 1:
        return offsets.pop()
    return None


def _day_slots(
    *,
    day: date,
    tz: ZoneInfo,
    master: Master,
    day_off: bool,
    busy: BusySet,
    duration: timedelta,
    step: timedelta,
    now: datetime,
) -> DaySlots:
    if day_off:
        return DaySlots(day=day, slots=(), day_off=True, not_working=False)
    hours = master.hours_on(day.isoweekday())
    window = None if hours is None else _minute_interval(day, hours, tz)
    if hours is None or window is None:
        return DaySlots(day=day, slots=(), day_off=False, not_working=True)
    lunch = lunch_window(day, master, tz)
    now = now.astimezone(UTC)
    slots: list[Slot] = []
    for start, wall in _candidates(day, hours, tz, step):
        end = start + duration
        if start <= now or start < window.start or end > window.end:
            continue
        if lunch is not None and lunch.overlaps(start, end):
            continue
        if busy.overlaps(start, end):
            continue
        slots.append(Slot(start=start, end=end, local_time=f"{wall.hour:02d}:{wall.minute:02d}"))
    slots.sort(key=lambda slot: slot.start)
    return DaySlots(day=day, slots=tuple(slots), day_off=False, not_working=False)


def free_slots(
    *,
    day: date,
    tz: ZoneInfo,
    master: Master,
    day_off: bool,
    busy: Sequence[Interval],
    duration: timedelta,
    step: timedelta,
    now: datetime,
) -> DaySlots:
    """The free slots of ``master`` on the local date ``day`` (rules in the module docstring)."""
    _check(step, duration)
    return _day_slots(
        day=day,
        tz=tz,
        master=master,
        day_off=day_off,
        busy=BusySet(busy),
        duration=duration,
        step=step,
        now=now,
    )


def free_slots_range(
    *,
    first: date,
    last: date,
    tz: ZoneInfo,
    master: Master,
    days_off: Collection[date],
    busy: Sequence[Interval],
    duration: timedelta,
    step: timedelta,
    now: datetime,
) -> tuple[DaySlots, ...]:
    """``free_slots`` for every date from ``first`` to ``last`` (inclusive); busy merged once."""
    _check(step, duration)
    merged = BusySet(busy)
    return tuple(
        _day_slots(
            day=day,
            tz=tz,
            master=master,
            day_off=day in days_off,
            busy=merged,
            duration=duration,
            step=step,
            now=now,
        )
        for day in date_range(first, last)
    )


def slot_refusal(
    *,
    tz: ZoneInfo,
    master: Master,
    day_off: bool,
    busy: Sequence[Interval],
    duration: timedelta,
    step: timedelta,
    now: datetime,
    start: datetime,
    day: date | None = None,
) -> SlotRefusal | None:
    """None when ``start`` is a free slot start (exactly, as ``free_slots`` lists it), else why not.

    ``day`` defaults to the local date of ``start``; a start on another local date is OFF_GRID.
    Checks go from the schedule to the past to other bookings, so a refusal names the first
    reason that applies.
    """
    _check(step, duration)
    if start.tzinfo is None:
        raise ValueError("start must be an aware datetime")
    if day is None:
        day = local_date(start, tz)
    if day_off:
        return SlotRefusal.DAY_OFF
    hours = master.hours_on(day.isoweekday())
    window = None if hours is None else _minute_interval(day, hours, tz)
    if hours is None or window is None:
        return SlotRefusal.NOT_WORKING
    if local_date(start, tz) != day or all(
        instant != start for instant, _ in _candidates(day, hours, tz, step)
    ):
        return SlotRefusal.OFF_GRID
    end = start + duration
    if start < window.start or end > window.end:
        return SlotRefusal.OUTSIDE_HOURS
    lunch = lunch_window(day, master, tz)
    if lunch is not None and lunch.overlaps(start, end):
        return SlotRefusal.LUNCH
    if start <= now:
        return SlotRefusal.PAST
    if BusySet(busy).overlaps(start, end):
        return SlotRefusal.BUSY
    return None


def schedule_refusal(
    *, tz: ZoneInfo, master: Master, days_off: Collection[date], start: datetime, end: datetime
) -> SlotRefusal | None:
    """For manual bookings (any start minute): None when [start, end) lies inside the working hours
    of the local date of ``start``, outside its lunch break, on no day off; else why not.
    Neither the past nor other bookings are checked here."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes")
    if not start < end:
        return SlotRefusal.OUTSIDE_HOURS
    day = local_date(start, tz)
    if day in days_off:
        return SlotRefusal.DAY_OFF
    window = working_window(day, master, tz)
    if window is None:
        return SlotRefusal.NOT_WORKING
    if not window.contains(start, end):
        return SlotRefusal.OUTSIDE_HOURS
    lunch = lunch_window(day, master, tz)
    if lunch is not None and lunch.overlaps(start, end):
        return SlotRefusal.LUNCH
    return None


def lunch_overlaps(
    *, day: date, tz: ZoneInfo, lunch: MinuteRange, bookings: Sequence[Interval]
) -> bool:
    """Would ``lunch`` on ``day`` overlap any of ``bookings``?"""
    window = _minute_interval(day, lunch, tz)
    return window is not None and any(window.overlaps(b.start, b.end) for b in bookings)
