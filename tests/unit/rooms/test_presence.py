"""PresenceRepository against an in-memory Redis whose every command first yields to the loop a
(seeded) random number of times, so concurrent operations interleave command by command."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from server.rooms.repository import PresenceRepository

ROOM = uuid4()


class _FakeRedis:
    def __init__(self, seed: int = 0) -> None:
        self.sets: dict[str, dict[str, float]] = {}
        self._rng = random.Random(seed)

    @staticmethod
    def _score(value: float | str) -> float:
        return float(value)  # "+inf" and "-inf" parse as floats

    async def _step(self) -> None:
        for _ in range(self._rng.randrange(4)):
            await asyncio.sleep(0)

    async def zadd(self, key: str, mapping: dict[str, float]) -> int:
        await self._step()
        entries = self.sets.setdefault(key, {})
        added = sum(1 for m in mapping if m not in entries)
        entries.update(mapping)
        return added

    async def zrem(self, key: str, *members: str | bytes) -> int:
        await self._step()
        entries = self.sets.get(key, {})
        names = [m.decode() if isinstance(m, bytes) else m for m in members]
        return sum(1 for m in names if entries.pop(m, None) is not None)

    async def zrangebyscore(self, key: str, low: float | str, high: float | str) -> list[bytes]:
        await self._step()
        lo, hi = self._score(low), self._score(high)
        entries = self.sets.get(key, {})
        return [m.encode() for m, s in sorted(entries.items(), key=lambda x: x[1]) if lo <= s <= hi]

    async def expire(self, key: str, seconds: int) -> bool:
        await self._step()
        return True

    def pipeline(self, transaction: bool = True) -> _FakePipeline:
        assert not transaction
        return _FakePipeline(self)


class _FakePipeline:
    def __init__(self, redis: _FakeRedis) -> None:
        self._redis = redis
        self._queued: list[Callable[[], Any]] = []

    async def __aenter__(self) -> _FakePipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __getattr__(self, name: str) -> Callable[..., None]:
        command = getattr(self._redis, name)

        def queue(*args: Any, **kwargs: Any) -> None:
            self._queued.append(lambda: command(*args, **kwargs))

        return queue

    async def execute(self) -> list[Any]:
        # Not transactional: another client's commands may run between these.
        out = [await make() for make in self._queued]
        self._queued.clear()
        return out


@pytest.mark.parametrize("seed", range(64))
async def test_a_reconnect_racing_the_old_connections_removal_leaves_the_user_online(
    seed: int,
) -> None:
    # Among the interleavings: the new connection's add reads the set while the old entry is
    # still there, then the old one's remove drops it and reads before the new entry lands.
    redis = _FakeRedis(seed)
    presence = PresenceRepository(cast(Redis, redis), ttl_s=45)
    user = uuid4()
    came_online, online = await presence.add(ROOM, user, "old")
    assert came_online
    assert online == {user}
    announced: list[bool] = []  # online / offline announcements, in the order they go out

    async def reconnect() -> None:
        new, _ = await presence.add(ROOM, user, "new")
        if new:
            announced.append(True)

    async def drop_old() -> None:
        if await presence.remove(ROOM, user, "old"):
            announced.append(False)

    await asyncio.gather(reconnect(), drop_old())
    assert await presence.online(ROOM) == {user}
    # Either the user never went offline, or they came back online after it.
    assert not announced or announced[-1] is True


async def test_add_reports_the_users_online_and_whether_this_connection_is_their_first() -> None:
    redis = _FakeRedis()
    presence = PresenceRepository(cast(Redis, redis), ttl_s=45)
    alice, bob = uuid4(), uuid4()
    assert await presence.add(ROOM, alice, "a1") == (True, {alice})
    assert await presence.add(ROOM, bob, "b1") == (True, {alice, bob})
    assert await presence.add(ROOM, alice, "a2") == (False, {alice, bob})
    assert await presence.add(ROOM, alice, "a2") == (False, {alice, bob})  # a refresh
    assert not await presence.remove(ROOM, alice, "a1")  # a2 is still there
    assert await presence.remove(ROOM, alice, "a2")


async def test_refresh_sweeps_expired_entries_and_reports_who_went_offline() -> None:
    redis = _FakeRedis()
    presence = PresenceRepository(cast(Redis, redis), ttl_s=45)
    alice, bob = uuid4(), uuid4()
    await presence.add(ROOM, alice, "a1")
    await presence.add(ROOM, alice, "a2")
    await presence.add(ROOM, bob, "b1")
    entries = redis.sets[f"sb:rooms:presence:{ROOM}"]
    for member in list(entries):
        if not member.endswith(":a2"):
            entries[member] = 0.0  # expired: a dead replica's
    assert await presence.refresh(ROOM, []) == [bob]  # alice still has a2
    assert await presence.online(ROOM) == {alice}
    assert await presence.refresh(ROOM, []) == []  # nothing left to sweep


async def test_refresh_many_sweeps_every_room_in_one_pass() -> None:
    redis = _FakeRedis()
    presence = PresenceRepository(cast(Redis, redis), ttl_s=45)
    other = uuid4()
    alice, bob = uuid4(), uuid4()
    await presence.add(ROOM, alice, "a1")
    await presence.add(other, bob, "b1")
    for key in (f"sb:rooms:presence:{ROOM}", f"sb:rooms:presence:{other}"):
        for member in list(redis.sets[key]):
            redis.sets[key][member] = 0.0  # expired: a dead replica's
    carol = uuid4()
    gone = await presence.refresh_many({ROOM: [(carol, "c1")], other: []})
    assert gone == {ROOM: [alice], other: [bob]}
    assert await presence.online(ROOM) == {carol}
    assert await presence.refresh_many({ROOM: [(carol, "c1")], other: []}) == {}
