"""to_timestamp gives exactly what Timestamp.FromDatetime gives (it replaces it for speed)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from server.kernel.wire import to_timestamp


def reference(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


@pytest.mark.parametrize(
    "value",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 11, 25, 14, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),  # negative seconds, nanos >= 0
        datetime(1900, 3, 1, 12, tzinfo=timezone(timedelta(hours=-11, minutes=-30))),
        datetime(2026, 3, 29, 3, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 11, 25, 14, 30),  # naive: UTC, as FromDatetime takes it
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ],
)
def test_edges_match_from_datetime(value: datetime) -> None:
    assert to_timestamp(value) == reference(value)


def test_random_instants_match_from_datetime() -> None:
    rng = random.Random(20261123)
    start = datetime(1900, 1, 1, tzinfo=UTC)
    for _ in range(5000):
        value = start + timedelta(microseconds=rng.randrange(200 * 365 * 86_400 * 10**6))
        if rng.random() < 0.3:
            value = value.astimezone(timezone(timedelta(minutes=rng.randrange(-720, 841, 15))))
        if rng.random() < 0.2:
            value = value.replace(tzinfo=None)
        assert to_timestamp(value) == reference(value), value


def test_none_stays_none() -> None:
    assert to_timestamp(None) is None
