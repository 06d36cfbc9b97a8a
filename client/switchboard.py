"""`Switchboard`: one channel to the server with its typed service stubs."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack

import grpc
import grpc.aio
from switchboard.identity.v1 import identity_pb2_grpc

from client.channel import RetryPolicy, connect

if TYPE_CHECKING:
    from switchboard.identity.v1.identity_pb2_grpc import (
        AdminServiceAsyncStub,
        AuthServiceAsyncStub,
    )

__all__ = ["ConnectOptions", "Switchboard"]


class ConnectOptions(TypedDict, total=False):
    """The keyword arguments of :func:`client.connect`."""

    session_token: str | None
    service_token: str | None
    act_as_telegram_user_id: int | None
    default_timeout: float | None
    retries: int
    retry_policy: RetryPolicy | None
    credentials: grpc.ChannelCredentials | None
    options: Iterable[tuple[str, Any]]


class Switchboard:
    """A channel to Switchboard and its typed stubs; closes the channel on exit::

    async with Switchboard.connect("localhost:50051", session_token=token) as sb:
        me = await sb.auth.GetMe(identity_pb2.GetMeRequest())
        users = await sb.admin.ListUsers(identity_pb2.ListUsersRequest(page_size=50))
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        """Wraps a channel, usually one from :func:`client.connect` (then it has auth metadata,
        request ids, default deadlines and retries)."""
        self._channel = channel
        self._auth = identity_pb2_grpc.AuthServiceStub(channel)
        self._admin = identity_pb2_grpc.AdminServiceStub(channel)

    @classmethod
    def connect(cls, target: str, **options: Unpack[ConnectOptions]) -> Switchboard:
        """``Switchboard(client.connect(target, **options))``."""
        return cls(connect(target, **options))

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    @property
    def auth(self) -> AuthServiceAsyncStub:
        """switchboard.identity.v1.AuthService: logins, logout, GetMe."""
        return self._auth

    @property
    def admin(self) -> AdminServiceAsyncStub:
        """switchboard.identity.v1.AdminService: users and the audit log."""
        return self._admin

    async def close(self, grace: float | None = None) -> None:
        """Closes the channel; calls still running get `grace` seconds (None: cancelled now)."""
        await self._channel.close(grace)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
