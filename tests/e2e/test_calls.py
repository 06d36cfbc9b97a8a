"""Audio calls between two real WebRTC peers (aiortc), signaled only through the rooms API.

Two members of a voice room join the call (CallService.JoinCall), each holds a
RoomService.SubscribeRoom stream, and their peers exchange offer, answer and every ICE
candidate with CallService.SendCallSignal, receiving the other side's signals as ``call_signal``
events on their stream. Candidates are stripped from the SDP and trickled as ICE_CANDIDATE
signals (tests/support/webrtc.py), so no call connects unless the server relays them.

- on loopback, directly (host candidates), against the session's server;
- forced through a real coturn (Debian package) with the TURN credentials GetIceServers hands
  out: a server of our own whose SWITCHBOARD_TURN_SECRET / SWITCHBOARD_TURN_URLS point at
  that coturn, relay candidates only;
- an ICE restart: a re-offer (ice_restart) in the same call brings the media back;
- a three-way mesh: the third joiner offers to both members already in the call.

Each member sends its own tone, and each receiver checks it hears the right one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from aiortc import RTCIceServer
from switchboard.rooms.v1 import calls_pb2 as calls
from switchboard.rooms.v1 import calls_pb2_grpc as calls_grpc
from switchboard.rooms.v1 import rooms_pb2 as rooms
from switchboard.rooms.v1 import rooms_pb2_grpc as rooms_grpc

from server.devstack.processes import ServerProcess
from tests.support.api import Api, Session
from tests.support.coturn import Coturn
from tests.support.stack import (
    SUPER_ADMIN_TELEGRAM_ID,
    Infra,
    Secrets,
    migrate,
    server_env,
    start_server,
)
from tests.support.webrtc import AudioPeer, Signal, SignalKind

if TYPE_CHECKING:
    from switchboard.rooms.v1.calls_pb2_grpc import CallServiceAsyncStub
    from switchboard.rooms.v1.rooms_pb2_grpc import RoomServiceAsyncStub

pytestmark = pytest.mark.e2e

CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
# Each member sends its own tone, so a receiver can tell whose audio it hears.
TONES = {"alice": 400, "bob": 600, "carol": 1000}

_KIND_TO_PB: dict[SignalKind, rooms.CallSignalKind.ValueType] = {
    "offer": rooms.CALL_SIGNAL_KIND_OFFER,
    "answer": rooms.CALL_SIGNAL_KIND_ANSWER,
    "ice": rooms.CALL_SIGNAL_KIND_ICE_CANDIDATE,
}
_PB_TO_KIND: dict[int, SignalKind] = {v: k for k, v in _KIND_TO_PB.items()}


# --- a member's view of the room: one SubscribeRoom stream -------------------------------------
@dataclass
class RoomStream:
    """Everything one member's subscription delivers, with the call signals in a queue."""

    events: list[rooms.RoomEvent] = field(default_factory=list)
    # Call signals by sender: one queue per peer (a member of a mesh call has several).
    signals: defaultdict[str, asyncio.Queue[rooms.CallSignal]] = field(
        default_factory=lambda: defaultdict(asyncio.Queue)
    )
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None

    def call_signals(self) -> list[rooms.CallSignal]:
        return [e.call_signal for e in self.events if e.WhichOneof("kind") == "call_signal"]

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("kind")) for e in self.events]


async def _follow(
    stub: RoomServiceAsyncStub, room_id: str, session: Session, stream: RoomStream
) -> None:
    call = stub.SubscribeRoom(
        rooms.SubscribeRoomRequest(room_id=room_id), metadata=session.metadata
    )
    try:
        async for response in call:
            for event in response.events:
                stream.events.append(event)
                kind = event.WhichOneof("kind")
                if kind == "synced":
                    stream.synced.set()
                elif kind == "call_signal":
                    stream.signals[event.call_signal.from_user_id].put_nowait(event.call_signal)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            stream.error = exc
            stream.synced.set()


