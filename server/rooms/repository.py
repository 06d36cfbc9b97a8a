"""Rooms' storage: explicit SQL over asyncpg (:class:`RoomsRepository`), and the Redis side
(:class:`PresenceRepository`, and the fan-out channel name).

Every stored room event takes the next per-room sequence with
``UPDATE rooms SET last_seq = last_seq + 1 .. RETURNING`` inside the transaction that stores
it: the row lock serialises writers of one room until commit, so sequences are gapless, and
a committed sequence N implies every sequence below N is committed too. That is what the
live fan-out (server/kernel/fanout.py, fed by ``events_after``, ``last_seq`` and
``last_seqs``) relies on.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.rooms.model import (
    Ack,
    Call,
    CallJoined,
    CallLeaveReason,
    CallLeft,
    CallParticipant,
    CallSignal,
    EventBody,
    Member,
    MemberJoined,
    MemberLeft,
    Message,
    MessageNew,
    MessageOrder,
    Room,
    RoomEvent,
    RoomKind,
    body_from_json,
    body_to_json,
    presence_member,
    presence_user,
)

Tx: TypeAlias = asyncpg.Connection

# pg_try_advisory_xact_lock key held by a retention pass: one replica runs each pass.
RETENTION_LOCK_KEY = 0x5B_0001_0E7E

# Redis: the pub/sub channel every replica's room fan-out listens to, and one presence set
# per room.
EVENTS_CHANNEL = "sb:rooms:events"
PRESENCE_KEY = "sb:rooms:presence:{room}"

_ROOM_COLUMNS = (
    "r.id, r.name, r.description, r.kind, r.max_members, r.member_count, r.creator_id, "
    "r.create_time, r.last_seq"
)
_MESSAGE_COLUMNS = (
    "m.id, m.room_id, m.seq, m.sender_id, u.display_name AS sender_name, m.body, "
    "m.idempotency_key, m.create_time"
)


class RoomFull(Exception):
    """The room's member_count would exceed max_members (a CHECK constraint)."""


class CallFull(Exception):
    """The call's participant_count would exceed max_participants (a CHECK constraint)."""


class KeyReused(Exception):
    """An idempotency key already names a message with another text."""

    def __init__(self, ack: Ack) -> None:
        super().__init__("idempotency key reused")
        self.ack = ack


def _room(row: asyncpg.Record) -> Room:
    return Room(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        kind=RoomKind(row["kind"]),
        max_members=row["max_members"],
        member_count=row["member_count"],
        creator_id=row["creator_id"],
        create_time=row["create_time"],
        last_seq=row["last_seq"],
    )


