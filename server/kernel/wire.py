"""Wire conversions shared by the domains' api.py modules (proto <-> Python values)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from google.protobuf import timestamp_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


@overload
def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp: ...
@overload
def to_timestamp(value: None) -> None: ...
@overload
def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None: ...


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """``value`` as a protobuf Timestamp (None stays None); a naive datetime is taken as UTC,
    as ``Timestamp.FromDatetime`` does.

    Same result as ``FromDatetime``, about 4x faster (timedelta arithmetic instead of its
    calendar walk): availability answers carry many timestamps. The timedelta's normalised
    form (days may be negative, seconds and microseconds never are) is exactly protobuf's
    (seconds any sign, nanos in 0..999_999_999).
    """
    if value is None:
        return None
    since = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000
    )