class CallSignaling:
    """tests.support.webrtc.Signaling over SendCallSignal (out) and SubscribeRoom (in)."""

    def __init__(
        self,
        stub: CallServiceAsyncStub,
        room_id: str,
        call_id: str,
        me: Session,
        peer_user_id: str,
        stream: RoomStream,
    ) -> None:
        self.stub = stub
        self.room_id = room_id
        self.call_id = call_id
        self.me = me
        self.peer_user_id = peer_user_id
        self.stream = stream
        self.sent: list[Signal] = []

    async def send(self, signal: Signal) -> None:
        request = calls.SendCallSignalRequest(
            room_id=self.room_id,
            call_id=self.call_id,
            to_user_id=self.peer_user_id,
            kind=_KIND_TO_PB[signal.kind],
            sdp=signal.sdp,
            ice_restart=signal.ice_restart,
        )
        if signal.kind == "ice":
            request.candidate.CopyFrom(
                rooms.IceCandidate(
                    candidate=signal.candidate,
                    sdp_mid=signal.sdp_mid or "",
                    sdp_mline_index=signal.sdp_mline_index or 0,
                )
            )
        response = await self.stub.SendCallSignal(request, metadata=self.me.metadata, timeout=10)
        assert response.sequence > 0
        self.sent.append(signal)

    async def receive(self) -> Signal:
        while True:
            got = await self.stream.signals[self.peer_user_id].get()
            if got.call_id != self.call_id:
                continue
            assert got.to_user_id == self.me.user.id
            kind = _PB_TO_KIND[got.kind]
            return Signal(
                kind,
                sdp=got.sdp,
                candidate=got.candidate.candidate,
                sdp_mid=got.candidate.sdp_mid or None,
                sdp_mline_index=got.candidate.sdp_mline_index,
                ice_restart=got.ice_restart,
            )


# --- a call between two members ---------------------------------------------------------------
@dataclass
class Member:
    name: str
    session: Session
    stream: RoomStream
    task: asyncio.Task[None]