def _message(row: asyncpg.Record) -> Message:
    return Message(
        id=row["id"],
        room_id=row["room_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        sender_name=row["sender_name"],
        text=row["body"],
        idempotency_key=row["idempotency_key"],
        create_time=row["create_time"],
    )


class _Duplicate(Exception):
    """Rolls back a send whose idempotency key won a race elsewhere."""


async def _next_seq(tx: Tx, room_id: UUID) -> tuple[int, datetime]:
    """The room's next sequence and the transaction's time; the row lock it takes serialises
    the room's writers until commit (see the module docstring)."""
    row = await tx.fetchrow(
        "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq, now()",
        room_id,
    )
    assert row is not None
    return row[0], row[1]


class RoomsRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- events -------------------------------------------------------------------------------

    async def _append(
        self, tx: Tx, room_id: UUID, body: EventBody, recipient_id: UUID | None = None
    ) -> RoomEvent:
        seq, now = await _next_seq(tx, room_id)
        await tx.execute(
            "INSERT INTO room_events (room_id, seq, kind, recipient_id, payload, create_time)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
            room_id,
            seq,
            body.kind,
            recipient_id,
            json.dumps(body_to_json(body)),
            now,
        )
        return RoomEvent(room_id=room_id, seq=seq, time=now, body=body, recipient_id=recipient_id)

    async def append_event(
        self, room_id: UUID, body: EventBody, recipient_id: UUID | None = None
    ) -> RoomEvent:
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._append(conn, room_id, body, recipient_id)

    async def signal_sent(self, call_id: UUID, sender_id: UUID, request_id: UUID) -> int | None:
        """The sequence of the signal a SendCallSignal request_id already stored, if any."""
        value: int | None = await self._pool.fetchval(
            "SELECT seq FROM room_call_signal_requests"
            " WHERE call_id = $1 AND sender_id = $2 AND request_id = $3",
            call_id,
            sender_id,
            request_id,
        )
        return value

    async def append_signal(
        self, room_id: UUID, body: CallSignal, request_id: UUID | None
    ) -> tuple[int, RoomEvent | None]:
        """Store a call signal for its recipient; with a request_id, at most once per (call,
        sender, request_id): a retry gets the first signal's sequence and no event (a racing
        duplicate rolls its transaction back, so it consumes no sequence)."""
        if request_id is None:
            event = await self.append_event(room_id, body, recipient_id=body.to_user_id)
            return event.seq, event
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                event = await self._append(conn, room_id, body, recipient_id=body.to_user_id)
                inserted = await conn.fetchval(
                    "INSERT INTO room_call_signal_requests (call_id, sender_id, request_id, seq)"
                    " VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (call_id, sender_id, request_id) DO NOTHING RETURNING seq",
                    body.call_id,
                    body.from_user_id,
                    request_id,
                    event.seq,
                )
                if inserted is None:
                    raise _Duplicate  # roll back the stored event and its sequence
        except _Duplicate:
            seq = await self.signal_sent(body.call_id, body.from_user_id, request_id)
            assert seq is not None
            return seq, None
        return event.seq, event

    async def record_report(
        self, room_id: UUID, call_id: UUID, user_id: UUID, request_id: UUID, outcome: str
    ) -> bool:
        """Record a ReportCallOutcome request_id; False when it was already recorded."""
        inserted = await self._pool.fetchval(
            "INSERT INTO room_call_reports (room_id, call_id, user_id, request_id, outcome)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (call_id, user_id, request_id) DO NOTHING RETURNING true",
            room_id,
            call_id,
            user_id,
            request_id,
            outcome,
        )
        return bool(inserted)

    async def last_seq(self, room_id: UUID) -> int | None:
        value: int | None = await self._pool.fetchval(
            "SELECT last_seq FROM rooms WHERE id = $1", room_id
        )
        return value

    async def last_seqs(self, room_ids: list[UUID]) -> dict[UUID, int]:
        """The last sequences of many rooms in one query (rooms that do not exist left out)."""
        rows = await self._pool.fetch("SELECT id, last_seq FROM rooms WHERE id = ANY($1)", room_ids)
        return {row["id"]: row["last_seq"] for row in rows}

    async def events_after(
        self, room_id: UUID, after: int, upto: int, limit: int
    ) -> list[RoomEvent]:
        """Stored events with after < seq <= upto, in sequence order (messages and the rest)."""
        rows = await self._pool.fetch(
            f"""
            SELECT * FROM (
                SELECT m.seq, m.create_time AS time, NULL::uuid AS recipient_id,
                       NULL::text AS payload, {_MESSAGE_COLUMNS}
                  FROM room_messages m JOIN identity_users u ON u.id = m.sender_id
                 WHERE m.room_id = $1 AND m.seq > $2 AND m.seq <= $3
                 ORDER BY m.seq LIMIT $4
            ) msgs
            UNION ALL
            SELECT * FROM (
                SELECT e.seq, e.create_time, e.recipient_id, e.payload::text,
                       NULL::uuid, NULL::uuid, NULL::bigint, NULL::uuid, NULL::text,
                       NULL::text, NULL::text, NULL::timestamptz
                  FROM room_events e
                 WHERE e.room_id = $1 AND e.seq > $2 AND e.seq <= $3
                 ORDER BY e.seq LIMIT $4
            ) evts
            ORDER BY 1 LIMIT $4
            """,
            room_id,
            after,
            upto,
            limit,
        )
        out: list[RoomEvent] = []
        for row in rows:
            body: EventBody = (
                MessageNew(_message(row))
                if row["payload"] is None
                else body_from_json(json.loads(row["payload"]))
            )
            out.append(
                RoomEvent(
                    room_id=room_id,
                    seq=row[0],
                    time=row[1],
                    body=body,
                    recipient_id=row["recipient_id"],
                )
            )
        return out

    # --- rooms --------------------------------------------------------------------------------

    async def create_room(
        self,
        *,
        creator_id: UUID,
        request_id: UUID | None,
        name: str,
        description: str,
        kind: RoomKind,
        max_members: int,
    ) -> tuple[Room, RoomEvent | None]:
        async with self._pool.acquire() as conn, conn.transaction():
            room_id: UUID | None = await conn.fetchval(
                "INSERT INTO rooms (name, description, kind, max_members, creator_id,"
                " create_request_id) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (creator_id, create_request_id) DO NOTHING RETURNING id",
                name,
                description,
                kind.value,
                max_members,
                creator_id,
                request_id,
            )
            if room_id is None:  # a retry: the room that request created
                row = await conn.fetchrow(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms r"
                    " WHERE r.creator_id = $1 AND r.create_request_id = $2",
                    creator_id,
                    request_id,
                )
                assert row is not None
                return _room(row), None
            event = await self._join(conn, room_id, creator_id)
            room = await self._get_room(conn, room_id)
            assert room is not None
            assert event is not None
            return room, event

    async def _get_room(self, conn: Tx | asyncpg.Pool, room_id: UUID) -> Room | None:
        row = await conn.fetchrow(f"SELECT {_ROOM_COLUMNS} FROM rooms r WHERE r.id = $1", room_id)
        return _room(row) if row is not None else None

    async def get_room(self, room_id: UUID) -> Room | None:
        return await self._get_room(self._pool, room_id)

    async def room_for_member(self, room_id: UUID, user_id: UUID) -> tuple[Room | None, bool]:
        row = await self._pool.fetchrow(
            f"SELECT {_ROOM_COLUMNS}, (m.user_id IS NOT NULL) AS joined FROM rooms r"
            " LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1",
            room_id,
            user_id,
        )
        if row is None:
            return None, False
        return _room(row), bool(row["joined"])

    async def list_rooms(
        self, after: tuple[datetime, UUID] | None, limit: int, member_id: UUID | None
    ) -> list[Room]:
        rows = await self._pool.fetch(
            f"SELECT {_ROOM_COLUMNS} FROM rooms r"
            " WHERE ($1::timestamptz IS NULL OR (r.create_time, r.id) > ($1, $2::uuid))"
            "   AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM room_members m"
            "        WHERE m.room_id = r.id AND m.user_id = $3))"
            " ORDER BY r.create_time, r.id LIMIT $4",
            after[0] if after else None,
            after[1] if after else None,
            member_id,
            limit,
        )
        return [_room(r) for r in rows]

    # --- members ------------------------------------------------------------------------------

    async def _join(self, tx: Tx, room_id: UUID, user_id: UUID) -> RoomEvent | None:
        row = await tx.fetchrow(
            "WITH ins AS (INSERT INTO room_members (room_id, user_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING user_id, join_time)"
            " SELECT ins.join_time, u.display_name FROM ins"
            " JOIN identity_users u ON u.id = ins.user_id",
            room_id,
            user_id,
        )
        if row is None:
            return None
        try:
            await tx.execute(
                "UPDATE rooms SET member_count = member_count + 1 WHERE id = $1", room_id
            )
        except asyncpg.CheckViolationError:
            raise RoomFull from None
        member = Member(user_id=user_id, display_name=row["display_name"], join_time=row[0])
        return await self._append(tx, room_id, MemberJoined(member))

    async def join(self, room_id: UUID, user_id: UUID) -> tuple[Room, Member, RoomEvent | None]:
        async with self._pool.acquire() as conn, conn.transaction():
            event = await self._join(conn, room_id, user_id)
            room = await self._get_room(conn, room_id)
            member_row = await conn.fetchrow(
                "SELECT m.join_time, u.display_name FROM room_members m"
                " JOIN identity_users u ON u.id = m.user_id"
                " WHERE m.room_id = $1 AND m.user_id = $2",
                room_id,
                user_id,
            )
            assert room is not None
            assert member_row is not None
            return room, Member(user_id, member_row["display_name"], member_row[0]), event

    async def leave(self, room_id: UUID, user_id: UUID) -> list[RoomEvent]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", room_id)
            deleted = await conn.fetchval(
                "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2 RETURNING user_id",
                room_id,
                user_id,
            )
            if deleted is None:
                return []
            await conn.execute(
                "UPDATE rooms SET member_count = member_count - 1 WHERE id = $1", room_id
            )
            events: list[RoomEvent] = []
            call_id = await conn.fetchval(
                "SELECT c.id FROM room_calls c JOIN room_call_participants p ON p.call_id = c.id"
                " WHERE c.room_id = $1 AND c.end_time IS NULL AND p.user_id = $2"
                "   AND p.leave_time IS NULL",
                room_id,
                user_id,
            )
            if call_id is not None:
                events.extend(
                    await self._leave_call(conn, room_id, call_id, user_id, CallLeaveReason.LEFT)
                )
            events.append(await self._append(conn, room_id, MemberLeft(user_id)))
            return events

    async def list_members(
        self, room_id: UUID, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Member]:
        rows = await self._pool.fetch(
            "SELECT m.user_id, u.display_name, m.join_time FROM room_members m"
            " JOIN identity_users u ON u.id = m.user_id"
            " WHERE m.room_id = $1"
            "   AND ($2::timestamptz IS NULL OR (m.join_time, m.user_id) > ($2, $3::uuid))"
            " ORDER BY m.join_time, m.user_id LIMIT $4",
            room_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [Member(r["user_id"], r["display_name"], r["join_time"]) for r in rows]

    # --- messages -----------------------------------------------------------------------------

    async def find_message(self, room_id: UUID, sender_id: UUID, key: str) -> Message | None:
        row = await self._pool.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM room_messages m"
            " JOIN identity_users u ON u.id = m.sender_id"
            " WHERE m.room_id = $1 AND m.sender_id = $2 AND m.idempotency_key = $3",
            room_id,
            sender_id,
            key,
        )
        return _message(row) if row is not None else None

    async def send_message(
        self, room_id: UUID, sender_id: UUID, key: str, text: str
    ) -> tuple[Ack, RoomEvent | None]:
        """Store a message (event None when the key already named one: the same ack)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                seq, _ = await _next_seq(conn, room_id)
                row = await conn.fetchrow(
                    "WITH ins AS (INSERT INTO room_messages"
                    " (room_id, seq, sender_id, idempotency_key, body)"
                    " VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT (room_id, sender_id, idempotency_key) DO NOTHING"
                    " RETURNING *)"
                    " SELECT ins.id, ins.room_id, ins.seq, ins.sender_id,"
                    " u.display_name AS sender_name, ins.body, ins.idempotency_key,"
                    " ins.create_time FROM ins JOIN identity_users u ON u.id = ins.sender_id",
                    room_id,
                    seq,
                    sender_id,
                    key,
                    text,
                )
                if row is None:
                    raise _Duplicate  # roll back: the sequence must not be consumed
        except _Duplicate:
            existing = await self.find_message(room_id, sender_id, key)
            assert existing is not None
            ack = Ack(existing.id, existing.seq, existing.create_time)
            if existing.text != text:
                raise KeyReused(ack) from None
            return ack, None
        message = _message(row)
        ack = Ack(message.id, message.seq, message.create_time)
        event = RoomEvent(
            room_id=room_id,
            seq=message.seq,
            time=message.create_time,
            body=MessageNew(message),
        )
        return ack, event

    async def list_messages(
        self,
        room_id: UUID,
        *,
        before: int,
        after: int,
        order: MessageOrder,
        limit: int,
    ) -> list[Message]:
        """Messages with after < seq < before (0 = unbounded), in the given order."""
        direction = "DESC" if order is MessageOrder.NEWEST_FIRST else "ASC"
        rows = await self._pool.fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM room_messages m"
            " JOIN identity_users u ON u.id = m.sender_id"
            " WHERE m.room_id = $1 AND ($2 = 0 OR m.seq < $2) AND m.seq > $3"
            f" ORDER BY m.seq {direction} LIMIT $4",
            room_id,
            before,
            after,
            limit,
        )
        return [_message(r) for r in rows]

    async def delete_older_than(self, cutoff: datetime, batch: int = 5000) -> int | None:
        """Retention: messages, stored events and call request keys created before cutoff, in
        batches. One pass at a time across replicas: the pass runs in a transaction holding
        an advisory lock, and returns None (nothing done) when another replica holds it."""
        total = 0
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RETENTION_LOCK_KEY):
                return None
            for table in (
                "room_messages",
                "room_events",
                "room_call_signal_requests",
                "room_call_reports",
            ):
                while True:
                    deleted = await conn.fetchval(
                        f"WITH gone AS (DELETE FROM {table} WHERE ctid IN"
                        f" (SELECT ctid FROM {table} WHERE create_time < $1 LIMIT $2)"
                        " RETURNING 1) SELECT count(*) FROM gone",
                        cutoff,
                        batch,
                    )
                    total += int(deleted)
                    if deleted < batch:
                        break
        return total

    # --- calls --------------------------------------------------------------------------------

    async def _call(self, conn: Tx | asyncpg.Pool, call_id: UUID) -> Call | None:
        row = await conn.fetchrow(
            "SELECT id, room_id, start_time, max_participants FROM room_calls"
            " WHERE id = $1 AND end_time IS NULL",
            call_id,
        )
        if row is None:
            return None
        participants = await conn.fetch(
            "SELECT p.user_id, u.display_name, p.join_time FROM room_call_participants p"
            " JOIN identity_users u ON u.id = p.user_id"
            " WHERE p.call_id = $1 AND p.leave_time IS NULL ORDER BY p.join_time, p.user_id",
            call_id,
        )
        return Call(
            id=row["id"],
            room_id=row["room_id"],
            start_time=row["start_time"],
            max_participants=row["max_participants"],
            participants=tuple(
                CallParticipant(p["user_id"], p["display_name"], p["join_time"])
                for p in participants
            ),
        )

    async def active_call(self, room_id: UUID) -> Call | None:
        call_id = await self._pool.fetchval(
            "SELECT id FROM room_calls WHERE room_id = $1 AND end_time IS NULL", room_id
        )
        return await self._call(self._pool, call_id) if call_id is not None else None

    async def get_call(self, room_id: UUID, call_id: UUID) -> Call | None:
        call = await self._call(self._pool, call_id)
        return call if call is not None and call.room_id == room_id else None

    async def join_call(
        self, room_id: UUID, user_id: UUID, max_participants: int, prune: frozenset[UUID]
    ) -> tuple[Call, list[UUID], list[RoomEvent]]:
        """Join (or start) the room's call; returns the call, the peers before, the events.
        Participants in ``prune`` (gone offline) are removed first."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", room_id)
            call_id = await conn.fetchval(
                "SELECT id FROM room_calls WHERE room_id = $1 AND end_time IS NULL", room_id
            )
            if call_id is None:
                call_id = await conn.fetchval(
                    "INSERT INTO room_calls (room_id, max_participants) VALUES ($1, $2)"
                    " RETURNING id",
                    room_id,
                    max_participants,
                )
            call = await self._call(conn, call_id)
            assert call is not None
            if call.has(user_id):
                return call, [p.user_id for p in call.participants if p.user_id != user_id], []
            events: list[RoomEvent] = []
            for gone in prune:
                if call.has(gone):
                    events.extend(
                        await self._leave_call(
                            conn, room_id, call_id, gone, CallLeaveReason.TIMEOUT, end=False
                        )
                    )
            await conn.execute(
                "INSERT INTO room_call_participants (call_id, user_id) VALUES ($1, $2)",
                call_id,
                user_id,
            )
            try:
                await conn.execute(
                    "UPDATE room_calls SET participant_count = participant_count + 1 WHERE id = $1",
                    call_id,
                )
            except asyncpg.CheckViolationError:
                raise CallFull from None
            events.append(await self._append(conn, room_id, CallJoined(call_id, user_id)))
            joined = await self._call(conn, call_id)
            assert joined is not None
            peers = [p.user_id for p in joined.participants if p.user_id != user_id]
            return joined, peers, events

    async def _leave_call(
        self,
        conn: Tx,
        room_id: UUID,
        call_id: UUID,
        user_id: UUID,
        reason: CallLeaveReason,
        *,
        end: bool = True,
    ) -> list[RoomEvent]:
        left = await conn.fetchval(
            "UPDATE room_call_participants SET leave_time = now(), leave_reason = $3"
            " WHERE call_id = $1 AND user_id = $2 AND leave_time IS NULL RETURNING user_id",
            call_id,
            user_id,
            reason.value,
        )
        if left is None:
            return []
        remaining = await conn.fetchval(
            "UPDATE room_calls SET participant_count = participant_count - 1 WHERE id = $1"
            " RETURNING participant_count",
            call_id,
        )
        ended = end and remaining == 0
        if ended:
            await conn.execute("UPDATE room_calls SET end_time = now() WHERE id = $1", call_id)
        return [await self._append(conn, room_id, CallLeft(call_id, user_id, reason, ended))]

    async def leave_call(self, room_id: UUID, call_id: UUID, user_id: UUID) -> list[RoomEvent]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", room_id)
            active = await conn.fetchval(
                "SELECT 1 FROM room_calls WHERE id = $1 AND room_id = $2 AND end_time IS NULL",
                call_id,
                room_id,
            )
            if active is None:
                return []
            return await self._leave_call(conn, room_id, call_id, user_id, CallLeaveReason.LEFT)


