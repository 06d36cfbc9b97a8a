"""Typed domain errors and the one place that maps them to ``google.rpc.Status``.

Domain code raises these; :func:`to_rpc_status` turns any of them into a status with
``ErrorInfo(reason, domain, metadata)`` (and ``BadRequest`` / ``RetryInfo`` where they apply).
Messages must be safe to show to a caller: no internals, no secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "switchboard.dev"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    reason: str = "INVALID_FIELD"


class DomainError(Exception):
    """Base of every error a caller may see. Subclasses fix the gRPC code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        domain: str = ERROR_DOMAIN,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.domain = domain
        self.metadata = dict(metadata or {})

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=self.domain, metadata=self.metadata
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        domain: str = ERROR_DOMAIN,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason, message, domain=domain, metadata=metadata)
        self.violations = list(violations)

    def details(self) -> list[any_pb2.Any]:
        out = super().details()
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=v.reason
                    )
                    for v in self.violations
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad)
            out.append(packed)
        return out


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retry_after_s: float,
        domain: str = ERROR_DOMAIN,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason, message, domain=domain, metadata=metadata)
        self.retry_after_s = retry_after_s

    def details(self) -> list[any_pb2.Any]:
        out = super().details()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_s * 1e9))
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        out.append(packed)
        return out


def to_rpc_status(error: DomainError) -> status_pb2.Status:
    return status_pb2.Status(
        code=error.code.value[0], message=error.message, details=error.details()
    )


def internal_status(request_id: str) -> status_pb2.Status:
    """What a caller sees of an unexpected failure: nothing but the request id to quote."""
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"request_id": request_id}
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; quote request id {request_id}",
        details=[packed],
    )
