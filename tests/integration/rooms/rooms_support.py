"""Helpers for the rooms tests: stubs, a room with members, a subscription that collects events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field

import grpc
from switchboard.rooms.v1 import calls_pb2_grpc, rooms_pb2, rooms_pb2_grpc

from tests.support.api import Api, Metadata, Session
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

TEXT_AND_VOICE = rooms_pb2.ROOM_KIND_TEXT_AND_VOICE


class Rooms:
    """The rooms and calls stubs on one channel, plus shortcuts."""

    def __init__(self, api: Api, channel: grpc.aio.Channel | None = None) -> None:
        self.api = api
        self.channel = channel or api.channel
        self.rooms = rooms_pb2_grpc.RoomServiceStub(self.channel)
        self.calls = calls_pb2_grpc.CallServiceStub(self.channel)

    async def admin(self) -> Session:
        return await self.api.login(SUPER_ADMIN_TELEGRAM_ID, name="Boss")

    async def create(
        self,
        kind: rooms_pb2.RoomKind.ValueType = TEXT_AND_VOICE,
        max_members: int = 0,
        name: str = "room",
    ) -> rooms_pb2.Room:
        boss = await self.admin()
        response = await self.rooms.CreateRoom(
            rooms_pb2.CreateRoomRequest(name=name, kind=kind, max_members=max_members),
            metadata=boss.metadata,
        )
        return response.room

    async def member(self, room_id: str, name: str = "member") -> Session:
        session = await self.api.login(name=name)
        await self.rooms.JoinRoom(
            rooms_pb2.JoinRoomRequest(room_id=room_id), metadata=session.metadata
        )
        return session

    async def send(
        self, who: Session, room_id: str, text: str, key: str | None = None
    ) -> rooms_pb2.SendMessageResponse:
        response: rooms_pb2.SendMessageResponse = await self.rooms.SendMessage(
            rooms_pb2.SendMessageRequest(
                room_id=room_id, idempotency_key=key or uuid.uuid4().hex, text=text
            ),
            metadata=who.metadata,
        )
        return response

    def subscribe(self, who: Session | Metadata, room_id: str, after: int | None = None) -> Stream:
        md = who.metadata if isinstance(who, Session) else who
        request = rooms_pb2.SubscribeRoomRequest(room_id=room_id)
        if after is not None:
            request.after_sequence = after
        return Stream(self.rooms.SubscribeRoom(request, metadata=md))


@dataclass
class Stream:
    """Reads one SubscribeRoom call in the background; tests pick events from ``events``."""

    call: grpc.aio.UnaryStreamCall[rooms_pb2.SubscribeRoomRequest, rooms_pb2.SubscribeRoomResponse]
    events: asyncio.Queue[rooms_pb2.RoomEvent] = field(default_factory=asyncio.Queue)
    error: grpc.aio.AioRpcError | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                assert response.events, "a SubscribeRoomResponse carries at least one event"
                for event in response.events:
                    self.events.put_nowait(event)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    async def next(self, *kinds: str, timeout: float = 5.0) -> rooms_pb2.RoomEvent:
        """The next event of one of ``kinds`` (any kind but heartbeat when none given)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                kind = event.WhichOneof("kind")
                if (kinds and kind in kinds) or (not kinds and kind != "heartbeat"):
                    return event

    async def synced(self, timeout: float = 5.0) -> rooms_pb2.RoomEvent:
        return await self.next("synced", timeout=timeout)

    async def messages(self, count: int, timeout: float = 10.0) -> list[rooms_pb2.Message]:
        out = []
        for _ in range(count):
            out.append((await self.next("message_new", timeout=timeout)).message_new.message)
        return out

    def pending(self) -> list[rooms_pb2.RoomEvent]:
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    async def close(self) -> None:
        self.call.cancel()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
