"""Call signaling: join/leave, the peer-to-peer limit, addressed relay, TURN credentials."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import urllib.request
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from switchboard.rooms.v1 import calls_pb2 as cpb
from switchboard.rooms.v1 import rooms_pb2 as pb

from tests.conftest import Platform
from tests.integration.rooms.rooms_support import Rooms
from tests.support.api import Api, Session, error_info


@pytest.fixture
def rooms(api: Api) -> Rooms:
    return Rooms(api)


async def _join(rooms: Rooms, who: Session, room_id: str) -> cpb.JoinCallResponse:
    response: cpb.JoinCallResponse = await rooms.calls.JoinCall(
        cpb.JoinCallRequest(room_id=room_id), metadata=who.metadata
    )
    return response


async def test_the_fifth_participant_is_refused(rooms: Rooms) -> None:
    room = await rooms.create()
    people = [await rooms.member(room.id, f"p{i}") for i in range(5)]
    first = await _join(rooms, people[0], room.id)
    assert first.peer_user_ids == []
    for i, who in enumerate(people[1:4], start=1):
        joined = await _join(rooms, who, room.id)
        assert joined.call.id == first.call.id
        assert list(joined.peer_user_ids) == [p.user.id for p in people[:i]]
        assert joined.call.max_participants == 4
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _join(rooms, people[4], room.id)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(caught.value).reason == "CALL_FULL"
    assert error_info(caught.value).metadata["max_participants"] == "4"
    # Joining again is a no-op for a participant; leaving frees the place.
    again = await _join(rooms, people[0], room.id)
    assert again.sequence == 0
    assert len(again.call.participants) == 4
    await rooms.calls.LeaveCall(
        cpb.LeaveCallRequest(room_id=room.id, call_id=first.call.id), metadata=people[0].metadata
    )
    fifth = await _join(rooms, people[4], room.id)
    assert fifth.call.id == first.call.id
    assert len(fifth.call.participants) == 4


async def test_the_limit_holds_under_concurrent_joins(rooms: Rooms) -> None:
    room = await rooms.create()
    people = [await rooms.member(room.id) for _ in range(8)]
    results = await asyncio.gather(
        *(_join(rooms, p, room.id) for p in people), return_exceptions=True
    )
    joined = [r for r in results if isinstance(r, cpb.JoinCallResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert (len(joined), len(refused)) == (4, 4)
    assert len({r.call.id for r in joined}) == 1
    assert {error_info(r).reason for r in refused} == {"CALL_FULL"}


async def test_an_offer_reaches_only_its_addressee(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob, carol = [await rooms.member(room.id, n) for n in ("A", "B", "C")]
    streams = {who.user.id: rooms.subscribe(who, room.id) for who in (alice, bob, carol)}
    for stream in streams.values():
        await stream.synced()
    call = (await _join(rooms, alice, room.id)).call
    await _join(rooms, bob, room.id)
    await _join(rooms, carol, room.id)

    sent = await rooms.calls.SendCallSignal(
        cpb.SendCallSignalRequest(
            room_id=room.id,
            call_id=call.id,
            to_user_id=bob.user.id,
            kind=pb.CALL_SIGNAL_KIND_OFFER,
            sdp="v=0 offer",
        ),
        metadata=alice.metadata,
    )
    got = await streams[bob.user.id].next("call_signal")
    assert got.sequence == sent.sequence
    signal = got.call_signal
    assert (signal.from_user_id, signal.to_user_id, signal.kind, signal.sdp) == (
        alice.user.id,
        bob.user.id,
        pb.CALL_SIGNAL_KIND_OFFER,
        "v=0 offer",
    )
    await rooms.calls.SendCallSignal(
        cpb.SendCallSignalRequest(
            room_id=room.id,
            call_id=call.id,
            to_user_id=alice.user.id,
            kind=pb.CALL_SIGNAL_KIND_ICE_CANDIDATE,
            candidate=pb.IceCandidate(
                candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host", sdp_mid="0"
            ),
        ),
        metadata=bob.metadata,
    )
    ice = (await streams[alice.user.id].next("call_signal")).call_signal
    assert ice.kind == pb.CALL_SIGNAL_KIND_ICE_CANDIDATE
    assert ice.candidate.candidate.startswith("candidate:1")
    # ICE restart: an offer again, flagged, in the same call.
    await rooms.calls.SendCallSignal(
        cpb.SendCallSignalRequest(
            room_id=room.id,
            call_id=call.id,
            to_user_id=bob.user.id,
            kind=pb.CALL_SIGNAL_KIND_OFFER,
            sdp="v=0 restart",
            ice_restart=True,
        ),
        metadata=alice.metadata,
    )
    restart = (await streams[bob.user.id].next("call_signal")).call_signal
    assert (restart.ice_restart, restart.sdp) == (True, "v=0 restart")
    await asyncio.sleep(0.5)
    assert not [
        e for e in streams[carol.user.id].pending() if e.WhichOneof("kind") == "call_signal"
    ]
    # A resume replays the signals addressed to the subscriber only.
    replay = rooms.subscribe(bob, room.id, after=0)
    kinds = []
    while True:
        event = await replay.next()
        if event.WhichOneof("kind") == "synced":
            break
        kinds.append(event.WhichOneof("kind"))
        if event.WhichOneof("kind") == "call_signal":
            assert event.call_signal.to_user_id == bob.user.id
    assert kinds.count("call_signal") == 2
    assert kinds.count("call_joined") == 3
    for stream in [*streams.values(), replay]:
        await stream.close()


async def test_signals_need_both_peers_in_the_call(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id), await rooms.member(room.id)
    call = (await _join(rooms, alice, room.id)).call

    async def reason(who: Session, to: str, **kwargs: Any) -> str:
        request = cpb.SendCallSignalRequest(
            room_id=room.id,
            call_id=call.id,
            to_user_id=to,
            **kwargs,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rooms.calls.SendCallSignal(request, metadata=who.metadata)
        return str(error_info(caught.value).reason)

    offer: dict[str, Any] = {"kind": pb.CALL_SIGNAL_KIND_OFFER, "sdp": "v=0"}
    assert await reason(alice, bob.user.id, **offer) == "PEER_NOT_IN_CALL"
    assert await reason(bob, alice.user.id, **offer) == "NOT_IN_CALL"
    assert await reason(alice, alice.user.id, **offer) == "INVALID_SIGNAL"
    assert await reason(alice, bob.user.id, kind=pb.CALL_SIGNAL_KIND_ANSWER) == "INVALID_SIGNAL"
    await _join(rooms, bob, room.id)
    assert (
        await reason(alice, bob.user.id, kind=pb.CALL_SIGNAL_KIND_ICE_CANDIDATE) == "INVALID_SIGNAL"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.calls.SendCallSignal(
            cpb.SendCallSignalRequest(
                room_id=room.id, call_id=str(uuid.uuid4()), to_user_id=bob.user.id, **offer
            ),
            metadata=alice.metadata,
        )
    assert error_info(caught.value).reason == "CALL_NOT_FOUND"


async def test_calls_need_a_voice_room_and_membership(rooms: Rooms, api: Api) -> None:
    text_room = await rooms.create(kind=pb.ROOM_KIND_TEXT)
    alice = await rooms.member(text_room.id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _join(rooms, alice, text_room.id)
    assert error_info(caught.value).reason == "VOICE_NOT_ENABLED"
    voice = await rooms.create(kind=pb.ROOM_KIND_VOICE)
    stranger = await api.login()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _join(rooms, stranger, voice.id)
    assert error_info(caught.value).reason == "NOT_A_MEMBER"


async def test_leaving_ends_the_call_and_leaving_the_room_leaves_the_call(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id), await rooms.member(room.id)
    watch = rooms.subscribe(alice, room.id)
    await watch.synced()
    call = (await _join(rooms, alice, room.id)).call
    await _join(rooms, bob, room.id)
    await rooms.rooms.LeaveRoom(pb.LeaveRoomRequest(room_id=room.id), metadata=bob.metadata)
    left = await watch.next("call_left")
    assert (left.call_left.user_id, left.call_left.call_ended) == (bob.user.id, False)
    assert left.call_left.reason == pb.CALL_LEAVE_REASON_LEFT
    assert (await watch.next("member_left")).member_left.user_id == bob.user.id
    active = await rooms.calls.GetActiveCall(
        cpb.GetActiveCallRequest(room_id=room.id), metadata=alice.metadata
    )
    assert [p.user_id for p in active.call.participants] == [alice.user.id]
    await rooms.calls.LeaveCall(
        cpb.LeaveCallRequest(room_id=room.id, call_id=call.id), metadata=alice.metadata
    )
    ended = await watch.next("call_left")
    assert ended.call_left.call_ended
    none = await rooms.calls.GetActiveCall(
        cpb.GetActiveCallRequest(room_id=room.id), metadata=alice.metadata
    )
    assert not none.HasField("call")
    fresh = await _join(rooms, alice, room.id)
    assert fresh.call.id != call.id
    await watch.close()


async def test_ice_servers_carry_coturn_rest_credentials(
    rooms: Rooms, api: Api, platform: Platform
) -> None:
    alice = await api.login()
    before = int(time.time())
    response = await rooms.calls.GetIceServers(cpb.GetIceServersRequest(), metadata=alice.metadata)
    stun, turn = response.ice_servers
    assert list(stun.urls) == ["stun:127.0.0.1:3478"]
    assert (stun.username, stun.credential) == ("", "")
    assert all(u.startswith("turn:") for u in turn.urls)
    expiry, user_id = turn.username.split(":", 1)
    assert user_id == alice.user.id
    assert before + 86_400 <= int(expiry) <= int(time.time()) + 86_400
    assert response.expire_time.seconds == int(expiry)
    expected = base64.b64encode(
        hmac.new(
            platform.secrets.turn_secret.encode(), turn.username.encode(), hashlib.sha1
        ).digest()
    ).decode()
    assert turn.credential == expected
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.calls.GetIceServers(cpb.GetIceServersRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _metric(platform: Platform, name: str) -> float:
    with urllib.request.urlopen(f"http://{platform.metrics_addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_reported_outcomes_feed_the_call_metrics(rooms: Rooms, platform: Platform) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    call = (await _join(rooms, alice, room.id)).call
    ice_before = _metric(platform, "rooms_ice_failures_total")
    ok_before = _metric(platform, 'rooms_call_outcomes_total{outcome="connected"')
    for outcome in (cpb.CALL_OUTCOME_ICE_FAILED, cpb.CALL_OUTCOME_CONNECTED):
        await rooms.calls.ReportCallOutcome(
            cpb.ReportCallOutcomeRequest(
                room_id=room.id, call_id=call.id, outcome=outcome, setup_ms=420, relayed=True
            ),
            metadata=alice.metadata,
        )
    assert _metric(platform, "rooms_ice_failures_total") == ice_before + 1
    assert _metric(platform, 'rooms_call_outcomes_total{outcome="connected"') == ok_before + 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.calls.ReportCallOutcome(
            cpb.ReportCallOutcomeRequest(room_id=room.id, call_id=call.id),
            metadata=alice.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_participants_gone_offline_make_room_for_a_newcomer(
    rooms: Rooms, platform: Platform
) -> None:
    room = await rooms.create()
    people = [await rooms.member(room.id, f"p{i}") for i in range(5)]
    watch = rooms.subscribe(people[0], room.id)  # only p0 stays online
    await watch.synced()
    call = (await _join(rooms, people[0], room.id)).call
    for who in people[1:4]:
        await _join(rooms, who, room.id)
    # Recent joiners are safe (they may not have subscribed yet): still full.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _join(rooms, people[4], room.id)
    assert error_info(caught.value).reason == "CALL_FULL"
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        await conn.execute(
            "UPDATE room_call_participants SET join_time = join_time - interval '1 minute'"
            " WHERE call_id = $1",
            uuid.UUID(call.id),
        )
    finally:
        await conn.close()
    joined = await _join(rooms, people[4], room.id)
    assert [p.user_id for p in joined.call.participants] == [people[0].user.id, people[4].user.id]
    timeouts = set()
    for _ in range(3):
        left = (await watch.next("call_left")).call_left
        assert left.reason == pb.CALL_LEAVE_REASON_TIMEOUT
        assert not left.call_ended
        timeouts.add(left.user_id)
    assert timeouts == {p.user.id for p in people[1:4]}
    await watch.close()


async def test_a_retried_signal_is_stored_and_delivered_once(
    rooms: Rooms, platform: Platform
) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id, "A"), await rooms.member(room.id, "B")
    to_bob = rooms.subscribe(bob, room.id)
    await to_bob.synced()
    call = (await _join(rooms, alice, room.id)).call
    await _join(rooms, bob, room.id)

    async def offer(request_id: str, sdp: str = "v=0 offer") -> int:
        sent = await rooms.calls.SendCallSignal(
            cpb.SendCallSignalRequest(
                room_id=room.id,
                call_id=call.id,
                to_user_id=bob.user.id,
                kind=pb.CALL_SIGNAL_KIND_OFFER,
                sdp=sdp,
                request_id=request_id,
            ),
            metadata=alice.metadata,
        )
        return int(sent.sequence)

    first_id = str(uuid.uuid4())
    first = await offer(first_id)
    # Retries (one after the other, and racing each other) answer with the first sequence.
    assert await offer(first_id) == first
    assert await asyncio.gather(*(offer(first_id) for _ in range(3))) == [first] * 3
    got = await to_bob.next("call_signal")
    assert (got.sequence, got.call_signal.sdp) == (first, "v=0 offer")
    # Another request_id is another signal.
    second = await offer(str(uuid.uuid4()), "v=0 second")
    assert second > first
    again = await to_bob.next("call_signal")
    assert (again.sequence, again.call_signal.sdp) == (second, "v=0 second")
    await asyncio.sleep(0.5)
    assert not [e for e in to_bob.pending() if e.WhichOneof("kind") == "call_signal"]
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        stored = await conn.fetch(
            "SELECT seq FROM room_events WHERE room_id = $1 AND kind = 'call.signal' ORDER BY seq",
            uuid.UUID(room.id),
        )
        # The racing retries rolled back: they consumed no sequence either.
        last_seq = await conn.fetchval(
            "SELECT last_seq FROM rooms WHERE id = $1", uuid.UUID(room.id)
        )
    finally:
        await conn.close()
    assert [r["seq"] for r in stored] == [first, second]
    assert last_seq == second
    # A resume replays each signal once too.
    replay = rooms.subscribe(bob, room.id, after=0)
    replayed = []
    while (event := await replay.next()).WhichOneof("kind") != "synced":
        if event.WhichOneof("kind") == "call_signal":
            replayed.append(event.sequence)
    assert replayed == [first, second]
    for stream in (to_bob, replay):
        await stream.close()


async def test_a_retried_outcome_report_counts_once(rooms: Rooms, platform: Platform) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    call = (await _join(rooms, alice, room.id)).call
    ice_before = _metric(platform, "rooms_ice_failures_total")
    failed_before = _metric(platform, 'rooms_call_outcomes_total{outcome="ice_failed"')

    async def report(request_id: str) -> None:
        await rooms.calls.ReportCallOutcome(
            cpb.ReportCallOutcomeRequest(
                room_id=room.id,
                call_id=call.id,
                outcome=cpb.CALL_OUTCOME_ICE_FAILED,
                setup_ms=900,
                request_id=request_id,
            ),
            metadata=alice.metadata,
        )

    first_id = str(uuid.uuid4())
    await report(first_id)
    await report(first_id)
    await asyncio.gather(*(report(first_id) for _ in range(3)))
    assert _metric(platform, "rooms_ice_failures_total") == ice_before + 1
    assert _metric(platform, 'rooms_call_outcomes_total{outcome="ice_failed"') == failed_before + 1
    await report(str(uuid.uuid4()))  # another report
    assert _metric(platform, "rooms_ice_failures_total") == ice_before + 2
    assert _metric(platform, 'rooms_call_outcomes_total{outcome="ice_failed"') == failed_before + 2
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report("not-a-uuid")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