class CallScene:
    """A voice room, its members' streams, and helpers to join the call with a peer each."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.rooms: RoomServiceAsyncStub = rooms_grpc.RoomServiceStub(api.channel)
        self.calls: CallServiceAsyncStub = calls_grpc.CallServiceStub(api.channel)
        self.room_id = ""
        self.members: dict[str, Member] = {}
        self.peers: list[AudioPeer] = []

    async def setup(self, names: tuple[str, ...]) -> None:
        admin = await self.api.login(SUPER_ADMIN_TELEGRAM_ID, name="Admin")
        room = await self.rooms.CreateRoom(
            rooms.CreateRoomRequest(
                name=f"call-{uuid.uuid4().hex[:8]}",
                kind=rooms.ROOM_KIND_TEXT_AND_VOICE,
                request_id=str(uuid.uuid4()),
            ),
            metadata=admin.metadata,
            timeout=10,
        )
        self.room_id = room.room.id
        for name in names:
            session = await self.api.login(name=name.capitalize())
            await self.rooms.JoinRoom(
                rooms.JoinRoomRequest(room_id=self.room_id), metadata=session.metadata, timeout=10
            )
            stream = RoomStream()
            task = asyncio.create_task(_follow(self.rooms, self.room_id, session, stream))
            self.members[name] = Member(name, session, stream, task)
        for member in self.members.values():
            await asyncio.wait_for(member.stream.synced.wait(), 10)
            assert member.stream.error is None, member.stream.error

    async def join_call(self, name: str) -> calls.JoinCallResponse:
        member = self.members[name]
        return await self.calls.JoinCall(
            calls.JoinCallRequest(room_id=self.room_id),
            metadata=member.session.metadata,
            timeout=10,
        )

    def peer(
        self,
        name: str,
        other: str,
        call_id: str,
        *,
        ice_servers: list[RTCIceServer] | None = None,
        relay_only: bool = False,
    ) -> tuple[AudioPeer, CallSignaling]:
        member = self.members[name]
        signaling = CallSignaling(
            self.calls,
            self.room_id,
            call_id,
            member.session,
            self.members[other].session.user.id,
            member.stream,
        )
        peer = AudioPeer(
            name,
            signaling,
            ice_servers=ice_servers or [],
            relay_only=relay_only,
            frequency=TONES.get(name, 500),
        )
        self.peers.append(peer)
        peer.start()
        return peer, signaling

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()
        for member in self.members.values():
            member.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member.task


@contextlib.asynccontextmanager
async def scene(api: Api, *names: str) -> AsyncIterator[CallScene]:
    running = CallScene(api)
    try:
        await running.setup(names)
        yield running
    finally:
        await running.close()


async def start_call(
    s: CallScene,
    *,
    ice_servers: dict[str, list[RTCIceServer]] | None = None,
    relay_only: bool = False,
) -> tuple[str, AudioPeer, AudioPeer, CallSignaling, CallSignaling]:
    """alice joins first, bob joins and offers (the joiner offers to those already in)."""
    first = await s.join_call("alice")
    assert list(first.peer_user_ids) == []
    second = await s.join_call("bob")
    call_id = second.call.id
    assert call_id == first.call.id
    assert list(second.peer_user_ids) == [s.members["alice"].session.user.id]
    servers = ice_servers or {}
    alice, alice_sig = s.peer(
        "alice", "bob", call_id, ice_servers=servers.get("alice"), relay_only=relay_only
    )
    bob, bob_sig = s.peer(
        "bob", "alice", call_id, ice_servers=servers.get("bob"), relay_only=relay_only
    )
    await bob.call()
    return call_id, alice, bob, alice_sig, bob_sig


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def assert_hears_each_other(alice: AudioPeer, bob: AudioPeer) -> None:
    assert alice.received.frequency() == pytest.approx(TONES["bob"], rel=0.05)
    assert bob.received.frequency() == pytest.approx(TONES["alice"], rel=0.05)


def _ice_servers(response: calls.GetIceServersResponse) -> list[RTCIceServer]:
    return [
        RTCIceServer(list(s.urls), username=s.username or None, credential=s.credential or None)
        for s in response.ice_servers
    ]


# --- direct on loopback, against the session's server -------------------------------------------
async def test_audio_call_through_the_signaling_api_on_loopback(api: Api) -> None:
    async with scene(api, "alice", "bob", "carol") as s:
        started = time.monotonic()
        call_id, alice, bob, alice_sig, bob_sig = await start_call(s)
        await alice.wait_for_audio(10)
        await bob.wait_for_audio(10)
        setup_ms = int((time.monotonic() - started) * 1000)
        assert_hears_each_other(alice, bob)
        assert alice.selected_pair().local_type == "host"

        # Offer, answer and every candidate went through the server, addressed to one peer,
        # each signal sent reaching the addressee's stream once, in order.
        alice_stream, bob_stream = s.members["alice"].stream, s.members["bob"].stream

        def ended(stream: RoomStream) -> bool:
            return any(
                x.kind == rooms.CALL_SIGNAL_KIND_ICE_CANDIDATE and not x.candidate.candidate
                for x in stream.call_signals()
            )

        await eventually(lambda: ended(alice_stream) and ended(bob_stream))
        to_alice, to_bob = alice_stream.call_signals(), bob_stream.call_signals()
        kinds = [_PB_TO_KIND[x.kind] for x in to_alice]
        assert kinds == [x.kind for x in bob_sig.sent]
        assert [_PB_TO_KIND[x.kind] for x in to_bob] == [x.kind for x in alice_sig.sent]
        assert kinds[0] == "offer"
        assert kinds.count("ice") >= 2  # at least one candidate and the end-of-candidates
        assert "a=candidate:" not in to_alice[0].sdp
        assert [x.candidate.candidate for x in to_alice[1:]] == [
            x.candidate for x in bob_sig.sent[1:]
        ]
        assert {x.from_user_id for x in to_alice} == {s.members["bob"].session.user.id}
        assert _PB_TO_KIND[to_bob[0].kind] == "answer"
        sequences = [e.sequence for e in alice_stream.events if e.sequence]
        assert sequences == sorted(set(sequences))
        # carol is in the room, not in the call: she saw the joins and no signal.
        carol = s.members["carol"].stream
        await eventually(lambda: carol.kinds().count("call_joined") == 2)
        assert carol.call_signals() == []

        # Alice saw bob join the call on her stream.
        joined = [
            e.call_joined
            for e in s.members["alice"].stream.events
            if e.WhichOneof("kind") == "call_joined"
        ]
        assert s.members["bob"].session.user.id in {j.user_id for j in joined}

        for name in ("alice", "bob"):
            await s.calls.ReportCallOutcome(
                calls.ReportCallOutcomeRequest(
                    room_id=s.room_id,
                    call_id=call_id,
                    outcome=calls.CALL_OUTCOME_CONNECTED,
                    setup_ms=setup_ms,
                    relayed=False,
                ),
                metadata=s.members[name].session.metadata,
                timeout=10,
            )
        for name in ("alice", "bob"):
            await s.calls.LeaveCall(
                calls.LeaveCallRequest(room_id=s.room_id, call_id=call_id),
                metadata=s.members[name].session.metadata,
                timeout=10,
            )
        assert not alice.errors
        assert not bob.errors


async def test_ice_restart_in_the_same_call(api: Api) -> None:
    async with scene(api, "alice", "bob") as s:
        call_id, alice, bob, _, _ = await start_call(s)
        await alice.wait_for_audio(5, generation=0)
        await bob.wait_for_audio(5, generation=0)
        before = bob.selected_pair()

        await bob.restart()  # new ICE credentials, re-offered with ice_restart in the same call
        await alice.wait_for_audio(10, generation=1)
        await bob.wait_for_audio(10, generation=1)
        assert_hears_each_other(alice, bob)
        assert alice.generation == 1
        assert bob.selected_pair().local_address != before.local_address

        offers = [
            x
            for x in s.members["alice"].stream.call_signals()
            if x.kind == rooms.CALL_SIGNAL_KIND_OFFER
        ]
        assert [o.ice_restart for o in offers] == [False, True]
        assert {o.call_id for o in offers} == {call_id}
        active = await s.calls.GetActiveCall(
            calls.GetActiveCallRequest(room_id=s.room_id),
            metadata=s.members["alice"].session.metadata,
            timeout=10,
        )
        assert active.call.id == call_id
        assert len(active.call.participants) == 2


async def test_three_way_mesh_call(api: Api) -> None:
    """The third joiner offers to both members already in: three peer connections, each
    carrying the right member's audio both ways."""
    async with scene(api, "alice", "bob", "carol") as s:
        call_id, alice_bob, bob_alice, _, _ = await start_call(s)
        joined = await s.join_call("carol")
        assert joined.call.id == call_id
        ids = {name: m.session.user.id for name, m in s.members.items()}
        assert set(joined.peer_user_ids) == {ids["alice"], ids["bob"]}
        carol_alice, _ = s.peer("carol", "alice", call_id)
        carol_bob, _ = s.peer("carol", "bob", call_id)
        alice_carol, _ = s.peer("alice", "carol", call_id)
        bob_carol, _ = s.peer("bob", "carol", call_id)
        await carol_alice.call()
        await carol_bob.call()
        pairs = [
            (alice_bob, "bob"),
            (bob_alice, "alice"),
            (carol_alice, "alice"),
            (alice_carol, "carol"),
            (carol_bob, "bob"),
            (bob_carol, "carol"),
        ]
        for peer, _ in pairs:
            await peer.wait_for_audio(10)
        for peer, heard in pairs:
            assert peer.received.frequency() == pytest.approx(TONES[heard], rel=0.05), peer.name
            assert not peer.errors


