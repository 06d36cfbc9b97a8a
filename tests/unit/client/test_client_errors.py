"""client.error_details on errors built by hand: absent, mismatched and corrupt status details."""

from __future__ import annotations

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from client import STATUS_DETAILS_KEY, ErrorDetails, error_details


def _error(
    code: grpc.StatusCode, message: str, *trailers: tuple[str, str | bytes]
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details=message
    )


def _status(code: int, message: str, *details: object) -> bytes:
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)  # type: ignore[arg-type]
        packed.append(item)
    return bytes(status_pb2.Status(code=code, message=message, details=packed).SerializeToString())


def test_no_status_details() -> None:
    details = error_details(_error(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert details == ErrorDetails(grpc.StatusCode.UNAVAILABLE, "connection refused")
    assert details.field_violations == ()
    assert details.status is None


def test_error_info_and_request_id_from_error_metadata() -> None:
    raw = _status(
        code_pb2.INTERNAL,
        "internal error; quote request id r-1",
        error_details_pb2.ErrorInfo(
            reason="INTERNAL", domain="switchboard.dev", metadata={"request_id": "r-1"}
        ),
    )
    details = error_details(
        _error(
            grpc.StatusCode.INTERNAL,
            "internal error; quote request id r-1",
            (STATUS_DETAILS_KEY, raw),
        )
    )
    assert details.reason == "INTERNAL"
    assert details.domain == "switchboard.dev"
    assert details.request_id == "r-1"


def test_request_info_detail() -> None:
    raw = _status(
        code_pb2.NOT_FOUND, "no such user", error_details_pb2.RequestInfo(request_id="r-9")
    )
    details = error_details(
        _error(grpc.StatusCode.NOT_FOUND, "no such user", (STATUS_DETAILS_KEY, raw))
    )
    assert details.request_id == "r-9"
    assert details.reason == ""


def test_status_of_another_code_is_ignored() -> None:
    # A proxy answered UNAVAILABLE but passed on the upstream's INVALID_ARGUMENT details.
    raw = _status(
        code_pb2.INVALID_ARGUMENT, "bad", error_details_pb2.ErrorInfo(reason="INVALID_REQUEST")
    )
    details = error_details(
        _error(grpc.StatusCode.UNAVAILABLE, "upstream reset", (STATUS_DETAILS_KEY, raw))
    )
    assert details.status is None
    assert details.reason == ""
    assert details.message == "upstream reset"


def test_corrupt_status_is_ignored() -> None:
    error = _error(grpc.StatusCode.INTERNAL, "boom", (STATUS_DETAILS_KEY, b"\xff\xff\xff"))
    details = error_details(error)
    assert details.status is None
    assert details.code == grpc.StatusCode.INTERNAL


def test_unknown_detail_types_are_skipped() -> None:
    raw = _status(
        code_pb2.FAILED_PRECONDITION,
        "not now",
        error_details_pb2.Help(links=[error_details_pb2.Help.Link(url="https://example.invalid")]),
        error_details_pb2.ErrorInfo(reason="NOT_READY", domain="switchboard.dev"),
    )
    details = error_details(
        _error(grpc.StatusCode.FAILED_PRECONDITION, "not now", (STATUS_DETAILS_KEY, raw))
    )
    assert details.reason == "NOT_READY"
    assert details.status is not None
    assert len(details.status.details) == 2
