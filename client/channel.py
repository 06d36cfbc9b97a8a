"""A grpc.aio channel to Switchboard with auth metadata, request ids, deadlines and retries.

Every call made through :func:`connect`'s channel gets:

* ``authorization: Bearer <token>`` (a user's session token or a service token) and, for a service
  acting on behalf of a Telegram user, ``x-telegram-user-id``;
* ``x-request-id``: a fresh id per call, the same on every retry of that call, so the server's logs
  and audit events of all attempts share it (the server echoes it in the trailing metadata);
* unary calls only: a default deadline (``default_timeout``) when the call sets none, and retries of
  UNAVAILABLE with exponential backoff and jitter, all attempts within that one deadline.

Streams get the metadata but no default deadline (WaitTelegramLogin is long-lived by design) and
no retry (a broken stream may already have delivered messages; the caller knows how to resume).

Retries are done by a client interceptor rather than gRPC's built-in ``retryPolicy`` service
config. Both retry UNAVAILABLE with jittered exponential backoff; the interceptor was chosen
because it keeps one ``x-request-id`` across attempts, shares one overall deadline across
attempts, logs each retry, has no 5-attempt ceiling, and is the same code path whatever the
channel's service config says, which makes it testable in-process.

An UNAVAILABLE does not prove the server did nothing: it may have applied the call before the
connection broke, and a retry then applies it again. So the interceptor retries a Switchboard
call only when repeating it is safe, which it reads from the contract:

* a read: the method's access policy declares ``RATE_CLASS_READ``;
* a method whose contract declares ``idempotency_level`` ``NO_SIDE_EFFECTS`` or ``IDEMPOTENT``;
* a mutation whose request carries a non-empty ``request_id`` (idempotency key) the server
  deduplicates on.

Any other Switchboard write (one that consumes a one-time code, or counts or appends each
time it is applied) fails with the UNAVAILABLE, and the caller decides. Methods that are not
part of a Switchboard contract (health, reflection, tests' raw methods) are retried as the
policy says: the client cannot know them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from switchboard.options.v1 import access_pb2

__all__ = [
    "AUTHORIZATION_HEADER",
    "REQUEST_ID_HEADER",
    "TELEGRAM_USER_ID_HEADER",
    "TELEGRAM_USER_NAME_HEADER",
    "RetryPolicy",
    "connect",
]

AUTHORIZATION_HEADER = "authorization"
TELEGRAM_USER_ID_HEADER = "x-telegram-user-id"
# The acting Telegram user's display name, percent-encoded UTF-8 (metadata values are ASCII).
# The server uses it only to name a user it creates on first sight (or who has no name yet).
TELEGRAM_USER_NAME_HEADER = "x-telegram-user-name"
REQUEST_ID_HEADER = "x-request-id"

log = logging.getLogger("switchboard.client")

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

# Jitter only spreads retries out in time; it needs no cryptographic randomness, and a
# SystemRandom keeps it independent of any seeding the application does.
_jitter = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how fast a unary call is retried.

    The n-th retry (n = 0, 1, ...) waits a random time in ``[cap / 2, cap]`` with
    ``cap = min(max_backoff, initial_backoff * multiplier ** n)`` ("equal jitter"): the wait still
    grows exponentially, and clients that failed together do not come back together.
    """

    max_retries: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    retryable_codes: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")

    def backoff_cap(self, retry: int) -> float:
        """The longest wait before retry number `retry` (0-based)."""
        return min(self.max_backoff, self.initial_backoff * self.multiplier**retry)

    def backoff(self, retry: int) -> float:
        """A jittered wait before retry number `retry` (0-based)."""
        cap = self.backoff_cap(retry)
        return _jitter.uniform(cap / 2, cap)


