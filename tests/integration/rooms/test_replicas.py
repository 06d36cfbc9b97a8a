"""Two server processes on one PostgreSQL and Redis: fan-out, Redis outages, restarts.

The pair uses a Redis of its own, so stopping it does not disturb the session's server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import yaml
from switchboard.rooms.v1 import rooms_pb2 as pb

from server.devstack.embedded import EmbeddedRedis, free_port
from server.devstack.processes import ServerProcess
from tests.conftest import Platform
from tests.integration.rooms.rooms_support import Rooms
from tests.support.api import Api, error_info
from tests.support.stack import ROOT, start_server


@dataclass
class Replica:
    server: ServerProcess
    rooms: Rooms
    metrics_addr: str

    def metric(self, name: str) -> float:
        url = f"http://{self.metrics_addr}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )


@dataclass
class Pair:
    a: Replica
    b: Replica
    redis: EmbeddedRedis


@pytest.fixture
async def pair(platform: Platform) -> AsyncIterator[Pair]:
    workdir = platform.log_path.parent
    redis = EmbeddedRedis(workdir / f"redis-rooms-{uuid.uuid4().hex[:6]}", port=free_port()).start()
    servers: list[ServerProcess] = []
    channels: list[grpc.aio.Channel] = []
    try:
        replicas = []
        for name in ("a", "b"):
            metrics_addr = f"127.0.0.1:{free_port()}"
            env = {
                **platform.env,
                "SWITCHBOARD_REDIS_URL": redis.url,
                "SWITCHBOARD_METRICS_ADDR": metrics_addr,
            }
            server = start_server(env, workdir / f"server-rooms-{name}.log")
            servers.append(server)
            channel = grpc.aio.insecure_channel(server.grpc_addr)
            channels.append(channel)
            replicas.append(Replica(server, Rooms(Api(channel, platform.secrets)), metrics_addr))
        yield Pair(replicas[0], replicas[1], redis)
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            server.terminate()
        redis.stop()


async def test_a_message_sent_to_one_replica_reaches_subscribers_on_the_other(pair: Pair) -> None:
    a, b = pair.a.rooms, pair.b.rooms
    room = await a.create()
    alice, bob = await a.member(room.id, "Alice"), await a.member(room.id, "Bob")
    on_b = b.subscribe(bob, room.id)
    await on_b.synced()
    on_a = a.subscribe(alice, room.id)
    await on_a.synced()
    async with asyncio.timeout(5):  # Alice came online on the other replica
        while True:
            seen = (await on_b.next("presence_update")).presence_update
            if seen.user_id == alice.user.id:
                break
    assert seen.online
    received_before = pair.b.metric("rooms_fanout_received_total")
    acks = [await a.send(alice, room.id, f"m{i}") for i in range(20)]
    got = await on_b.messages(20)
    assert [m.sequence for m in got] == [x.sequence for x in acks]
    # Delivered through Redis pub/sub (not only by the periodic database check).
    assert pair.b.metric("rooms_fanout_received_total") >= received_before + 20
    # And the other way round.
    back = await b.send(bob, room.id, "from b")
    on_a_got = await on_a.messages(21)
    assert [m.sequence for m in on_a_got] == [x.sequence for x in acks] + [back.sequence]
    await on_a.close()
    await on_b.close()


async def test_with_redis_down_sends_succeed_and_subscribers_catch_up(pair: Pair) -> None:
    a, b = pair.a.rooms, pair.b.rooms
    room = await a.create()
    alice, bob = await a.member(room.id), await a.member(room.id)
    on_b = b.subscribe(bob, room.id)
    await on_b.synced()
    pair.redis.stop()
    try:
        acks = [await a.send(alice, room.id, f"down{i}") for i in range(10)]
        got = await on_b.messages(10, timeout=10)  # from PostgreSQL, on the replica's tick
        assert [m.sequence for m in got] == [x.sequence for x in acks]
        # A resume on the other replica works without Redis too.
        await on_b.close()
        resumed = b.subscribe(bob, room.id, after=acks[4].sequence)
        assert [m.sequence for m in await resumed.messages(5)] == [x.sequence for x in acks[5:]]
        await resumed.synced()
        await resumed.close()
    finally:
        pair.redis.start()


async def test_a_stopping_server_ends_streams_and_the_client_resumes_elsewhere(
    pair: Pair,
) -> None:
    a, b = pair.a.rooms, pair.b.rooms
    room = await a.create()
    alice, bob = await b.member(room.id), await b.member(room.id)
    on_a = a.subscribe(bob, room.id)
    await on_a.synced()
    first = await b.send(alice, room.id, "before")
    last_seen = (await on_a.next("message_new")).sequence
    assert last_seen == first.sequence
    os.kill(pair.a.server.pid or 0, signal.SIGTERM)
    await asyncio.wait_for(on_a.ended.wait(), 10)
    assert on_a.error is not None
    assert on_a.error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(on_a.error).reason == "SHUTTING_DOWN"
    acks = [await b.send(alice, room.id, f"after{i}") for i in range(5)]
    resumed = b.subscribe(bob, room.id, after=last_seen)
    assert [m.sequence for m in await resumed.messages(5)] == [x.sequence for x in acks]
    await resumed.close()


def _presence_settings() -> tuple[float, float]:
    """(rooms_presence_ttl_s, rooms_heartbeat_s) of the test servers (configs/test.yaml)."""
    config = yaml.safe_load((ROOT / "configs" / "test.yaml").read_text())
    return float(config["rooms_presence_ttl_s"]), float(config["rooms_heartbeat_s"])


async def test_a_killed_replica_leaves_no_presence_ghosts(pair: Pair) -> None:
    a, b = pair.a.rooms, pair.b.rooms
    room = await a.create()
    alice, bob = await a.member(room.id, "Alice"), await a.member(room.id, "Bob")
    on_a = a.subscribe(alice, room.id)
    await on_a.synced()
    on_b = b.subscribe(bob, room.id)
    await on_b.synced()
    async with asyncio.timeout(5):  # Bob came online, seen from the other replica
        while True:
            seen = (await on_a.next("presence_update")).presence_update
            if seen.user_id == bob.user.id:
                break
    assert seen.online
    # No graceful shutdown: the replica cannot remove Bob's presence entry itself.
    pair.b.server.kill()
    killed_at = asyncio.get_running_loop().time()
    ttl_s, tick_s = _presence_settings()
    # The entry was refreshed at most a tick before the kill, expires within the TTL, and the
    # surviving replica sweeps it on its next tick (plus a second of scheduling slack).
    async with asyncio.timeout(ttl_s + tick_s + 1.0):
        while True:
            update = (await on_a.next("presence_update", timeout=60)).presence_update
            if update.user_id == bob.user.id:
                break
    assert not update.online
    assert asyncio.get_running_loop().time() - killed_at >= ttl_s / 2  # it expired
    members = await a.rooms.ListMembers(
        pb.ListMembersRequest(room_id=room.id), metadata=alice.metadata
    )
    online = {m.user_id: m.online for m in members.members}
    assert (online[alice.user.id], online[bob.user.id]) == (True, False)
    again = a.subscribe(alice, room.id)
    snapshot = (await again.synced()).synced
    assert bob.user.id not in snapshot.online_user_ids
    assert alice.user.id in snapshot.online_user_ids
    # Nothing announces Bob online again while he has no subscription.
    await asyncio.sleep(ttl_s)
    assert not [
        e
        for e in on_a.pending()
        if e.WhichOneof("kind") == "presence_update" and e.presence_update.user_id == bob.user.id
    ]
    for stream in (again, on_a, on_b):
        await stream.close()
