from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import grpc
import pytest
from google.protobuf.message import Message

from server.kernel import metrics
from server.kernel.context import CallContext, ServicerContext, bind, current_call, unbind
from server.kernel.methods import MethodInfo
from server.kernel.pipeline import Pipeline


def _call() -> CallContext:
    return CallContext(method="/x.v1.S/M", request_id="r", peer="p", metadata={})


def test_unbind_is_strict_about_the_context() -> None:
    call = _call()
    token = bind(call)
    with pytest.raises(ValueError, match="created in a different Context"):
        contextvars.copy_context().run(unbind, token)
    assert current_call() is call
    unbind(token)


class _Bare(Pipeline):
    """The pipeline's wrapping with its stages stubbed: every call is ``call``; finished
    calls are recorded."""

    def __init__(self, call: CallContext) -> None:
        super().__init__(cast(Any, None), cast(Any, None), cast(Any, None), None)
        self.call = call
        self.finished: list[CallContext] = []

    def _start(
        self, method: MethodInfo, context: ServicerContext, observed: metrics.MethodMetrics
    ) -> CallContext:
        return self.call

    async def _checks(self, method: MethodInfo, call: CallContext, request: Message) -> None:
        return None

    def _finish(self, call: CallContext, observed: metrics.MethodMetrics) -> None:
        self.finished.append(call)


async def test_a_stream_finalized_in_another_context_still_logs_and_counts() -> None:
    # A cancelled stream's async generator is finalized by the loop in a foreign context:
    # the pipeline's cleanup (access log, metrics) must still run.
    call = _call()
    pipeline = _Bare(call)

    async def inner(request: Any, context: Any) -> AsyncIterator[int]:
        while True:
            yield 1

    method = MethodInfo.of("x.v1.S", "M", None)
    handler = pipeline._wrap(method, grpc.unary_stream_rpc_method_handler(inner))
    assert handler.unary_stream is not None
    stream = cast(AsyncGenerator[int, None], handler.unary_stream(object(), cast(Any, object())))
    assert await anext(stream) == 1
    # aclose in a fresh context: resetting the call's token there raises ValueError.
    await asyncio.create_task(stream.aclose(), context=contextvars.Context())
    assert pipeline.finished == [call]
    assert call.code is grpc.StatusCode.CANCELLED
