"""client.connect / client.Switchboard against a tiny in-process grpc.aio server.

The server is a generic handler on 127.0.0.1 with raw-bytes methods: it records what each attempt
received (metadata, deadline, arrival time) and answers from a script of status codes, so the
tests see exactly what went over the wire.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from switchboard.identity.v1 import identity_pb2, identity_pb2_grpc
from switchboard.rooms.v1 import rooms_pb2, rooms_pb2_grpc

import client
from client import RetryPolicy, Switchboard, connect, error_details
from client.channel import retry_is_safe

UNARY = "/test.Fake/Unary"
STREAM = "/test.Fake/Stream"
GET_ME = "/switchboard.identity.v1.AuthService/GetMe"
LIST_USERS = "/switchboard.identity.v1.AdminService/ListUsers"
LOGOUT = "/switchboard.identity.v1.AuthService/Logout"
CREATE_ROOM = "/switchboard.rooms.v1.RoomService/CreateRoom"
NO_PROXY = [("grpc.enable_http_proxy", 0)]
FAST = RetryPolicy(max_retries=3, initial_backoff=0.05, max_backoff=0.4, multiplier=2.0)


@dataclass
class Attempt:
    method: str
    metadata: dict[str, str]
    time_remaining: float | None
    at: float


@dataclass
class FakeServer:
    """Answers each call with the next scripted outcome (None: OK); OK once the script is out."""

    address: str = ""
    script: list[grpc.StatusCode | None] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    delay: float = 0.0
    abort_trailers: tuple[tuple[str, str | bytes], ...] = ()
    abort_message: str = "scripted failure"

    def on(self, method: str) -> list[Attempt]:
        return [a for a in self.attempts if a.method == method]

    async def _record(self, method: str, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        metadata = {
            key: value if isinstance(value, str) else value.decode()
            for key, value in (context.invocation_metadata() or ())
        }
        self.attempts.append(Attempt(method, metadata, context.time_remaining(), time.monotonic()))
        outcome = self.script.pop(0) if self.script else None
        if self.delay:
            await asyncio.sleep(self.delay)
        if outcome is not None:
            await context.abort(outcome, self.abort_message, trailing_metadata=self.abort_trailers)

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await self._record(UNARY, context)
        return b"echo:" + request

    async def stream(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        await self._record(STREAM, context)
        for i in range(3):
            yield b"%d:" % i + request

    async def get_me(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        await self._record(GET_ME, context)
        user = identity_pb2.User(id="u-1", display_name="Ada")
        return identity_pb2.GetMeResponse(user=user).SerializeToString()

    async def logout(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        await self._record(LOGOUT, context)
        return identity_pb2.LogoutResponse().SerializeToString()

    async def create_room(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        await self._record(CREATE_ROOM, context)
        return rooms_pb2.CreateRoomResponse().SerializeToString()

    async def list_users(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        await self._record(LIST_USERS, context)
        page = identity_pb2.ListUsersRequest.FromString(request).page_size
        return identity_pb2.ListUsersResponse(next_page_token=f"size={page}").SerializeToString()


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    state = FakeServer()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Fake",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(state.unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(state.stream),
                },
            ),
            grpc.method_handlers_generic_handler(
                "switchboard.identity.v1.AuthService",
                {
                    "GetMe": grpc.unary_unary_rpc_method_handler(state.get_me),
                    "Logout": grpc.unary_unary_rpc_method_handler(state.logout),
                },
            ),
            grpc.method_handlers_generic_handler(
                "switchboard.rooms.v1.RoomService",
                {"CreateRoom": grpc.unary_unary_rpc_method_handler(state.create_room)},
            ),
            grpc.method_handlers_generic_handler(
                "switchboard.identity.v1.AdminService",
                {"ListUsers": grpc.unary_unary_rpc_method_handler(state.list_users)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    state.address = f"127.0.0.1:{port}"
    try:
        yield state
    finally:
        await server.stop(None)


def channel_to(fake: FakeServer, **kwargs: object) -> grpc.aio.Channel:
    options: dict[str, object] = {"options": NO_PROXY, "retry_policy": FAST, **kwargs}
    return connect(fake.address, **options)  # type: ignore[arg-type]


def _raw(data: bytes) -> bytes:
    return data


def unary_method(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(UNARY, request_serializer=_raw, response_deserializer=_raw)


def stream_method(channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
    return channel.unary_stream(STREAM, request_serializer=_raw, response_deserializer=_raw)


async def unary(channel: grpc.aio.Channel, payload: bytes = b"hi", **kwargs: Any) -> bytes:
    return await unary_method(channel)(payload, **kwargs)


# --- metadata -----------------------------------------------------------------------------------


async def test_session_token_and_request_id_are_sent(fake: FakeServer) -> None:
    async with channel_to(fake, session_token="sess-123") as channel:
        assert await unary(channel) == b"echo:hi"
        await unary(channel)

    first, second = fake.on(UNARY)
    assert first.metadata["authorization"] == "Bearer sess-123"
    assert "x-telegram-user-id" not in first.metadata
    assert re.fullmatch(r"[0-9a-f]{32}", first.metadata["x-request-id"])
    assert first.metadata["x-request-id"] != second.metadata["x-request-id"]


async def test_service_token_acting_as_a_telegram_user(fake: FakeServer) -> None:
    async with channel_to(fake, service_token="svc-tok", act_as_telegram_user_id=4242) as channel:
        await unary(channel)

    (attempt,) = fake.on(UNARY)
    assert attempt.metadata["authorization"] == "Bearer svc-tok"
    assert attempt.metadata["x-telegram-user-id"] == "4242"


async def test_anonymous_channel_sends_no_authorization(fake: FakeServer) -> None:
    async with channel_to(fake) as channel:
        await unary(channel)

    (attempt,) = fake.on(UNARY)
    assert "authorization" not in attempt.metadata
    assert attempt.metadata["x-request-id"]


async def test_per_call_metadata_wins(fake: FakeServer) -> None:
    async with channel_to(fake, session_token="default") as channel:
        await unary(
            channel,
            metadata=(
                ("authorization", "Bearer other"),
                ("x-request-id", "mine"),
                ("x-extra", "1"),
            ),
        )

    (attempt,) = fake.on(UNARY)
    assert attempt.metadata["authorization"] == "Bearer other"
    assert attempt.metadata["x-request-id"] == "mine"
    assert attempt.metadata["x-extra"] == "1"


async def test_stream_gets_metadata_no_default_deadline(fake: FakeServer) -> None:
    async with channel_to(fake, session_token="sess", default_timeout=5.0) as channel:
        call = stream_method(channel)(b"x")
        assert [m async for m in call] == [b"0:x", b"1:x", b"2:x"]

    (attempt,) = fake.on(STREAM)
    assert attempt.metadata["authorization"] == "Bearer sess"
    assert attempt.metadata["x-request-id"]
    assert attempt.time_remaining is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_token": "a", "service_token": "b"}, "not both"),
        ({"act_as_telegram_user_id": 1}, "needs a service token"),
        ({"service_token": "b", "act_as_telegram_user_id": 0}, "positive"),
        ({"session_token": ""}, "non-empty"),
        ({"session_token": " tok"}, "whitespace"),
        ({"default_timeout": 0}, "positive"),
        ({"retries": -1}, ">= 0"),
    ],
)
def test_connect_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect("127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


# --- retries -----------------------------------------------------------------------------------


async def test_unavailable_is_retried_with_backoff_and_same_request_id(fake: FakeServer) -> None:
    fake.script = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    async with channel_to(fake) as channel:
        assert await unary(channel) == b"echo:hi"

    attempts = fake.on(UNARY)
    assert len(attempts) == 3
    assert len({a.metadata["x-request-id"] for a in attempts}) == 1
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    # Equal jitter: retry n waits between cap/2 and cap, cap = 0.05 * 2**n.
    assert gaps[0] >= 0.025
    assert gaps[1] >= 0.05
    assert gaps[0] < 0.05 + 0.5
    assert gaps[1] < 0.1 + 0.5


async def test_contract_reads_are_retried(fake: FakeServer) -> None:
    fake.script = [grpc.StatusCode.UNAVAILABLE]
    async with channel_to(fake) as channel:
        me = await identity_pb2_grpc.AuthServiceStub(channel).GetMe(identity_pb2.GetMeRequest())
    assert me.user.display_name == "Ada"
    assert len(fake.on(GET_ME)) == 2


async def test_a_contract_write_without_request_id_is_not_retried(fake: FakeServer) -> None:
    # Logout may have been applied before the connection broke: the caller decides.
    fake.script = [grpc.StatusCode.UNAVAILABLE]
    async with channel_to(fake) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity_pb2_grpc.AuthServiceStub(channel).Logout(identity_pb2.LogoutRequest())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(fake.on(LOGOUT)) == 1


async def test_a_contract_write_with_request_id_is_retried(fake: FakeServer) -> None:
    stub_request = rooms_pb2.CreateRoomRequest(name="r", request_id=str(uuid.uuid4()))
    fake.script = [grpc.StatusCode.UNAVAILABLE]
    async with channel_to(fake) as channel:
        await rooms_pb2_grpc.RoomServiceStub(channel).CreateRoom(stub_request)
    assert len(fake.on(CREATE_ROOM)) == 2

    fake.script = [grpc.StatusCode.UNAVAILABLE]
    async with channel_to(fake) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await rooms_pb2_grpc.RoomServiceStub(channel).CreateRoom(
                rooms_pb2.CreateRoomRequest(name="r")
            )
    assert len(fake.on(CREATE_ROOM)) == 3


def test_retry_safety_is_read_from_the_contract() -> None:
    assert retry_is_safe(GET_ME, identity_pb2.GetMeRequest())
    assert not retry_is_safe(LOGOUT, identity_pb2.LogoutRequest())
    assert retry_is_safe(CREATE_ROOM, rooms_pb2.CreateRoomRequest(request_id="k"))
    assert not retry_is_safe(CREATE_ROOM, rooms_pb2.CreateRoomRequest())
    assert retry_is_safe(UNARY, b"raw")  # not a Switchboard contract: the policy decides
    assert retry_is_safe("/grpc.health.v1.Health/Check", b"")


async def test_retries_stop_after_the_limit(fake: FakeServer) -> None:
    fake.script = [grpc.StatusCode.UNAVAILABLE] * 10
    policy = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.02)
    async with channel_to(fake, retry_policy=policy) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(fake.on(UNARY)) == 3


async def test_retries_argument_sets_the_limit(fake: FakeServer) -> None:
    fake.script = [grpc.StatusCode.UNAVAILABLE] * 10
    async with connect(fake.address, options=NO_PROXY, retries=0) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await unary(channel)

    assert len(fake.on(UNARY)) == 1


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ],
)
async def test_other_codes_are_not_retried(fake: FakeServer, code: grpc.StatusCode) -> None:
    fake.script = [code, code]
    async with channel_to(fake) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)

    assert caught.value.code() == code
    assert len(fake.on(UNARY)) == 1


async def test_streams_are_not_retried(fake: FakeServer) -> None:
    fake.script = [grpc.StatusCode.UNAVAILABLE] * 3
    async with channel_to(fake) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _ = [m async for m in stream_method(channel)(b"x")]

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(fake.on(STREAM)) == 1


async def test_unreachable_server_fails_unavailable_after_retries() -> None:
    policy = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.02)
    started = time.monotonic()
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    async with connect("127.0.0.1:1", options=NO_PROXY, retry_policy=policy) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 5


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    assert [policy.backoff_cap(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for n in range(6):
        delays = {policy.backoff(n) for _ in range(50)}
        assert all(policy.backoff_cap(n) / 2 <= d <= policy.backoff_cap(n) for d in delays)
        assert len(delays) > 1  # jittered


# --- deadlines ---------------------------------------------------------------------------------


async def test_default_deadline_is_applied(fake: FakeServer) -> None:
    async with channel_to(fake, default_timeout=3.0) as channel:
        await unary(channel)

    (attempt,) = fake.on(UNARY)
    assert attempt.time_remaining is not None
    assert 2.0 < attempt.time_remaining <= 3.2  # grpc-timeout is rounded up on the wire


async def test_per_call_timeout_wins(fake: FakeServer) -> None:
    async with channel_to(fake, default_timeout=3.0) as channel:
        await unary(channel, timeout=30.0)

    (attempt,) = fake.on(UNARY)
    assert attempt.time_remaining is not None
    assert 20.0 < attempt.time_remaining <= 30.5


async def test_slow_call_hits_the_default_deadline(fake: FakeServer) -> None:
    fake.delay = 2.0
    started = time.monotonic()
    async with channel_to(fake, default_timeout=0.3) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)

    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5


async def test_retries_share_one_deadline(fake: FakeServer) -> None:
    fake.script = [grpc.StatusCode.UNAVAILABLE] * 10
    policy = RetryPolicy(max_retries=10, initial_backoff=0.2, max_backoff=0.2, multiplier=1.0)
    started = time.monotonic()
    async with channel_to(fake, retry_policy=policy, default_timeout=0.5) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)

    elapsed = time.monotonic() - started
    attempts = fake.on(UNARY)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert 2 <= len(attempts) <= 6
    assert elapsed < 2.0  # the 0.5 s deadline, not 10 retries of 0.2 s
    remaining = [a.time_remaining for a in attempts]
    assert all(r is not None for r in remaining)
    assert remaining == sorted(remaining, reverse=True)  # type: ignore[type-var]


async def test_no_deadline_when_default_timeout_is_none(fake: FakeServer) -> None:
    async with channel_to(fake, default_timeout=None) as channel:
        await unary(channel)

    (attempt,) = fake.on(UNARY)
    assert attempt.time_remaining is None


# --- error details through a real call ---------------------------------------------------------


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


async def test_error_details_are_parsed_from_a_failed_call(fake: FakeServer) -> None:
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message="request is invalid",
        details=[
            _packed(
                error_details_pb2.ErrorInfo(
                    reason="INVALID_REQUEST", domain="switchboard.dev", metadata={"n": "2"}
                )
            ),
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="user_id", description="must be a UUID", reason="FORMAT"
                        ),
                        error_details_pb2.BadRequest.FieldViolation(
                            field="page_size", description="at most 200"
                        ),
                    ]
                )
            ),
            _packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2))),
        ],
    )
    fake.script = [grpc.StatusCode.INVALID_ARGUMENT]
    fake.abort_message = "request is invalid"
    fake.abort_trailers = (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("x-request-id", "req-77"),
    )
    async with channel_to(fake) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)

    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.message == "request is invalid"
    assert (details.reason, details.domain) == ("INVALID_REQUEST", "switchboard.dev")
    assert details.metadata == {"n": "2"}
    assert details.field_violations == (
        client.FieldViolation("user_id", "must be a UUID", "FORMAT"),
        client.FieldViolation("page_size", "at most 200", ""),
    )
    assert details.violation("page_size") == client.FieldViolation("page_size", "at most 200")
    assert details.retry_delay == 2.0
    assert details.request_id == "req-77"
    assert details.status is not None


# --- Switchboard -------------------------------------------------------------------------------


async def test_switchboard_typed_stubs_and_close(fake: FakeServer) -> None:
    async with Switchboard.connect(fake.address, session_token="tok", options=NO_PROXY) as sb:
        me = await sb.auth.GetMe(identity_pb2.GetMeRequest())
        users = await sb.admin.ListUsers(identity_pb2.ListUsersRequest(page_size=7))
        channel = sb.channel

    assert me.user.display_name == "Ada"
    assert users.next_page_token == "size=7"
    assert fake.on(GET_ME)[0].metadata["authorization"] == "Bearer tok"
    assert fake.on(LIST_USERS)[0].time_remaining is not None
    with pytest.raises(grpc.aio.UsageError):
        await unary_method(channel)(b"after close")


async def test_switchboard_wraps_an_existing_channel(fake: FakeServer) -> None:
    channel = grpc.aio.insecure_channel(fake.address, options=NO_PROXY)
    sb = Switchboard(channel)
    assert sb.channel is channel
    me = await sb.auth.GetMe(identity_pb2.GetMeRequest())
    await sb.close()
    assert me.user.id == "u-1"
    assert "x-request-id" not in fake.on(GET_ME)[0].metadata  # a bare channel adds nothing
