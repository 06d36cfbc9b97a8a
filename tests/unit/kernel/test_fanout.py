"""The generic sequenced fan-out (server/kernel/fanout.py): ordering across gaps, buffers for
resumes, addressed events, overflow, heartbeats, batched and paced wake-ups, and gap fills that
wait for reordered events before reading the database. No Redis: events are ingested directly,
as the listener would."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from server.kernel.fanout import Closed, Fanout, FanoutMetrics, Hub, Stream, Subscription

TOPIC = "t1"


@dataclass(frozen=True, eq=False)
class Ev:
    topic: str
    seq: int  # 0: ephemeral
    to: str | None = None  # only this viewer's subscriptions receive it


def _visible(event: Ev, viewer: str) -> bool:
    return event.to is None or event.to == viewer


def _topic(event: Ev) -> str:
    return event.topic


def _encode(event: Ev) -> dict[str, Any]:
    return {"topic": event.topic, "seq": event.seq, "to": event.to}


def _decode(d: dict[str, Any]) -> Ev:
    return Ev(str(d["topic"]), int(d["seq"]), d["to"])


def _ev(seq: int, to: str | None = None) -> Ev:
    return Ev(TOPIC, seq, to)


def _hub(head: int, buffer_size: int = 100, **kw: Any) -> Hub[str, Ev, str]:
    return Hub(TOPIC, head, buffer_size, visible=_visible, **kw)


def _sub(hub: Hub[str, Ev, str], limit: int = 100, viewer: str = "v") -> Subscription[str, Ev, str]:
    sub = Subscription(hub, viewer, hub.head, limit=limit)
    hub.subscribers.add(sub)
    return sub


def _drain(sub: Subscription[str, Ev, str]) -> list[int]:
    out = []
    while sub._items:
        out.append(sub._items.popleft().seq)
    return out


def test_hub_delivers_in_order_across_gaps_and_drops_duplicates() -> None:
    hub = _hub(head=10)
    sub = _sub(hub)
    assert hub.offer(_ev(11))
    assert not hub.offer(_ev(13))  # ahead of a gap: held back
    assert hub.offer(_ev(11))  # duplicate: ignored
    assert _drain(sub) == [11]
    assert hub.offer(_ev(12))  # the gap closes: 12 then 13
    assert _drain(sub) == [12, 13]
    assert hub.head == 13
    assert not hub.pending


def test_ephemeral_events_go_out_at_once_and_are_not_buffered() -> None:
    hub = _hub(head=3)
    sub = _sub(hub)
    assert hub.offer(_ev(0))
    assert _drain(sub) == [0]
    assert hub.head == 3
    assert not hub.buffer


def test_hub_skips_what_the_database_no_longer_has() -> None:
    hub = _hub(head=1)
    sub = _sub(hub)
    hub.offer(_ev(5))
    hub.skip_to(4)
    assert _drain(sub) == [5]
    assert hub.head == 5


def test_skipping_past_pending_events_drops_them() -> None:
    hub = _hub(head=1)
    sub = _sub(hub)
    hub.offer(_ev(3))
    hub.offer(_ev(6))
    hub.skip_to(4)  # 3 is at or below the new head: never delivered, no longer pending
    assert _drain(sub) == []
    assert hub.head == 4
    assert list(hub.pending) == [6]


def test_hub_buffer_serves_resumes_only_when_it_reaches_back() -> None:
    hub = _hub(head=0, buffer_size=3)
    for seq in range(1, 6):
        hub.offer(_ev(seq))
    assert [e.seq for e in hub.replayable_from_buffer(3) or []] == [4, 5]
    assert [e.seq for e in hub.replayable_from_buffer(2) or []] == [3, 4, 5]
    assert hub.replayable_from_buffer(1) is None  # 2 has left the buffer: use the database
    assert hub.replayable_from_buffer(5) == []


def test_addressed_events_reach_only_their_viewer() -> None:
    hub = _hub(head=0, buffer_size=10)
    to_alice = _sub(hub, viewer="alice")
    to_bob = _sub(hub, viewer="bob")
    hub.offer(_ev(1, to="bob"))
    hub.offer(_ev(2))
    assert _drain(to_alice) == [2]
    assert _drain(to_bob) == [1, 2]


def test_without_a_visibility_rule_everyone_sees_everything() -> None:
    hub: Hub[str, Ev, str] = Hub(TOPIC, 0, 10)
    sub = _sub(hub, viewer="alice")
    hub.offer(_ev(1, to="bob"))
    assert _drain(sub) == [1]


def test_a_slow_subscriber_overflows_instead_of_growing_without_bound() -> None:
    metrics = FanoutMetrics.named("test", "test", registry=CollectorRegistry())
    hub = _hub(head=0, buffer_size=10, metrics=metrics)
    sub = _sub(hub, limit=3)
    for seq in range(1, 6):
        hub.offer(_ev(seq))
    assert sub.overflowed
    assert _drain(sub) == []
    assert metrics.overflows._value.get() == 1


async def test_heartbeats_are_due_only_after_an_idle_interval() -> None:
    hub = _hub(head=0, buffer_size=10)
    sub = _sub(hub, limit=10)
    sub.tick()  # attached during this interval: not idle yet
    hub.offer(_ev(1))
    assert [e.seq for e in await sub.next_batch() or []] == [1]
    sub.tick()  # an event came during the interval
    hub.offer(_ev(2))
    hub.offer(_ev(3))
    assert [e.seq for e in await sub.next_batch() or []] == [2, 3]  # one wake-up, both
    sub.tick()
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.tick()  # a whole interval without events
    assert await waiting is None


async def test_closing_wakes_a_waiting_subscription() -> None:
    hub = _hub(head=0, buffer_size=10)
    sub = Subscription(hub, "v", 0, limit=10)
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(Closed):
        await waiting


def test_a_new_hub_keeps_what_arrives_while_it_reads_the_head() -> None:
    hub = _hub(head=0, buffer_size=10, ready=False)
    for seq in (9, 10, 12):  # 9 and 10 are committed before the head is read as 9
        assert hub.offer(_ev(seq))
    sub = _sub(hub, limit=10)
    assert hub.open_at(9)  # 11 is still missing: a gap to fill
    assert hub.ready.is_set()
    assert _drain(sub) == [10]
    assert hub.offer(_ev(11))
    assert _drain(sub) == [11, 12]


async def test_a_write_carries_at_most_the_limit_and_keeps_the_rest_in_order() -> None:
    hub = _hub(head=0, buffer_size=10)
    sub = _sub(hub)
    for seq in range(1, 8):
        hub.offer(_ev(seq))
    assert [e.seq for e in await sub.next_batch(3) or []] == [1, 2, 3]
    assert [e.seq for e in await sub.next_batch(3) or []] == [4, 5, 6]
    assert [e.seq for e in await sub.next_batch(3) or []] == [7]


async def test_wakeups_are_paced_so_a_busy_topic_batches() -> None:
    hub = _hub(head=0, buffer_size=10, flush_interval_s=0.5)
    sub = _sub(hub)
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)
    hub.offer(_ev(1))  # after a quiet interval: at once
    assert [e.seq for e in await asyncio.wait_for(waiting, 0.2) or []] == [1]
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)  # the writer waits again (events queued before it came back
    # are taken at once, without waiting for a wake-up)
    hub.offer(_ev(2))
    hub.offer(_ev(3))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # within the interval of the last wake-up: held
    assert [e.seq for e in await asyncio.wait_for(waiting, 2) or []] == [2, 3]


def _fanout(load: Any, last: int, metrics: FanoutMetrics | None = None) -> Fanout[str, Ev, str]:
    async def last_seq(topic: str) -> int:
        return last

    stream = Stream(
        channel="test:events",
        topic_of=_topic,
        encode=_encode,
        decode=_decode,
        load_events=load,
        last_seq=last_seq,
        visible=_visible,
    )
    if metrics is not None:
        stream = replace(stream, metrics=metrics)
    # No Redis needed: events are ingested directly, as the listener would.
    return Fanout(cast(Any, None), stream, buffer_size=100, tick_s=60)


async def test_a_reordered_event_is_released_by_the_missing_one_without_the_database() -> None:
    loads: list[tuple[int, int]] = []

    async def load(topic: str, after: int, upto: int, limit: int) -> list[Ev]:
        loads.append((after, upto))
        return []

    fanout = _fanout(load, last=10)
    sub = await fanout.attach(TOPIC, "v")
    fanout.ingest(_ev(12))  # 11 is still on its way
    await asyncio.sleep(0.01)
    assert sub.hub.pending
    assert sub.hub.filling is not None
    fanout.ingest(_ev(11))
    assert [e.seq for e in await asyncio.wait_for(sub.next_batch(), 1) or []] == [11, 12]
    await asyncio.sleep(0.1)  # past the fill delay
    assert loads == []
    assert sub.hub.filling is None
    fanout.detach(sub)


async def test_a_lost_event_is_read_from_the_database_after_the_wait() -> None:
    loads: list[tuple[int, int]] = []

    async def load(topic: str, after: int, upto: int, limit: int) -> list[Ev]:
        loads.append((after, upto))
        return [_ev(s) for s in range(after + 1, upto + 1)]

    fanout = _fanout(load, last=10)
    sub = await fanout.attach(TOPIC, "v")
    fanout.ingest(_ev(12))  # 11 never comes through Redis
    seen: list[int] = []
    async with asyncio.timeout(1):
        while len(seen) < 2:
            seen += [e.seq for e in await sub.next_batch() or []]
    assert seen == [11, 12]
    assert loads == [(10, 12)]
    fanout.detach(sub)


async def test_messages_from_other_replicas_are_decoded_and_own_echoes_ignored() -> None:
    async def load(topic: str, after: int, upto: int, limit: int) -> list[Ev]:
        return []

    metrics = FanoutMetrics.named("test", "test", registry=CollectorRegistry())
    fanout = _fanout(load, last=0, metrics=metrics)
    sub = await fanout.attach(TOPIC, "v")
    assert metrics.subscriptions._value.get() == 1
    other = json.dumps({"o": "another replica", "e": _encode(_ev(1))}).encode()
    echo = json.dumps({"o": fanout.origin, "e": _encode(_ev(2))}).encode()
    fanout._on_message(echo)
    fanout._on_message(b"not json")
    fanout._on_message(other)
    assert [e.seq for e in await asyncio.wait_for(sub.next_batch(), 1) or []] == [1]
    assert metrics.received._value.get() == 1
    fanout.detach(sub)
    assert metrics.subscriptions._value.get() == 0
    assert fanout.head(TOPIC) is None  # the last subscriber gone: the hub too


def test_metric_names_follow_the_prefix() -> None:
    registry = CollectorRegistry()
    FanoutMetrics.named("rooms", "room", registry=registry)
    names = {m.name for m in registry.collect()}
    assert names == {
        "rooms_fanout_published",
        "rooms_fanout_publish_failures",
        "rooms_fanout_received",
        "rooms_fanout_gap_fills",
        "rooms_subscriber_overflows",
        "rooms_subscriptions",
    }


async def test_a_tick_reads_the_last_sequences_of_all_topics_in_one_call() -> None:
    calls: list[list[str]] = []
    hooked: list[dict[str, list[Subscription[str, Ev, str]]]] = []

    async def load(topic: str, after: int, upto: int, limit: int) -> list[Ev]:
        return []

    async def last_seq(topic: str) -> int:
        return 0

    async def last_seqs(topics: list[str]) -> dict[str, int]:
        calls.append(list(topics))
        return dict.fromkeys(topics, 0)

    async def on_tick(watched: dict[str, list[Subscription[str, Ev, str]]]) -> None:
        hooked.append(watched)

    stream = Stream(
        channel="test:events",
        topic_of=_topic,
        encode=_encode,
        decode=_decode,
        load_events=load,
        last_seq=last_seq,
        last_seqs=last_seqs,
        visible=_visible,
    )
    fanout: Fanout[str, Ev, str] = Fanout(cast(Any, None), stream, buffer_size=10, tick_s=60)
    fanout._on_tick = on_tick
    topics = [f"t{i}" for i in range(50)]
    for topic in topics:
        await fanout.attach(topic, "v")
    await fanout._tick_all()
    assert len(calls) == 1
    assert sorted(calls[0]) == sorted(topics)
    assert len(hooked) == 1
    assert sorted(hooked[0]) == sorted(topics)


async def test_a_tick_without_last_seqs_falls_back_to_one_query_per_topic() -> None:
    asked: list[str] = []
    loads: list[tuple[int, int]] = []

    async def load(topic: str, after: int, upto: int, limit: int) -> list[Ev]:
        loads.append((after, upto))
        return []

    async def last_seq(topic: str) -> int:
        asked.append(topic)
        return 3

    stream: Stream[str, Ev, str] = Stream(
        channel="test:events",
        topic_of=_topic,
        encode=_encode,
        decode=_decode,
        load_events=load,
        last_seq=last_seq,
    )
    fanout: Fanout[str, Ev, str] = Fanout(cast(Any, None), stream, buffer_size=10, tick_s=60)
    sub = await fanout.attach(TOPIC, "v")
    asked.clear()
    await fanout._tick_all()
    assert asked == [TOPIC]
    fanout.detach(sub)