class _CallDefaults:
    """The metadata and deadline every call of one channel gets."""

    def __init__(self, metadata: Sequence[tuple[str, str]], default_timeout: float | None) -> None:
        self._metadata = tuple(metadata)
        self.default_timeout = default_timeout

    def apply(
        self, details: grpc.aio.ClientCallDetails, *, default_deadline: bool
    ) -> grpc.aio.ClientCallDetails:
        """Adds what the call does not set itself: per-call metadata and timeouts win."""
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        present = set(metadata.keys())
        for key, value in self._metadata:
            if key not in present:
                metadata.add(key, value)
        if REQUEST_ID_HEADER not in present:
            metadata.add(REQUEST_ID_HEADER, uuid.uuid4().hex)
        timeout = details.timeout
        if timeout is None and default_deadline:
            timeout = self.default_timeout
        return _with(details, timeout=timeout, metadata=metadata)


def _with(
    details: grpc.aio.ClientCallDetails,
    *,
    timeout: float | None,
    metadata: grpc.aio.Metadata | None,
) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _UnaryUnaryInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Metadata, default deadline, and retries of retryable codes within that deadline."""

    def __init__(self, defaults: _CallDefaults, policy: RetryPolicy) -> None:
        self._defaults = defaults
        self._policy = policy

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryUnaryCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> _Resp | grpc.aio.UnaryUnaryCall[_Req, _Resp]:
        details = self._defaults.apply(client_call_details, default_deadline=True)
        deadline = None if details.timeout is None else time.monotonic() + details.timeout
        retry = 0
        while True:
            attempt = details
            if deadline is not None:
                remaining = max(deadline - time.monotonic(), 0.0)
                attempt = _with(details, timeout=remaining, metadata=details.metadata)
            call = await continuation(attempt, request)
            code = await call.code()
            if code not in self._policy.retryable_codes or retry >= self._policy.max_retries:
                return call
            if not retry_is_safe(_method_name(details), request):
                return call
            delay = self._policy.backoff(retry)
            if deadline is not None and time.monotonic() + delay >= deadline:
                return call
            retry += 1
            log.info(
                "retrying %s after %s (retry %d of %d in %.3fs, request id %s)",
                _method_name(details),
                code.name,
                retry,
                self._policy.max_retries,
                delay,
                _request_id(details),
            )
            await asyncio.sleep(delay)


class _UnaryStreamInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    """Metadata only: no default deadline, no retry."""

    def __init__(self, defaults: _CallDefaults) -> None:
        self._defaults = defaults

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryStreamCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> AsyncIterator[_Resp] | grpc.aio.UnaryStreamCall[_Req, _Resp]:
        details = self._defaults.apply(client_call_details, default_deadline=False)
        return await continuation(details, request)


class _StreamUnaryInterceptor(grpc.aio.StreamUnaryClientInterceptor):
    """Metadata only (the request stream cannot be replayed, so no retry)."""

    def __init__(self, defaults: _CallDefaults) -> None:
        self._defaults = defaults

    async def intercept_stream_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Any], Awaitable[grpc.aio.StreamUnaryCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> _Resp | grpc.aio.StreamUnaryCall[_Req, _Resp]:
        details = self._defaults.apply(client_call_details, default_deadline=False)
        return await continuation(details, request_iterator)


class _StreamStreamInterceptor(grpc.aio.StreamStreamClientInterceptor):
    """Metadata only."""

    def __init__(self, defaults: _CallDefaults) -> None:
        self._defaults = defaults

    async def intercept_stream_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Any], Awaitable[grpc.aio.StreamStreamCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> AsyncIterator[_Resp] | grpc.aio.StreamStreamCall[_Req, _Resp]:
        details = self._defaults.apply(client_call_details, default_deadline=False)
        return await continuation(details, request_iterator)


@functools.cache
def _contract_method(method: str) -> MethodDescriptor | None:
    """The descriptor of a Switchboard RPC (``/pkg.Service/Method``), if its contract is loaded."""
    if not method.startswith("/switchboard."):
        return None
    try:
        return descriptor_pool.Default().FindMethodByName(method[1:].replace("/", "."))
    except KeyError:
        return None


def retry_is_safe(method: str, request: object) -> bool:
    """Whether repeating this unary call after an UNAVAILABLE can do no harm (see module doc)."""
    descriptor = _contract_method(method)
    if descriptor is None:
        return True
    if getattr(request, "request_id", ""):
        return True
    options = descriptor.GetOptions()
    if options.idempotency_level in (
        descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
        descriptor_pb2.MethodOptions.IDEMPOTENT,
    ):
        return True
    policy = options.Extensions[access_pb2.access]
    return bool(policy.rate_class == access_pb2.RATE_CLASS_READ)


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method: str | bytes = details.method
    return method.decode() if isinstance(method, bytes) else method


def _request_id(details: grpc.aio.ClientCallDetails) -> str:
    value = (details.metadata or grpc.aio.Metadata()).get(REQUEST_ID_HEADER, "")
    return value.decode() if isinstance(value, bytes) else value


def auth_metadata(
    *,
    session_token: str | None = None,
    service_token: str | None = None,
    act_as_telegram_user_id: int | None = None,
) -> tuple[tuple[str, str], ...]:
    """The metadata that authenticates a call, as :func:`connect` adds it."""
    if session_token is not None and service_token is not None:
        raise ValueError("pass a session token or a service token, not both")
    if act_as_telegram_user_id is not None:
        if service_token is None:
            raise ValueError("acting as a Telegram user needs a service token")
        if act_as_telegram_user_id <= 0:
            raise ValueError("act_as_telegram_user_id must be a positive Telegram user id")
    metadata: list[tuple[str, str]] = []
    token = session_token if session_token is not None else service_token
    if token is not None:
        if not token or token != token.strip():
            raise ValueError("the token must be non-empty, without surrounding whitespace")
        metadata.append((AUTHORIZATION_HEADER, f"Bearer {token}"))
    if act_as_telegram_user_id is not None:
        metadata.append((TELEGRAM_USER_ID_HEADER, str(act_as_telegram_user_id)))
    return tuple(metadata)


def connect(
    target: str,
    *,
    session_token: str | None = None,
    service_token: str | None = None,
    act_as_telegram_user_id: int | None = None,
    default_timeout: float | None = 10.0,
    retries: int = 3,
    retry_policy: RetryPolicy | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    options: Iterable[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """Opens a grpc.aio channel to Switchboard at `target` ("host:port").

    Args:
        target: the server address, e.g. "localhost:50051".
        session_token: a user's session token (from a login RPC).
        service_token: a service principal's token (bots, workers).
        act_as_telegram_user_id: with a service token, act on behalf of this Telegram user.
        default_timeout: deadline in seconds of unary calls that set no timeout; None for none.
        retries: how many times a unary call failing with UNAVAILABLE is retried (0: never).
            Every unary call, reads and writes alike: see the module docstring for which calls
            that is safe for.
        retry_policy: full control over retries (backoff, codes); overrides `retries`.
        credentials: TLS channel credentials; None for a plaintext channel (local, in-cluster).
        options: extra grpc channel options.

    The caller owns the channel: close it (``await channel.close()``), or use :class:`Switchboard`
    as an async context manager.
    """
    if default_timeout is not None and default_timeout <= 0:
        raise ValueError("default_timeout must be positive (or None for no deadline)")
    policy = retry_policy if retry_policy is not None else RetryPolicy(max_retries=retries)
    defaults = _CallDefaults(
        auth_metadata(
            session_token=session_token,
            service_token=service_token,
            act_as_telegram_user_id=act_as_telegram_user_id,
        ),
        default_timeout,
    )
    interceptors: list[grpc.aio.ClientInterceptor] = [
        _UnaryUnaryInterceptor(defaults, policy),
        _UnaryStreamInterceptor(defaults),
        _StreamUnaryInterceptor(defaults),
        _StreamStreamInterceptor(defaults),
    ]
    channel_options = list(options)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=channel_options, interceptors=interceptors)
    return grpc.aio.secure_channel(
        target, credentials, options=channel_options, interceptors=interceptors
    )
