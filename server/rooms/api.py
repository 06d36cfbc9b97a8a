"""gRPC servicers for rooms and calls: proto <-> domain, nothing else."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from uuid import UUID

from switchboard.rooms.v1 import calls_pb2 as calls_pb
from switchboard.rooms.v1 import calls_pb2_grpc as calls_grpc
from switchboard.rooms.v1 import rooms_pb2 as pb
from switchboard.rooms.v1 import rooms_pb2_grpc as pb_grpc

from server.kernel.context import ServicerContext, current_call
from server.kernel.wire import to_timestamp
from server.rooms.model import (
    Call,
    CallJoined,
    CallLeaveReason,
    CallLeft,
    CallOutcome,
    CallSignal,
    Heartbeat,
    IceCandidate,
    Member,
    MemberJoined,
    MemberLeft,
    Message,
    MessageNew,
    MessageOrder,
    PresenceUpdate,
    Room,
    RoomEvent,
    RoomKind,
    SignalKind,
    Synced,
)
from server.rooms.service import RoomsService

_KINDS = {
    RoomKind.TEXT: pb.ROOM_KIND_TEXT,
    RoomKind.VOICE: pb.ROOM_KIND_VOICE,
    RoomKind.TEXT_AND_VOICE: pb.ROOM_KIND_TEXT_AND_VOICE,
}
_KINDS_IN = {v: k for k, v in _KINDS.items()}
_SIGNALS = {
    SignalKind.OFFER: pb.CALL_SIGNAL_KIND_OFFER,
    SignalKind.ANSWER: pb.CALL_SIGNAL_KIND_ANSWER,
    SignalKind.ICE_CANDIDATE: pb.CALL_SIGNAL_KIND_ICE_CANDIDATE,
}
_SIGNALS_IN = {v: k for k, v in _SIGNALS.items()}
_LEAVE_REASONS = {
    CallLeaveReason.LEFT: pb.CALL_LEAVE_REASON_LEFT,
    CallLeaveReason.TIMEOUT: pb.CALL_LEAVE_REASON_TIMEOUT,
}
_OUTCOMES = {
    calls_pb.CALL_OUTCOME_CONNECTED: CallOutcome.CONNECTED,
    calls_pb.CALL_OUTCOME_ICE_FAILED: CallOutcome.ICE_FAILED,
    calls_pb.CALL_OUTCOME_FAILED: CallOutcome.FAILED,
    calls_pb.CALL_OUTCOME_ABANDONED: CallOutcome.ABANDONED,
}
_ORDERS = {
    pb.MESSAGE_ORDER_UNSPECIFIED: MessageOrder.NEWEST_FIRST,
    pb.MESSAGE_ORDER_NEWEST_FIRST: MessageOrder.NEWEST_FIRST,
    pb.MESSAGE_ORDER_OLDEST_FIRST: MessageOrder.OLDEST_FIRST,
}


def room_to_proto(room: Room) -> pb.Room:
    return pb.Room(
        id=str(room.id),
        name=room.name,
        description=room.description,
        kind=_KINDS[room.kind],
        max_members=room.max_members,
        member_count=room.member_count,
        creator_user_id=str(room.creator_id),
        create_time=to_timestamp(room.create_time),
        last_sequence=room.last_seq,
    )


def member_to_proto(member: Member) -> pb.Member:
    return pb.Member(
        user_id=str(member.user_id),
        display_name=member.display_name,
        join_time=to_timestamp(member.join_time),
        online=member.online,
    )


def message_to_proto(message: Message) -> pb.Message:
    return pb.Message(
        id=str(message.id),
        room_id=str(message.room_id),
        sequence=message.seq,
        sender_user_id=str(message.sender_id),
        sender_display_name=message.sender_name,
        text=message.text,
        idempotency_key=message.idempotency_key,
        create_time=to_timestamp(message.create_time),
    )


def call_to_proto(call: Call) -> calls_pb.Call:
    return calls_pb.Call(
        id=str(call.id),
        room_id=str(call.room_id),
        start_time=to_timestamp(call.start_time),
        max_participants=call.max_participants,
        participants=[
            calls_pb.CallParticipant(
                user_id=str(p.user_id),
                display_name=p.display_name,
                join_time=to_timestamp(p.join_time),
            )
            for p in call.participants
        ],
    )


def event_to_proto(event: RoomEvent) -> pb.RoomEvent:
    out = pb.RoomEvent(
        sequence=event.seq, room_id=str(event.room_id), time=to_timestamp(event.time)
    )
    body = event.body
    if isinstance(body, MessageNew):
        out.message_new.message.CopyFrom(message_to_proto(body.message))
    elif isinstance(body, MemberJoined):
        out.member_joined.member.CopyFrom(member_to_proto(body.member))
    elif isinstance(body, MemberLeft):
        out.member_left.user_id = str(body.user_id)
    elif isinstance(body, PresenceUpdate):
        out.presence_update.user_id = str(body.user_id)
        out.presence_update.online = body.online
    elif isinstance(body, CallJoined):
        out.call_joined.call_id = str(body.call_id)
        out.call_joined.user_id = str(body.user_id)
    elif isinstance(body, CallLeft):
        out.call_left.call_id = str(body.call_id)
        out.call_left.user_id = str(body.user_id)
        out.call_left.reason = _LEAVE_REASONS[body.reason]
        out.call_left.call_ended = body.call_ended
    elif isinstance(body, CallSignal):
        signal = out.call_signal
        signal.call_id = str(body.call_id)
        signal.from_user_id = str(body.from_user_id)
        signal.to_user_id = str(body.to_user_id)
        signal.kind = _SIGNALS[body.signal]
        signal.sdp = body.sdp
        signal.ice_restart = body.ice_restart
        if body.candidate is not None:
            signal.candidate.candidate = body.candidate.candidate
            signal.candidate.sdp_mid = body.candidate.sdp_mid
            signal.candidate.sdp_mline_index = body.candidate.sdp_mline_index
    elif isinstance(body, Heartbeat):
        out.heartbeat.last_sequence = body.last_seq
    elif isinstance(body, Synced):
        out.synced.last_sequence = body.last_seq
        out.synced.online_user_ids.extend(str(u) for u in body.online_user_ids)
    return out


# Every local subscriber of a room receives the same event object (the live hub hands one
# object to all of them, and keeps the last ones for resumes): encode it once per replica.
# The cache holds each event as an element of SubscribeRoomResponse.events, that is
# tag 0x0A (field 1, length-delimited) + varint length + the RoomEvent's bytes, so a
# response is the concatenation of its events' elements and is never re-serialized per
# subscriber (the kernel passes ``bytes`` from a streaming handler through as they are).
_ENCODED: weakref.WeakKeyDictionary[RoomEvent, bytes] = weakref.WeakKeyDictionary()
_EVENTS_TAG = b"\x0a"  # field 1 (events), wire type 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _element(event: RoomEvent) -> bytes:
    encoded = event_to_proto(event).SerializeToString()
    return _EVENTS_TAG + _varint(len(encoded)) + encoded


def _shared_element(event: RoomEvent) -> bytes:
    if isinstance(event.body, Synced | Heartbeat):
        return _element(event)  # made for one subscriber
    cached = _ENCODED.get(event)
    if cached is None:
        cached = _ENCODED[event] = _element(event)
    return cached


def encode_response(events: list[RoomEvent]) -> bytes:
    """The serialized SubscribeRoomResponse carrying ``events``."""
    if len(events) == 1:
        return _shared_element(events[0])
    return b"".join([_shared_element(e) for e in events])


def _uuid(value: str) -> UUID:
    return UUID(value)  # the contract's format rule has validated it


class RoomApi(pb_grpc.RoomServiceServicer):
    def __init__(self, service: RoomsService) -> None:
        self._service = service

    async def CreateRoom(
        self, request: pb.CreateRoomRequest, context: ServicerContext
    ) -> pb.CreateRoomResponse:
        room = await self._service.create_room(
            current_call().principal,
            name=request.name,
            description=request.description,
            kind=_KINDS_IN[request.kind],
            max_members=request.max_members,
            request_id=_uuid(request.request_id) if request.request_id else None,
        )
        return pb.CreateRoomResponse(room=room_to_proto(room))

    async def GetRoom(
        self, request: pb.GetRoomRequest, context: ServicerContext
    ) -> pb.GetRoomResponse:
        room, joined = await self._service.get_room(
            current_call().principal, _uuid(request.room_id)
        )
        return pb.GetRoomResponse(room=room_to_proto(room), joined=joined)

    async def ListRooms(
        self, request: pb.ListRoomsRequest, context: ServicerContext
    ) -> pb.ListRoomsResponse:
        rooms, token = await self._service.list_rooms(
            current_call().principal,
            request.page_size,
            request.page_token,
            joined_only=request.joined_only,
        )
        return pb.ListRoomsResponse(rooms=[room_to_proto(r) for r in rooms], next_page_token=token)

    async def JoinRoom(
        self, request: pb.JoinRoomRequest, context: ServicerContext
    ) -> pb.JoinRoomResponse:
        room, member = await self._service.join_room(
            current_call().principal, _uuid(request.room_id)
        )
        return pb.JoinRoomResponse(room=room_to_proto(room), member=member_to_proto(member))

    async def LeaveRoom(
        self, request: pb.LeaveRoomRequest, context: ServicerContext
    ) -> pb.LeaveRoomResponse:
        await self._service.leave_room(current_call().principal, _uuid(request.room_id))
        return pb.LeaveRoomResponse()

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: ServicerContext
    ) -> pb.ListMembersResponse:
        members, token = await self._service.list_members(
            current_call().principal, _uuid(request.room_id), request.page_size, request.page_token
        )
        return pb.ListMembersResponse(
            members=[member_to_proto(m) for m in members], next_page_token=token
        )

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: ServicerContext
    ) -> pb.SendMessageResponse:
        ack = await self._service.send_message(
            current_call().principal, _uuid(request.room_id), request.idempotency_key, request.text
        )
        return pb.SendMessageResponse(
            message_id=str(ack.message_id),
            sequence=ack.seq,
            create_time=to_timestamp(ack.create_time),
        )

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: ServicerContext
    ) -> pb.ListMessagesResponse:
        messages, token = await self._service.list_messages(
            current_call().principal,
            _uuid(request.room_id),
            page_size=request.page_size,
            page_token=request.page_token,
            before=request.before_sequence,
            after=request.after_sequence,
            order=_ORDERS[request.order],
        )
        return pb.ListMessagesResponse(
            messages=[message_to_proto(m) for m in messages], next_page_token=token
        )

    async def SubscribeRoom(  # type: ignore[override]  # bytes: see encode_response
        self, request: pb.SubscribeRoomRequest, context: ServicerContext
    ) -> AsyncIterator[bytes]:
        # Yields serialized SubscribeRoomResponse messages (see encode_response), written
        # as they are by the kernel (server.kernel.pipeline.bytes_passthrough).
        after = request.after_sequence if request.HasField("after_sequence") else None
        batches = self._service.subscribe(current_call().principal, _uuid(request.room_id), after)
        async for batch in batches:
            yield encode_response(batch)


class CallApi(calls_grpc.CallServiceServicer):
    def __init__(self, service: RoomsService) -> None:
        self._service = service

    async def JoinCall(
        self, request: calls_pb.JoinCallRequest, context: ServicerContext
    ) -> calls_pb.JoinCallResponse:
        call, peers, seq = await self._service.join_call(
            current_call().principal, _uuid(request.room_id)
        )
        return calls_pb.JoinCallResponse(
            call=call_to_proto(call), peer_user_ids=[str(p) for p in peers], sequence=seq
        )

    async def LeaveCall(
        self, request: calls_pb.LeaveCallRequest, context: ServicerContext
    ) -> calls_pb.LeaveCallResponse:
        await self._service.leave_call(
            current_call().principal, _uuid(request.room_id), _uuid(request.call_id)
        )
        return calls_pb.LeaveCallResponse()

    async def GetActiveCall(
        self, request: calls_pb.GetActiveCallRequest, context: ServicerContext
    ) -> calls_pb.GetActiveCallResponse:
        call = await self._service.active_call(current_call().principal, _uuid(request.room_id))
        if call is None:
            return calls_pb.GetActiveCallResponse()
        return calls_pb.GetActiveCallResponse(call=call_to_proto(call))

    async def SendCallSignal(
        self, request: calls_pb.SendCallSignalRequest, context: ServicerContext
    ) -> calls_pb.SendCallSignalResponse:
        candidate = (
            IceCandidate(
                request.candidate.candidate,
                request.candidate.sdp_mid,
                request.candidate.sdp_mline_index,
            )
            if request.HasField("candidate")
            else None
        )
        seq = await self._service.send_signal(
            current_call().principal,
            _uuid(request.room_id),
            _uuid(request.call_id),
            to_user_id=_uuid(request.to_user_id),
            kind=_SIGNALS_IN[request.kind],
            sdp=request.sdp,
            candidate=candidate,
            ice_restart=request.ice_restart,
            request_id=_uuid(request.request_id) if request.request_id else None,
        )
        return calls_pb.SendCallSignalResponse(sequence=seq)

    async def GetIceServers(
        self, request: calls_pb.GetIceServersRequest, context: ServicerContext
    ) -> calls_pb.GetIceServersResponse:
        servers, expire_time = self._service.ice_servers(current_call().principal)
        response = calls_pb.GetIceServersResponse(
            ice_servers=[
                calls_pb.IceServer(urls=list(s.urls), username=s.username, credential=s.credential)
                for s in servers
            ]
        )
        if expire_time is not None:
            response.expire_time.CopyFrom(to_timestamp(expire_time))
        return response

    async def ReportCallOutcome(
        self, request: calls_pb.ReportCallOutcomeRequest, context: ServicerContext
    ) -> calls_pb.ReportCallOutcomeResponse:
        await self._service.report_outcome(
            current_call().principal,
            _uuid(request.room_id),
            _uuid(request.call_id),
            outcome=_OUTCOMES[request.outcome],
            setup_ms=request.setup_ms,
            relayed=request.relayed,
            ice_restarted=request.ice_restarted,
            request_id=_uuid(request.request_id) if request.request_id else None,
        )
        return calls_pb.ReportCallOutcomeResponse()
