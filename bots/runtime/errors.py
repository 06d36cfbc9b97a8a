"""Server errors -> short, localized, human messages (never a stack trace).

The gRPC status code picks a generic message; the google.rpc.ErrorInfo reason (read with
:func:`client.error_details`) may pick a more precise one. Unexpected failures are logged with
the request id (the server logs the same id), and the user sees only that id as a reference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from client import error_details
from client.errors import RpcErrorLike

__all__ = ["REASON_MESSAGES", "Explained", "explain"]

log = logging.getLogger("switchboard.bots.errors")

#: ErrorInfo reason -> message key, for reasons every bot may meet.
REASON_MESSAGES: Mapping[str, str] = {
    "USER_DELETED": "error.user_deleted",
}

_CODE_MESSAGES: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.PERMISSION_DENIED: "error.permission_denied",
    grpc.StatusCode.UNAUTHENTICATED: "error.permission_denied",
    grpc.StatusCode.NOT_FOUND: "error.not_found",
    grpc.StatusCode.ALREADY_EXISTS: "error.already_exists",
    grpc.StatusCode.INVALID_ARGUMENT: "error.invalid_argument",
    grpc.StatusCode.OUT_OF_RANGE: "error.invalid_argument",
    grpc.StatusCode.FAILED_PRECONDITION: "error.failed_precondition",
    grpc.StatusCode.UNAVAILABLE: "error.unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "error.unavailable",
    grpc.StatusCode.CANCELLED: "error.unavailable",
}

# Codes that mean "the user asked for something the platform refuses": not our bug, log quietly.
_EXPECTED = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


@dataclass(frozen=True, slots=True)
class Explained:
    """What to tell the user about a failed call: a catalog key and its parameters."""

    key: str
    params: Mapping[str, object] = field(default_factory=dict)
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    reason: str = ""
    request_id: str = ""


def explain(error: RpcErrorLike, reasons: Mapping[str, str] | None = None) -> Explained:
    """The message for a failed call. `reasons` (ErrorInfo reason -> key) adds bot-specific
    messages and wins over :data:`REASON_MESSAGES` and the per-code defaults."""
    details = error_details(error)
    code, reason, request_id = details.code, details.reason, details.request_id
    key = None
    if reason:
        key = (reasons or {}).get(reason) or REASON_MESSAGES.get(reason)
    params: dict[str, object] = {}
    if key is None and code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        delay = details.retry_delay
        if delay is not None and delay > 0:
            key, params["seconds"] = "error.rate_limited", max(1, math.ceil(delay))
        else:
            key = "error.rate_limited_later"
    if key is None:
        key = _CODE_MESSAGES.get(code)
    if key is None:  # INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS, ...: our problem
        key = "error.internal" if request_id else "error.internal_no_id"
        params["request_id"] = request_id
        log.error(
            "server call failed: %s %s (request id %s)", code.name, reason or "-", request_id or "-"
        )
    elif code in _EXPECTED:
        log.info(
            "server refused: %s %s (request id %s)", code.name, reason or "-", request_id or "-"
        )
    else:
        log.warning(
            "server call failed: %s %s (request id %s)", code.name, reason or "-", request_id or "-"
        )
    return Explained(key, params, code, reason, request_id)
