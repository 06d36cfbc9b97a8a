"""The bots' side of gRPC: one service-token channel per principal, acting stubs per update.

A bot is a service principal (``SWITCHBOARD_SERVICE_TOKEN_<PRINCIPAL>``) with the
``identity.act_as`` scope. For each update it talks to the server *as the Telegram user* who
sent it (``x-telegram-user-id``, see :func:`client.connect`), so the server applies that user's
role and rate limits. The acting stubs share the principal's one channel (connection, retries,
request ids, deadlines) and add the header to each call they make: nothing is opened per update.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import grpc.aio
from switchboard.identity.v1 import channels_pb2_grpc, identity_pb2, identity_pb2_grpc

from client import TELEGRAM_USER_ID_HEADER, TELEGRAM_USER_NAME_HEADER, connect

__all__ = ["Platform", "PlatformClient", "UserCache"]

_OPTIONS = (("grpc.enable_http_proxy", 0),)


class Platform:
    """Typed stubs over one channel (the service itself, or acting as one Telegram user)."""

    def __init__(self, channel: grpc.aio.Channel, telegram_user_id: int | None = None) -> None:
        self.channel = channel
        self.telegram_user_id = telegram_user_id
        self.auth = identity_pb2_grpc.AuthServiceStub(channel)
        self.admin = identity_pb2_grpc.AdminServiceStub(channel)
        self.channels = channels_pb2_grpc.ChannelServiceStub(channel)


class _WithMetadata:
    """A multicallable adding fixed metadata to every call (the caller's own metadata kept)."""

    def __init__(self, inner: Any, extra: Sequence[tuple[str, str]]) -> None:
        self._inner = inner
        self._extra = tuple(extra)

    def __call__(self, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        merged = grpc.aio.Metadata(*(metadata or ()))
        present = set(merged.keys())
        for key, value in self._extra:
            if key not in present:
                merged.add(key, value)
        return self._inner(*args, metadata=merged, **kwargs)


class _ActingChannel:
    """What the generated stubs need of a channel, over a shared one, acting as a user."""

    def __init__(
        self, channel: grpc.aio.Channel, telegram_user_id: int, display_name: str = ""
    ) -> None:
        if telegram_user_id <= 0:
            raise ValueError("telegram_user_id must be a positive Telegram user id")
        self._channel = channel
        extra = [(TELEGRAM_USER_ID_HEADER, str(telegram_user_id))]
        if display_name.strip():
            extra.append((TELEGRAM_USER_NAME_HEADER, quote(display_name.strip()[:100], safe="")))
        self._extra = tuple(extra)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.unary_unary(*args, **kwargs), self._extra)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.unary_stream(*args, **kwargs), self._extra)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.stream_unary(*args, **kwargs), self._extra)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.stream_stream(*args, **kwargs), self._extra)


class PlatformClient:
    """The connection of one service principal to the server."""

    def __init__(self, target: str, service_token: str, *, timeout: float = 10.0) -> None:
        self.target = target
        self.service = Platform(
            connect(target, service_token=service_token, default_timeout=timeout, options=_OPTIONS)
        )

    def acting(self, telegram_user_id: int, display_name: str = "") -> Platform:
        """Stubs acting as the Telegram user (over the shared channel; nothing to close). The
        display name (Telegram's first and last name) names the user if the server creates it."""
        channel = cast(
            grpc.aio.Channel,
            _ActingChannel(self.service.channel, telegram_user_id, display_name),
        )
        return Platform(channel, telegram_user_id)

    async def close(self) -> None:
        await self.service.channel.close()


@dataclass(frozen=True, slots=True)
class _Entry:
    user: identity_pb2.User
    expires: float


class UserCache:
    """Resolved platform users by Telegram id, for a short time (role and language changes show
    up within `ttl` seconds; the server re-checks every call anyway)."""

    def __init__(self, ttl: float, *, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self._max_size = max_size
        self._entries: OrderedDict[int, _Entry] = OrderedDict()

    def get(self, telegram_user_id: int) -> identity_pb2.User | None:
        entry = self._entries.get(telegram_user_id)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self._entries[telegram_user_id]
            return None
        return entry.user

    def put(self, telegram_user_id: int, user: identity_pb2.User) -> None:
        if self.ttl <= 0:
            return
        self._entries[telegram_user_id] = _Entry(user, time.monotonic() + self.ttl)
        self._entries.move_to_end(telegram_user_id)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def forget(self, telegram_user_id: int) -> None:
        self._entries.pop(telegram_user_id, None)