# --- through a real coturn, with the credentials GetIceServers hands out --------------------------
@dataclass
class TurnPlatform:
    coturn: Coturn
    server: ServerProcess


@pytest.fixture(scope="module")
def turn_platform(stack_infra: Infra, secrets: Secrets, workdir: Path) -> Iterator[TurnPlatform]:
    with Coturn(workdir / "coturn-calls") as coturn:
        secrets.issued.append(coturn.secret)
        dsn = stack_infra.fresh_database("switchboard_calls")
        migrate(dsn, workdir / "migrate-calls.log")
        env = server_env(dsn, stack_infra.redis.url, secrets)
        env |= {
            "SWITCHBOARD_TURN_SECRET": coturn.secret,
            "SWITCHBOARD_TURN_URLS": f"{coturn.url},{coturn.tcp_url}",
            "SWITCHBOARD_STUN_URLS": coturn.stun_url,
        }
        server = start_server(env, workdir / "server-calls.log")
        try:
            yield TurnPlatform(coturn, server)
        finally:
            server.terminate()


@pytest.fixture
async def turn_api(turn_platform: TurnPlatform, secrets: Secrets) -> AsyncIterator[Api]:
    async with grpc.aio.insecure_channel(
        turn_platform.server.grpc_addr, options=CHANNEL_OPTIONS
    ) as channel:
        yield Api(channel, secrets)


