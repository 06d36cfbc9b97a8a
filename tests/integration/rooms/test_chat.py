"""Chat: idempotent sends, typed refusals, gapless per-room sequences, history paging."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import pytest
from switchboard.rooms.v1 import rooms_pb2 as pb

from tests.conftest import Platform
from tests.integration.rooms.rooms_support import Rooms
from tests.support.api import Api, error_info


@pytest.fixture
def rooms(api: Api) -> Rooms:
    return Rooms(api)


async def _refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code(), error_info(caught.value).reason


async def test_same_key_returns_the_same_ack_and_stores_one_message(
    rooms: Rooms, platform: Platform
) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id, "Alice")
    first = await rooms.send(alice, room.id, "hello", key="k-1")
    again = await asyncio.gather(
        *(rooms.send(alice, room.id, "hello", key="k-1") for _ in range(5))
    )
    assert {(a.message_id, a.sequence) for a in again} == {(first.message_id, first.sequence)}
    assert all(a.create_time == first.create_time for a in again)
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        rows = await conn.fetchval(
            "SELECT count(*) FROM room_messages WHERE room_id = $1", uuid.UUID(room.id)
        )
        last_seq = await conn.fetchval(
            "SELECT last_seq FROM rooms WHERE id = $1", uuid.UUID(room.id)
        )
    finally:
        await conn.close()
    assert rows == 1
    assert last_seq == first.sequence  # retries consumed no sequence


async def test_concurrent_retries_of_one_key_store_one_message(rooms: Rooms) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    acks = await asyncio.gather(
        *(rooms.send(alice, room.id, "race", key="same") for _ in range(10))
    )
    assert len({a.message_id for a in acks}) == 1
    history = await rooms.rooms.ListMessages(
        pb.ListMessagesRequest(room_id=room.id), metadata=alice.metadata
    )
    assert [m.text for m in history.messages] == ["race"]


async def test_a_key_reused_for_another_text_is_refused(rooms: Rooms) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    await rooms.send(alice, room.id, "one", key="dup")
    code, reason = await _refusal(rooms.send(alice, room.id, "two", key="dup"))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")


async def test_the_same_key_from_two_senders_is_two_messages(rooms: Rooms) -> None:
    room = await rooms.create()
    alice, bob = await rooms.member(room.id), await rooms.member(room.id)
    a = await rooms.send(alice, room.id, "x", key="shared")
    b = await rooms.send(bob, room.id, "x", key="shared")
    assert a.message_id != b.message_id


async def test_concurrent_senders_get_strictly_increasing_gapless_sequences(rooms: Rooms) -> None:
    room = await rooms.create()
    senders = [await rooms.member(room.id, f"s{i}") for i in range(8)]
    start = (
        await rooms.rooms.GetRoom(pb.GetRoomRequest(room_id=room.id), metadata=senders[0].metadata)
    ).room.last_sequence

    async def burst(who: object, n: int) -> list[int]:
        out = []
        for i in range(n):
            out.append((await rooms.send(who, room.id, f"m{i}")).sequence)  # type: ignore[arg-type]
        return out

    per_sender = await asyncio.gather(*(burst(s, 10) for s in senders))
    for seqs in per_sender:
        assert seqs == sorted(seqs)  # each sender sees its own sends in order
        assert len(set(seqs)) == len(seqs)
    every = sorted(s for seqs in per_sender for s in seqs)
    assert every == list(range(start + 1, start + 81))  # no gap, no duplicate


async def test_refusals_are_typed(rooms: Rooms, api: Api) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    stranger = await api.login()
    assert await _refusal(rooms.send(alice, room.id, "")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MESSAGE_EMPTY",
    )
    assert await _refusal(rooms.send(alice, room.id, " \n\t ")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MESSAGE_EMPTY",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rooms.send(alice, room.id, "x" * 4001)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "MESSAGE_TOO_LONG"
    assert error_info(caught.value).metadata["max_length"] == "4000"
    await rooms.send(alice, room.id, "x" * 4000)  # exactly the limit is fine
    assert await _refusal(rooms.send(stranger, room.id, "hi")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_A_MEMBER",
    )
    assert await _refusal(rooms.send(alice, str(uuid.uuid4()), "hi")) == (
        grpc.StatusCode.NOT_FOUND,
        "ROOM_NOT_FOUND",
    )
    bad_key = rooms.rooms.SendMessage(
        pb.SendMessageRequest(room_id=room.id, idempotency_key="has space", text="x"),
        metadata=alice.metadata,
    )
    assert (await _refusal(bad_key))[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_voice_only_rooms_refuse_text(rooms: Rooms) -> None:
    room = await rooms.create(kind=pb.ROOM_KIND_VOICE)
    alice = await rooms.member(room.id)
    assert await _refusal(rooms.send(alice, room.id, "hi")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "TEXT_NOT_ENABLED",
    )


async def test_sending_too_fast_is_rate_limited_with_retry_info(rooms: Rooms) -> None:
    # configs/test.yaml: 10 messages/s, burst 120 per user and room.
    room = await rooms.create()
    alice = await rooms.member(room.id)
    results = await asyncio.gather(
        *(rooms.send(alice, room.id, f"flood {i}") for i in range(160)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert refused, "160 sends at once must exceed the burst"
    assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
    assert {error_info(r).reason for r in refused} == {"RATE_LIMITED"}
    # Another user in the same room has their own bucket.
    bob = await rooms.member(room.id)
    await rooms.send(bob, room.id, "still fine")


async def test_history_pages_newest_first_with_cursors(rooms: Rooms) -> None:
    room = await rooms.create()
    alice = await rooms.member(room.id)
    seqs = [(await rooms.send(alice, room.id, f"m{i}")).sequence for i in range(7)]

    async def page(**kwargs: object) -> pb.ListMessagesResponse:
        return await rooms.rooms.ListMessages(
            pb.ListMessagesRequest(room_id=room.id, **kwargs),  # type: ignore[arg-type]
            metadata=alice.metadata,
        )

    first = await page(page_size=3)
    assert [m.sequence for m in first.messages] == seqs[::-1][:3]
    assert [m.text for m in first.messages] == ["m6", "m5", "m4"]
    second = await page(page_size=3, page_token=first.next_page_token)
    third = await page(page_size=3, page_token=second.next_page_token)
    assert [m.sequence for m in second.messages] == seqs[::-1][3:6]
    assert [m.sequence for m in third.messages] == seqs[:1]
    assert third.next_page_token == ""

    oldest = await page(order=pb.MESSAGE_ORDER_OLDEST_FIRST, page_size=4)
    assert [m.sequence for m in oldest.messages] == seqs[:4]
    rest = await page(
        order=pb.MESSAGE_ORDER_OLDEST_FIRST, page_size=4, page_token=oldest.next_page_token
    )
    assert [m.sequence for m in rest.messages] == seqs[4:]

    before = await page(before_sequence=seqs[3])
    assert [m.sequence for m in before.messages] == seqs[:3][::-1]
    after = await page(after_sequence=seqs[4], order=pb.MESSAGE_ORDER_OLDEST_FIRST)
    assert [m.sequence for m in after.messages] == seqs[5:]
    between = await page(after_sequence=seqs[1], before_sequence=seqs[5])
    assert [m.sequence for m in between.messages] == seqs[2:5][::-1]
    m = first.messages[0]
    assert m.sender_user_id == alice.user.id
    assert m.idempotency_key
    assert m.HasField("create_time")

    # A token from one order does not fit the other.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await page(order=pb.MESSAGE_ORDER_OLDEST_FIRST, page_token=first.next_page_token)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_retention_removes_old_messages(rooms: Rooms, platform: Platform) -> None:
    # configs/test.yaml runs the retention job every second; the default keeps 30 days.
    room = await rooms.create()
    alice = await rooms.member(room.id)
    old = await rooms.send(alice, room.id, "ancient")
    new = await rooms.send(alice, room.id, "recent")
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        await conn.execute(
            "UPDATE room_messages SET create_time = now() - interval '31 days' WHERE id = $1",
            uuid.UUID(old.message_id),
        )
        async with asyncio.timeout(5):
            while await conn.fetchval(
                "SELECT count(*) FROM room_messages WHERE id = $1", uuid.UUID(old.message_id)
            ):
                await asyncio.sleep(0.2)
        assert await conn.fetchval(
            "SELECT count(*) FROM room_messages WHERE id = $1", uuid.UUID(new.message_id)
        )
        # Stored events (the joins) follow the same rule.
        room_uuid = uuid.UUID(room.id)
        await conn.execute(
            "UPDATE room_events SET create_time = now() - interval '31 days'"
            " WHERE room_id = $1 AND seq = 1",
            room_uuid,
        )
        async with asyncio.timeout(5):
            while await conn.fetchval(
                "SELECT count(*) FROM room_events WHERE room_id = $1 AND seq = 1", room_uuid
            ):
                await asyncio.sleep(0.2)
        assert await conn.fetchval("SELECT count(*) FROM room_events WHERE room_id = $1", room_uuid)
    finally:
        await conn.close()
