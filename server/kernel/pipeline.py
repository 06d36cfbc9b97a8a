"""The one server interceptor: every RPC passes the same stages in the same order.

    request id -> structured log -> metrics -> [error mapping around:]
        authentication -> authorization -> validation -> rate limiting -> handler

Request id, logging and metrics observe the whole call (they see the final status code).
Error mapping is the single place where a typed ``DomainError`` raised by any stage or
handler becomes a ``google.rpc.Status``; anything else becomes INTERNAL with the request id
and a logged traceback. Handlers read the call (principal, request id) via
``server.kernel.context.current_call()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeAlias

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from server.kernel import access, metrics
from server.kernel.context import CallContext, ServicerContext, bind, unbind
from server.kernel.errors import (
    DomainError,
    PermissionDenied,
    Unauthenticated,
    internal_status,
    to_rpc_status,
)
from server.kernel.logs import AccessLog, JsonFormatter
from server.kernel.methods import INFRASTRUCTURE_SERVICES, MethodInfo, MethodRegistry
from server.kernel.principal import Principal
from server.kernel.ratelimit import RateLimiter
from server.kernel.validation import validate

log = logging.getLogger("switchboard.rpc")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID = 128


class Authenticator(Protocol):
    async def authenticate(self, metadata: dict[str, str], request_id: str) -> Principal: ...


class AuditSink(Protocol):
    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        request_id: str,
        attributes: dict[str, str] | None = None,
    ) -> None: ...


def _request_id(metadata: dict[str, str]) -> str:
    given = metadata.get(REQUEST_ID_HEADER, "")
    if given and len(given) <= _MAX_REQUEST_ID and given.isprintable():
        return given
    return uuid.uuid4().hex


class TrustedProxies:
    """Proxies (Envoy) whose ``x-forwarded-for`` we believe: addresses or CIDR networks."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries]
        self._known: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        known = self._known.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self._networks)
            if len(self._known) < 4096:
                self._known[host] = known
        return known


def client_address(peer: str, metadata: dict[str, str], trusted: TrustedProxies) -> str:
    """The caller's address: the peer, or the last x-forwarded-for hop a trusted proxy added."""
    host = peer
    if peer.startswith(("ipv4:", "ipv6:")):
        host = peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
    forwarded = metadata.get("x-forwarded-for", "")
    if forwarded and host in trusted:
        return forwarded.split(",")[-1].strip() or host
    return host


