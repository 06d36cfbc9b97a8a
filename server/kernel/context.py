"""Per-call state the pipeline builds and handlers read (request id, principal, peer)."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from server.kernel.principal import ANONYMOUS, Principal


@dataclass(slots=True)
class CallContext:
    method: str
    request_id: str
    peer: str
    metadata: dict[str, str]
    principal: Principal = ANONYMOUS
    code: grpc.StatusCode = grpc.StatusCode.OK
    started: float = field(default_factory=time.perf_counter)


# The servicer context type handlers receive.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

_current: contextvars.ContextVar[CallContext] = contextvars.ContextVar("switchboard_call")


def current_call() -> CallContext:
    """The call being handled; only valid inside an RPC handler."""
    return _current.get()


def bind(call: CallContext) -> contextvars.Token[CallContext]:
    return _current.set(call)


def unbind(token: contextvars.Token[CallContext]) -> None:
    _current.reset(token)
