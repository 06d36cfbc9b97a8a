"""The google.rpc.Status details of a failed call, read from its trailing metadata.

Switchboard answers every failure with a google.rpc.Status carrying ``ErrorInfo(reason, domain,
metadata)``, plus ``BadRequest`` field violations for INVALID_ARGUMENT and ``RetryInfo`` for
RESOURCE_EXHAUSTED. gRPC sends that Status serialized in the ``grpc-status-details-bin`` trailer;
:func:`error_details` decodes it the way ``grpc_status.rpc_status.from_call`` does, but from the
exception itself (``grpc.aio.AioRpcError``, or a sync ``grpc.RpcError`` that is a ``grpc.Call``),
so no call object is needed::

    try:
        await sb.admin.PromoteUser(request)
    except grpc.aio.AioRpcError as exc:
        details = error_details(exc)
        if details.reason == "USER_NOT_FOUND": ...
        for violation in details.field_violations: ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = ["STATUS_DETAILS_KEY", "ErrorDetails", "FieldViolation", "error_details"]

STATUS_DETAILS_KEY = "grpc-status-details-bin"
_REQUEST_ID_KEY = "x-request-id"


class RpcErrorLike(Protocol):
    """What :func:`error_details` needs of an error: grpc.aio.AioRpcError has all of it."""

    def code(self) -> grpc.StatusCode: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Iterable[tuple[str, str | bytes]] | None: ...


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """A failed call's status and the details the server attached."""

    code: grpc.StatusCode
    message: str
    #: google.rpc.ErrorInfo: a stable UPPER_SNAKE reason, its domain, and non-secret context.
    reason: str = ""
    domain: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: google.rpc.BadRequest field violations (INVALID_ARGUMENT).
    field_violations: tuple[FieldViolation, ...] = ()
    #: google.rpc.RetryInfo: seconds to wait before trying again (RESOURCE_EXHAUSTED).
    retry_delay: float | None = None
    #: The server's id of the call (x-request-id trailer, or RequestInfo / ErrorInfo metadata).
    request_id: str = ""
    #: The decoded google.rpc.Status, when the server sent one that matches the call's code.
    status: Any = None

    def violation(self, field_path: str) -> FieldViolation | None:
        """The first violation of `field_path`, if any."""
        return next((v for v in self.field_violations if v.field == field_path), None)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def decode_status(
    code: grpc.StatusCode, trailing_metadata: Iterable[tuple[str, str | bytes]] | None
) -> Any:
    """The google.rpc.Status in `trailing_metadata`, or None if absent, undecodable or its code
    disagrees with the call's (a proxy replaced the status: its details describe another error)."""
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:  # a corrupt trailer carries no usable status
            return None
        if int(status.code) != code.value[0]:
            return None
        return status
    return None


def error_details(error: RpcErrorLike) -> ErrorDetails:
    """Reads the code, message and google.rpc.Status details of a failed call."""
    code = error.code()
    trailers = list(error.trailing_metadata() or ())
    status = decode_status(code, trailers)
    message = error.details() or ""
    request_id = next((_text(v) for k, v in trailers if k == _REQUEST_ID_KEY), "")
    if status is None:
        return ErrorDetails(code=code, message=message, request_id=request_id)

    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain = str(info.reason), str(info.domain)
            metadata.update({str(k): str(v) for k, v in info.metadata.items()})
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(
                FieldViolation(str(v.field), str(v.description), str(v.reason))
                for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = float(retry.retry_delay.ToNanoseconds()) / 1e9
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            request_id = request_id or str(info.request_id)
    return ErrorDetails(
        code=code,
        message=str(status.message) or message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=tuple(violations),
        retry_delay=retry_delay,
        request_id=request_id or metadata.get("request_id", ""),
        status=status,
    )
