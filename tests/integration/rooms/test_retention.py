"""Retention runs one pass at a time across replicas (an advisory lock held by the pass)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from server.rooms.repository import RETENTION_LOCK_KEY, RoomsRepository
from tests.conftest import Platform
from tests.integration.rooms.rooms_support import Rooms
from tests.support.api import Api


async def _old_message(api: Api, conn: asyncpg.Connection) -> uuid.UUID:
    rooms = Rooms(api)
    room = await rooms.create()
    alice = await rooms.member(room.id)
    old = uuid.UUID((await rooms.send(alice, room.id, "ancient")).message_id)
    await conn.execute(
        "UPDATE room_messages SET create_time = now() - interval '31 days' WHERE id = $1", old
    )
    return old


async def test_a_pass_is_skipped_while_another_holds_the_lock(api: Api, platform: Platform) -> None:
    pool = await asyncpg.create_pool(platform.pg_dsn, min_size=1, max_size=4)
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        repo = RoomsRepository(pool)
        cutoff = datetime.now(UTC) - timedelta(days=30)
        # The test server's own retention job (every second) may be about to remove it: the
        # row lock below keeps it in place, and whoever holds the advisory lock blocks on it.
        old = await _old_message(api, conn)
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM room_messages WHERE id = $1 FOR UPDATE", old)
        first = asyncio.ensure_future(repo.delete_older_than(cutoff))
        second = asyncio.ensure_future(repo.delete_older_than(cutoff))
        done, _ = await asyncio.wait(
            {first, second}, timeout=5, return_when=asyncio.FIRST_COMPLETED
        )
        assert done, "neither pass finished: both ran despite the lock"
        assert all(task.result() is None for task in done)  # skipped: someone holds the lock
        await asyncio.sleep(0.3)
        await tx.rollback()
        results = await asyncio.wait_for(asyncio.gather(first, second), 10)
        # At most one of the two ran (the other, or both when the server's pass held it,
        # skipped).
        assert sum(r is not None for r in results) <= 1
        assert None in results
        async with asyncio.timeout(5):
            while await conn.fetchval("SELECT count(*) FROM room_messages WHERE id = $1", old):
                await asyncio.sleep(0.1)
    finally:
        await conn.close()
        await pool.close()


async def test_a_held_lock_makes_the_pass_a_no_op(api: Api, platform: Platform) -> None:
    pool = await asyncpg.create_pool(platform.pg_dsn, min_size=1, max_size=2)
    conn = await asyncpg.connect(platform.pg_dsn)
    try:
        repo = RoomsRepository(pool)
        holder = await asyncpg.connect(platform.pg_dsn)
        try:
            async with holder.transaction():
                await holder.execute("SELECT pg_advisory_xact_lock($1)", RETENTION_LOCK_KEY)
                old = await _old_message(api, conn)
                assert await repo.delete_older_than(datetime.now(UTC) - timedelta(days=30)) is None
                assert await conn.fetchval("SELECT count(*) FROM room_messages WHERE id = $1", old)
        finally:
            await holder.close()
        async with asyncio.timeout(5):
            while (
                await repo.delete_older_than(datetime.now(UTC) - timedelta(days=30)) is None
            ):  # the server's own pass may hold it for a moment
                await asyncio.sleep(0.05)
        assert not await conn.fetchval("SELECT count(*) FROM room_messages WHERE id = $1", old)
    finally:
        await conn.close()
        await pool.close()
