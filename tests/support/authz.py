"""Authorization matrices: each kind of caller x each RPC, allowed or refused with which code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from tests.support.api import Metadata, error_info

OK, UNAUTH, DENIED = "ok", "unauthenticated", "denied"

# One RPC, made with the given caller's metadata.
Call = Callable[[Metadata], Awaitable[Any]]


async def outcome(call: Call, md: Metadata) -> str:
    """UNAUTH or DENIED when authorization refused the call, OK otherwise."""
    try:
        await call(md)
    except grpc.aio.AioRpcError as exc:
        reason = error_info(exc).reason
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED and reason == "UNAUTHENTICATED":
            return UNAUTH
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED and reason == "ACCESS_DENIED":
            return DENIED
        # Anything else (ROOM_NOT_FOUND, MASTER_NOT_FOUND, SLOT_IN_PAST ...) got past
        # authorization to the handler. Every refusal carries an ErrorInfo (error_info asserts).
    return OK


async def outcomes(call: Call, callers: Mapping[str, Metadata]) -> dict[str, str]:
    """The outcome of ``call`` for each caller, by the caller's name."""
    return {caller: await outcome(call, md) for caller, md in callers.items()}