def _code_of(context: ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    for known in grpc.StatusCode:
        if known.value[0] == code:
            return known
    return grpc.StatusCode.UNKNOWN


def bytes_passthrough(
    serializer: Callable[[Any], bytes] | None,
) -> Callable[[Any], bytes] | None:
    """A streaming handler may yield an already serialized response (``bytes``) instead of a
    message: it is written as it is. Used where one encoding is shared by many streams (room
    fan-out); the bytes must be a valid encoding of the method's response type."""
    if serializer is None:
        return None

    def serialize(message: Any) -> bytes:
        if type(message) is bytes:
            return message
        return serializer(message)

    return serialize


class Pipeline(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        methods: MethodRegistry,
        authenticator: Authenticator,
        audit: AuditSink,
        limiter: RateLimiter | None,
        trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"),
        access_log: AccessLog | None = None,
        domain_roles: Mapping[str, access.DomainRoleResolver] | None = None,
    ) -> None:
        self._domain_roles = dict(domain_roles or {})
        self._methods = methods
        self._authenticator = authenticator
        self._audit = audit
        self._limiter = limiter
        self._trusted = TrustedProxies(trusted_proxies)
        self._access_log = access_log or AccessLog(JsonFormatter(), sys.stderr, enabled=False)
        self._cache: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        name: str = handler_call_details.method
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = self._wrap(self._methods.get(name), handler)
        self._cache[name] = wrapped
        return wrapped

    # --- handler wrapping ----------------------------------------------------------------

    def _wrap(self, method: MethodInfo, handler: Handler) -> Handler:
        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary
            unary_metrics = metrics.MethodMetrics("unary", method.service, method.name)

            async def unary_unary(request: Message, context: ServicerContext) -> Any:
                call = self._start(method, context, unary_metrics)
                token = bind(call)
                try:
                    await self._checks(method, call, request)
                    return await inner_uu(request, context)
                except BaseException as exc:
                    await self._fail(call, context, exc)
                    raise  # pragma: no cover  (_fail always raises)
                finally:
                    unbind(token)
                    self._finish(call, unary_metrics)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us: Any = handler.unary_stream
            stream_metrics = metrics.MethodMetrics("server_stream", method.service, method.name)

            async def unary_stream(
                request: Message, context: ServicerContext
            ) -> AsyncIterator[Any]:
                call = self._start(method, context, stream_metrics)
                token = bind(call)
                try:
                    await self._checks(method, call, request)
                    async for item in inner_us(request, context):
                        yield item
                except BaseException as exc:
                    await self._fail(call, context, exc)
                finally:
                    # A cancelled stream's generator is finalized by the event loop in another
                    # context: the token's context is gone with its task, nothing to reset.
                    with contextlib.suppress(ValueError):
                        unbind(token)
                    self._finish(call, stream_metrics)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=bytes_passthrough(handler.response_serializer),
            )
        # Client and bidi streaming: only server reflection (public infrastructure) uses them;
        # our contracts do not yet, so refuse those rather than let them bypass the checks.
        if method.service in INFRASTRUCTURE_SERVICES:
            return handler
        return self._refuse_streaming_requests(method, handler)

    def _refuse_streaming_requests(self, method: MethodInfo, handler: Handler) -> Handler:
        async def refuse(request: Any, context: ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "client streaming is not supported")

        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(refuse)
        return grpc.stream_stream_rpc_method_handler(refuse)

    # --- stages --------------------------------------------------------------------------

    def _start(
        self, method: MethodInfo, context: ServicerContext, observed: metrics.MethodMetrics
    ) -> CallContext:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        request_id = _request_id(metadata)
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        observed.started.inc()
        return CallContext(
            method=method.full_name,
            request_id=request_id,
            peer=client_address(context.peer() or "", metadata, self._trusted),
            metadata=metadata,
        )

    async def _checks(self, method: MethodInfo, call: CallContext, request: Message) -> None:
        # Authentication.
        call.principal = await self._authenticator.authenticate(call.metadata, call.request_id)
        # Authorization, from the policy declared in the contract.
        if not await access.allows_with_domain_roles(
            method.policy, call.principal, self._domain_roles
        ):
            if method.policy is not None and call.principal.is_anonymous:
                raise Unauthenticated("UNAUTHENTICATED", "this call needs a valid bearer token")
            await self._audit.record(
                actor=call.principal.label(),
                action="access.denied",
                target=method.full_name,
                request_id=call.request_id,
            )
            if method.policy is None:
                raise PermissionDenied("NO_POLICY", "this method declares no access policy")
            raise PermissionDenied("ACCESS_DENIED", "the caller may not call this method")
        # Validation of declared field constraints.
        validate(request)
        # Rate limiting per principal (or client address) and method class.
        if self._limiter is not None:
            subject = (
                call.principal.label() if not call.principal.is_anonymous else f"ip:{call.peer}"
            )
            await self._limiter.take(method.rate_class, subject)

    async def _fail(self, call: CallContext, context: ServicerContext, exc: BaseException) -> None:
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            call.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, grpc.aio.AbortError):
            # A handler (or a previous stage) already aborted with an explicit status.
            call.code = _code_of(context)
            raise exc
        status: status_pb2.Status
        if isinstance(exc, DomainError):
            status = to_rpc_status(exc)
            call.code = exc.code
        else:
            call.code = grpc.StatusCode.INTERNAL
            log.error(
                "unhandled error",
                exc_info=exc,
                extra={"request_id": call.request_id, "method": call.method},
            )
            status = internal_status(call.request_id)
        converted = rpc_status.to_status(status)
        await context.abort(
            converted.code,
            converted.details,
            (*tuple(converted.trailing_metadata), (REQUEST_ID_HEADER, call.request_id)),
        )

    def _finish(self, call: CallContext, observed: metrics.MethodMetrics) -> None:
        elapsed = time.perf_counter() - call.started
        code = call.code.name
        observed.handled(code).inc()
        observed.seconds.observe(elapsed)
        self._access_log.write(
            {
                "request_id": call.request_id,
                "method": call.method,
                "principal": call.principal.label(),
                "peer": call.peer,
                "code": code,
                "duration_ms": round(elapsed * 1000, 3),
            }
        )