async def test_audio_call_forced_through_coturn(turn_api: Api, turn_platform: TurnPlatform) -> None:
    coturn = turn_platform.coturn
    async with scene(turn_api, "alice", "bob") as s:
        servers: dict[str, list[RTCIceServer]] = {}
        for name in ("alice", "bob"):
            member = s.members[name]
            got = await s.calls.GetIceServers(
                calls.GetIceServersRequest(), metadata=member.session.metadata, timeout=10
            )
            turn = [x for x in got.ice_servers if any(u.startswith("turn:") for u in x.urls)]
            assert len(turn) == 1
            assert coturn.url in turn[0].urls
            expiry, _, user = turn[0].username.partition(":")
            assert user == member.session.user.id
            assert int(expiry) > time.time()
            servers[name] = _ice_servers(got)

        call_id, alice, bob, _, _ = await start_call(s, ice_servers=servers, relay_only=True)
        await alice.wait_for_audio(10)
        await bob.wait_for_audio(10)
        assert_hears_each_other(alice, bob)
        for peer in (alice, bob):
            assert peer.local_candidate_types() == {"relay"}
            pair = peer.selected_pair()
            assert (pair.local_type, pair.remote_type) == ("relay", "relay")
            assert coturn.min_port <= pair.local_address[1] <= coturn.max_port
            assert coturn.min_port <= pair.remote_address[1] <= coturn.max_port
        # Only relay candidates crossed the signaling path.
        for name in ("alice", "bob"):
            candidates = [
                x.candidate.candidate
                for x in s.members[name].stream.call_signals()
                if x.kind == rooms.CALL_SIGNAL_KIND_ICE_CANDIDATE and x.candidate.candidate
            ]
            assert candidates
            assert all(" typ relay" in c for c in candidates)
        await s.calls.ReportCallOutcome(
            calls.ReportCallOutcomeRequest(
                room_id=s.room_id,
                call_id=call_id,
                outcome=calls.CALL_OUTCOME_CONNECTED,
                setup_ms=500,
                relayed=True,
            ),
            metadata=s.members["bob"].session.metadata,
            timeout=10,
        )


async def test_forged_turn_credentials_get_no_relay(
    turn_api: Api, turn_platform: TurnPlatform
) -> None:
    """Credentials for another user id, re-signed without the secret, are refused by coturn."""
    session = await turn_api.login(name="Mallory")
    got = await calls_grpc.CallServiceStub(turn_api.channel).GetIceServers(
        calls.GetIceServersRequest(), metadata=session.metadata, timeout=10
    )
    turn = next(x for x in got.ice_servers if any(u.startswith("turn:") for u in x.urls))
    expiry = turn.username.partition(":")[0]
    forged = RTCIceServer(
        turn_platform.coturn.url, username=f"{expiry}:{uuid.uuid4()}", credential=turn.credential
    )
    peer = AudioPeer("mallory", _NoSignaling(), ice_servers=[forged], relay_only=True)
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        assert peer.local_candidate_types() == set()
    finally:
        await peer.close()


class _NoSignaling:
    async def send(self, signal: Signal) -> None:
        raise AssertionError("not used")

    async def receive(self) -> Signal:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")