# --- Redis: presence --------------------------------------------------------------------------


class PresenceRepository:
    """Who has an open subscription to a room: the Redis side of the repository, one sorted
    set per room (``PRESENCE_KEY``), members ``<user>:<connection>`` scored by expiry,
    TTL-bounded. Open subscriptions refresh their entry every tick; an entry of a dead replica
    expires, and whichever replica sweeps it first reports the user offline."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    @staticmethod
    def _key(room_id: UUID) -> str:
        return PRESENCE_KEY.format(room=room_id)

    async def lookup(self, room_id: UUID) -> set[UUID] | None:
        """Users online in the room; None when Redis cannot tell."""
        try:
            members = await self._redis.zrangebyscore(self._key(room_id), time.time(), "+inf")
        except (RedisError, OSError):
            return None
        return {presence_user(_raw(m)) for m in members}

    async def online(self, room_id: UUID) -> set[UUID]:
        """Users online in the room (nobody when Redis cannot tell)."""
        return await self.lookup(room_id) or set()

    async def add(self, room_id: UUID, user_id: UUID, conn_id: str) -> tuple[bool, set[UUID]]:
        """Register a connection; returns whether the user came online with it (no other live
        connection of theirs), and the users online (nobody when Redis cannot tell).

        The entry goes in before the set is read: a concurrent ``remove`` of the user's other
        connection (ZREM, then read) then sees this one, or this read misses that one, so at
        least one side reports the user online and a reconnect never leaves them offline."""
        key = self._key(room_id)
        own = presence_member(user_id, conn_id)
        try:
            now = time.time()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {own: now + self._ttl_s})
                pipe.expire(key, int(self._ttl_s) + 1)
                pipe.zrangebyscore(key, now, "+inf")
                *_, members = await pipe.execute()
        except (RedisError, OSError):
            return False, set()
        online = {user_id}
        came_online = True
        for member in members:
            raw = _raw(member)
            other = presence_user(raw)
            online.add(other)
            if other == user_id and _text(raw) != own:
                came_online = False
        return came_online, online

    async def remove(self, room_id: UUID, user_id: UUID, conn_id: str) -> bool:
        """Drop a connection; True when the user has no other live connection."""
        try:
            removed = await self._redis.zrem(self._key(room_id), presence_member(user_id, conn_id))
        except (RedisError, OSError):
            return False
        return bool(removed) and user_id not in await self.online(room_id)

    async def refresh(self, room_id: UUID, entries: list[tuple[UUID, str]]) -> list[UUID]:
        """Extend this replica's connections; sweep expired ones. Returns users gone offline."""
        return (await self.refresh_many({room_id: entries})).get(room_id, [])

    async def refresh_many(
        self, rooms: dict[UUID, list[tuple[UUID, str]]]
    ) -> dict[UUID, list[UUID]]:
        """:meth:`refresh` for many rooms in a few round trips whatever their number (one
        pipeline to extend and read the expired entries, one to sweep them, one to check who
        is still online). Returns, per room with someone gone offline, those users."""
        if not rooms:
            return {}
        now = time.time()
        room_ids = list(rooms)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for room_id in room_ids:
                    key = self._key(room_id)
                    entries = rooms[room_id]
                    if entries:
                        pipe.zadd(
                            key, {presence_member(u, c): now + self._ttl_s for u, c in entries}
                        )
                        pipe.expire(key, int(self._ttl_s) + 1)
                    pipe.zrangebyscore(key, "-inf", now)
                replies = await pipe.execute()
            expired: list[tuple[UUID, bytes | str]] = []
            at = 0
            for room_id in room_ids:
                at += 2 if rooms[room_id] else 0
                expired.extend((room_id, _raw(m)) for m in replies[at])
                at += 1
            if not expired:
                return {}
            # One ZREM per entry (not transactional): each reports its own count, and exactly
            # one replica wins each entry.
            async with self._redis.pipeline(transaction=False) as pipe:
                for room_id, raw in expired:
                    pipe.zrem(self._key(room_id), raw)
                removed = await pipe.execute()
            gone: dict[UUID, set[UUID]] = {}
            for (room_id, raw), n in zip(expired, removed, strict=True):
                if n:
                    gone.setdefault(room_id, set()).add(presence_user(raw))
            if not gone:
                return {}
            swept = list(gone)
            async with self._redis.pipeline(transaction=False) as pipe:
                for room_id in swept:
                    pipe.zrangebyscore(self._key(room_id), time.time(), "+inf")
                members = await pipe.execute()
        except (RedisError, OSError):
            return {}
        out: dict[UUID, list[UUID]] = {}
        for room_id, online in zip(swept, members, strict=True):
            still = {presence_user(_raw(m)) for m in online}
            left = [u for u in gone[room_id] if u not in still]
            if left:
                out[room_id] = left
        return out


def _raw(member: object) -> bytes | str:
    if isinstance(member, bytes | str):
        return member
    raise TypeError(f"unexpected presence member {member!r}")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
