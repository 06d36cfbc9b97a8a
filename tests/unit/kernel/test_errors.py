from __future__ import annotations

import pytest
from google.rpc import code_pb2, error_details_pb2

from server.kernel import paging
from server.kernel.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    internal_status,
    to_rpc_status,
)


def _unpack(status: object, kind: type) -> object:
    for detail in status.details:  # type: ignore[attr-defined]
        message = kind()
        if detail.Unpack(message):
            return message
    raise AssertionError(f"no {kind.__name__}")


def test_domain_error_maps_to_status_with_error_info() -> None:
    status = to_rpc_status(
        NotFound("USER_NOT_FOUND", "the user does not exist", metadata={"k": "v"})
    )
    assert status.code == code_pb2.NOT_FOUND
    info = _unpack(status, error_details_pb2.ErrorInfo)
    assert info.reason == "USER_NOT_FOUND"  # type: ignore[attr-defined]
    assert dict(info.metadata) == {"k": "v"}  # type: ignore[attr-defined]


def test_invalid_argument_carries_bad_request() -> None:
    error = InvalidArgument(
        "INVALID_FIELDS", "bad", violations=[FieldViolation("a", "is required", "REQUIRED")]
    )
    bad = _unpack(to_rpc_status(error), error_details_pb2.BadRequest)
    assert [(v.field, v.reason) for v in bad.field_violations] == [("a", "REQUIRED")]  # type: ignore[attr-defined]


def test_resource_exhausted_carries_retry_info() -> None:
    status = to_rpc_status(ResourceExhausted("RATE_LIMITED", "slow down", retry_after_s=1.5))
    retry = _unpack(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000  # type: ignore[attr-defined]


def test_internal_status_leaks_nothing_but_the_request_id() -> None:
    status = internal_status("req-123")
    assert status.code == code_pb2.INTERNAL
    assert "req-123" in status.message
    info = _unpack(status, error_details_pb2.ErrorInfo)
    assert dict(info.metadata) == {"request_id": "req-123"}  # type: ignore[attr-defined]


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    token = paging.encode({"b": 42})
    assert paging.decode(token) == {"b": 42}
    assert paging.decode("") is None
    for garbage in ("%%%", "bm90IGpzb24", paging.encode({"b": 1})[:-3] + "!!"):
        with pytest.raises(InvalidArgument) as caught:
            paging.decode(garbage)
        assert caught.value.violations[0].field == "page_token"
