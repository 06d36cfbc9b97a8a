from __future__ import annotations

import contextvars

from server.kernel.context import CallContext, bind, current_call, unbind


def test_unbind_in_another_context_is_harmless() -> None:
    # A cancelled stream's async generator is finalized by the loop in a foreign context:
    # the pipeline's cleanup (access log, metrics) must still run after unbind.
    call = CallContext(method="/x.v1.S/M", request_id="r", peer="p", metadata={})
    token = bind(call)
    contextvars.copy_context().run(unbind, token)  # would raise ValueError
    assert current_call() is call
    unbind(token)
