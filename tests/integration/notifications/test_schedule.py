"""Scheduled notices in the outbox, on the real database and server: leasing never reads rows
that are not yet due (checked with EXPLAIN ANALYZE over many scheduled rows, custom and generic
plans), first-due FIFO order, the delivery delay measured from the first due time, the
``scheduled`` queue depth, and ``withdraw_prefix`` (literal prefixes, only pending rows, the
caller's transaction, racing leases, an index range scan)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from switchboard.notifications.v1 import notifications_pb2 as pb

from server.notifications import repository
from server.notifications.model import (
    PARAMS_PURPOSE,
    Channel,
    Notice,
    ToTelegramChat,
    ToUserViaBot,
    encode_params,
)
from server.notifications.repository import NotificationsRepository
from tests.integration.notifications.conftest import NotifyStack, eventually, tg
from tests.integration.notifications.test_outbox import lease_until, report

if TYPE_CHECKING:
    from switchboard.notifications.v1.notifications_pb2_grpc import (
        NotificationServiceAsyncStub,
    )

_chats = itertools.count(7_300_000_001)
_telegram_ids = itertools.count(7_400_000_001)

MANY = 20_000  # scheduled rows in the plan checks
LEASE_LIMIT = 200  # = max_items * 4 for a lease of 50


def key(prefix: str = "sched") -> str:
    return f"{prefix}:{uuid.uuid4()}"


def at_(notice: Notice, not_before: datetime) -> Notice:
    return dataclasses.replace(notice, not_before=not_before)


async def drop(stack: NotifyStack, *keys: str) -> None:
    """Withdraw what a test left pending, so later tests lease (and count) only their own."""
    async with stack.pool.acquire() as conn, conn.transaction():
        await repository.withdraw(conn, keys)


async def db_now(stack: NotifyStack) -> datetime:
    now: datetime = await stack.pool.fetchval("SELECT clock_timestamp()")
    return now


def _literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    assert isinstance(value, str)
    return "'" + value.replace("'", "''") + "'"


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def explain(
    conn: asyncpg.Connection, sql: str, types: str, args: list[object], *, generic: bool
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of ``sql`` as the server runs it (a prepared statement), with a
    generic or a custom plan; the caller's transaction is expected to roll it back."""
    mode = "force_generic_plan" if generic else "force_custom_plan"
    await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
    name = f"plan_{uuid.uuid4().hex}"
    await conn.execute(f"PREPARE {name}({types}) AS {sql}")
    text = await conn.fetchval(
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}"
        f"({', '.join(_literal(a) for a in args)})"
    )
    await conn.execute(f"DEALLOCATE {name}")
    plan: dict[str, Any] = json.loads(text)[0]["Plan"]
    return plan


def outbox_reads(plan: dict[str, Any]) -> tuple[set[str], int]:
    """(the outbox's scan nodes and the indexes the plan uses, rows the outbox scans produced
    or threw away); a sequential scan shows as "Seq Scan:"."""
    used: set[str] = set()
    read = 0
    for node in _nodes(plan):
        if "Index Name" in node:
            used.add(f"index:{node['Index Name']}")
        if node.get("Relation Name") != "notifications_outbox":
            continue
        used.add(f"{node['Node Type']}:")
        loops = node.get("Actual Loops", 1)
        read += int(node.get("Actual Rows", 0)) * loops
        read += int(node.get("Rows Removed by Filter", 0))
        read += int(node.get("Rows Removed by Index Recheck", 0))
    return used, read


async def seal(stack: NotifyStack) -> bytes:
    return stack.box.seal(encode_params({"text": "x"}), PARAMS_PURPOSE)


async def fill(
    stack: NotifyStack, prefix: str, count: int, *, due_in: timedelta, status: str = "pending"
) -> None:
    """``count`` Telegram rows keyed ``<prefix><i>``, created an hour ago (or at due), first due
    ``now() + due_in`` (+ i ms); ``status`` delivered makes them final."""
    sealed = await seal(stack)
    await stack.pool.execute(
        """
        INSERT INTO notifications_outbox
            (dedup_key, channel, chat_id, bot, template, params, language, status,
             deliver_time, create_time, due_time, next_attempt_time)
        SELECT $1 || i, 'telegram', 9000000000 + i, 'login', 'notifications.admin_message',
               CASE WHEN $4 = 'pending' THEN $2::bytea END, 'en', $4,
               CASE WHEN $4 = 'delivered' THEN now() END,
               LEAST(now() - interval '1 hour', now() + $3::interval),
               now() + $3::interval + i * interval '1 millisecond',
               now() + $3::interval + i * interval '1 millisecond'
        FROM generate_series(1, $5::int) AS i
        """,
        prefix,
        sealed,
        due_in,
        status,
        count,
    )


@pytest.fixture(scope="module")
async def crowded(stack: NotifyStack) -> str:
    """The module's outbox holds MANY scheduled reminders (first due in 1-24 h, enqueued
    before everything else) and as many delivered rows, with fresh statistics."""
    prefix = f"crowd:{uuid.uuid4().hex[:8]}:"
    await fill(stack, prefix + "s", MANY, due_in=timedelta(hours=1))
    await fill(stack, prefix + "d", MANY, due_in=timedelta(hours=-2), status="delivered")
    await stack.pool.execute("ANALYZE notifications_outbox")
    return prefix


# --- leasing over many scheduled rows -------------------------------------------------------


@pytest.mark.parametrize("generic", [False, True], ids=["custom_plan", "generic_plan"])
async def test_leasing_never_reads_the_scheduled_rows(
    stack: NotifyStack, stub: NotificationServiceAsyncStub, crowded: str, generic: bool
) -> None:
    due = [key("due") for _ in range(30)]
    for k in due:
        await stack.enqueue(tg(next(_chats), k))
    async with stack.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            now = await conn.fetchval("SELECT clock_timestamp()")
            plan = await explain(
                conn,
                repository.LEASE_CANDIDATES_SQL,
                "timestamptz, int",
                [now, LEASE_LIMIT],
                generic=generic,
            )
        finally:
            await tx.rollback()
    used, read = outbox_reads(plan)
    assert "Seq Scan:" not in used, (used, plan)
    # The 30 due rows (and whatever else is due in this module), not the 20,000 waiting.
    assert 30 <= read <= LEASE_LIMIT, (read, used, plan)
    # And the lease itself hands out the due rows, none of the scheduled ones.
    ids = {str((await stack.row(k))["id"]) for k in due}
    leased = await lease_until(stub, ids, timeout=10)
    await report(stub, list(leased.values()), pb.DELIVERY_OUTCOME_DELIVERED)
    assert set(leased) == ids
    assert (
        await stack.pool.fetchval(
            "SELECT count(*) FROM notifications_outbox WHERE dedup_key LIKE $1 AND status = 'pending'",
            crowded + "s%",
        )
        == MANY
    )


async def test_a_scheduled_notice_joins_the_queue_at_its_due_time(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    """FIFO by first due time: a reminder due now goes after what was queued before it fell
    due (though it was enqueued earlier) and before what was queued after."""
    at = await db_now(stack) + timedelta(seconds=1)
    reminder, before, after = key(), key(), key()
    await stack.enqueue(at_(tg(next(_chats), reminder), at))
    await stack.enqueue(tg(next(_chats), before))
    while await db_now(stack) < at + timedelta(seconds=0.1):
        await asyncio.sleep(0.05)
    await stack.enqueue(tg(next(_chats), after))
    ids = {str((await stack.row(k))["id"]): k for k in (reminder, before, after)}
    order: list[str] = []
    for _ in range(100):
        response = await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=1))
        order += [ids[n.id] for n in response.notifications if n.id in ids]
        await report(stub, list(response.notifications), pb.DELIVERY_OUTCOME_DELIVERED)
        if len(order) == 3:
            break
        if not response.notifications:
            await asyncio.sleep(0.05)
    assert order == [before, reminder, after]


async def test_due_time_is_the_first_due_time(stack: NotifyStack) -> None:
    later = await db_now(stack) + timedelta(hours=3)
    past = await db_now(stack) - timedelta(hours=3)
    k_now, k_later, k_past = key(), key(), key()
    await stack.enqueue(tg(next(_chats), k_now))
    await stack.enqueue(at_(tg(next(_chats), k_later), later))
    await stack.enqueue(at_(tg(next(_chats), k_past), past))
    for k, expected in ((k_now, None), (k_later, later), (k_past, None)):
        row = await stack.row(k)
        first_due = expected or row["create_time"]  # a past not_before means now
        assert (row["due_time"], row["next_attempt_time"]) == (first_due, first_due), k
    with pytest.raises(asyncpg.CheckViolationError):  # never due before it was created
        await stack.pool.execute(
            "UPDATE notifications_outbox SET due_time = create_time - interval '1 s'"
            " WHERE dedup_key = $1",
            k_now,
        )
    await drop(stack, k_now, k_later, k_past)


def _scrape(stack: NotifyStack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://{stack.env['SWITCHBOARD_METRICS_ADDR']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # nosec B310
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _delay(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], suffix: str) -> float:
    name = "notifications_delivery_delay_seconds" + suffix
    labels: tuple[tuple[str, str], ...] = (("channel", "telegram"),)
    if suffix == "_bucket":
        labels = (("channel", "telegram"), ("le", "60.0"))
    return samples.get((name, labels), 0.0)


async def test_delivery_delay_counts_from_the_first_due_time(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    """A reminder enqueued a day before it fell due reports seconds, not a day."""
    k = key()
    at = await db_now(stack) + timedelta(seconds=0.3)
    await stack.enqueue(at_(tg(next(_chats), k), at))
    await stack.pool.execute(  # as if enqueued a day ago
        "UPDATE notifications_outbox SET create_time = create_time - interval '1 day'"
        " WHERE dedup_key = $1",
        k,
    )
    before = await asyncio.to_thread(_scrape, stack)
    nid = str((await stack.row(k))["id"])
    leased = await lease_until(stub, {nid})
    await report(stub, [leased[nid]], pb.DELIVERY_OUTCOME_DELIVERED)
    after = await asyncio.to_thread(_scrape, stack)
    assert _delay(after, "_count") - _delay(before, "_count") == 1
    assert _delay(after, "_bucket") - _delay(before, "_bucket") == 1  # under a minute
    assert 0 < _delay(after, "_sum") - _delay(before, "_sum") < 60


async def test_queue_depth_reports_scheduled_rows_apart(
    stack: NotifyStack, stub: NotificationServiceAsyncStub, crowded: str
) -> None:
    repo = NotificationsRepository(stack.pool)
    base = await repo.queue_depth()
    assert base["scheduled"] >= MANY  # the crowd, first due in an hour or more
    later = await db_now(stack) + timedelta(hours=2)
    scheduled = [key() for _ in range(3)]
    for k in scheduled:
        await stack.enqueue(at_(tg(next(_chats), k), later))
    due = key()
    await stack.enqueue(tg(next(_chats), due))
    depth = await repo.queue_depth()
    assert depth["scheduled"] == base["scheduled"] + 3
    assert depth["pending"] == base["pending"] + 1
    assert depth["leased"] == base["leased"]

    # A retried row is pending (it was due once), not scheduled, while it waits.
    nid = str((await stack.row(due))["id"])
    leased = await lease_until(stub, {nid})
    assert (await repo.queue_depth())["leased"] == base["leased"] + 1
    await report(stub, [leased[nid]], pb.DELIVERY_OUTCOME_RETRYABLE_FAILURE, retry_after_s=30)
    depth = await repo.queue_depth()
    assert (depth["pending"], depth["scheduled"]) == (base["pending"] + 1, base["scheduled"] + 3)

    # The gauge (refreshed every 5 s) shows the three statuses.
    want = float(depth["scheduled"])

    async def exported() -> bool:
        samples = await asyncio.to_thread(_scrape, stack)
        got = samples.get(("notifications_queue_depth", (("status", "scheduled"),)))
        return got == want and ("notifications_queue_depth", (("status", "pending"),)) in samples

    await eventually(exported, timeout=12)
    await drop(stack, *scheduled, due)


async def test_a_revived_dead_letter_is_due_from_its_revival(stack: NotifyStack) -> None:
    k = key()
    chat = ToTelegramChat(next(_chats), "login", "en")  # a template without params: revivable
    await stack.enqueue(Notice(chat, Channel.TELEGRAM, "identity.telegram_channel_bound", {}, k))
    await stack.pool.execute(
        """
        UPDATE notifications_outbox SET status = 'dead', dead_time = now(), params = NULL,
            last_error = 'telegram_403', create_time = create_time - interval '1 day',
            due_time = due_time - interval '1 day'
        WHERE dedup_key = $1
        """,
        k,
    )
    row = await stack.row(k)
    request_id = str(uuid.uuid4())
    entry, was_dead, usable = await NotificationsRepository(stack.pool).retry_dead(
        row["id"], actor="user:test", request_id=request_id
    )
    assert (was_dead, usable) == (True, True)
    assert entry is not None
    revived = await stack.row(k)
    assert revived["status"] == "pending"
    assert revived["due_time"] > row["due_time"] + timedelta(hours=23)
    audit = [a for a in await stack.audit("notification.retry") if a["request_id"] == request_id]
    assert len(audit) == 1
    assert audit[0]["actor"] == "user:test"
    assert audit[0]["target"] == f"notification:{row['id']}"
    assert json.loads(audit[0]["attributes"]) == {
        "channel": "telegram",
        "template": "identity.telegram_channel_bound",
    }
    await drop(stack, k)


# --- withdraw_prefix ------------------------------------------------------------------------


def via_bot(user_id: UUID, dedup_key: str, not_before: datetime | None = None) -> Notice:
    return Notice(
        ToUserViaBot(user_id, "booking", "ru"),
        Channel.TELEGRAM,
        "booking.reminder",
        {"master": "Марина", "service": "Борода", "when": "26.11.2026 10:00"},
        dedup_key,
        not_before=not_before,
    )


async def telegram_user(stack: NotifyStack) -> UUID:
    user_id = await stack.make_user()
    await stack.pool.execute(
        "UPDATE identity_users SET telegram_user_id = $2 WHERE id = $1",
        user_id,
        next(_telegram_ids),
    )
    return user_id


async def withdraw_prefix(stack: NotifyStack, prefix: str) -> int:
    async with stack.pool.acquire() as conn, conn.transaction():
        return await repository.withdraw_prefix(conn, prefix)


async def test_withdraw_prefix_drops_a_bookings_pending_reminders_only(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    user = await telegram_user(stack)
    booking, other = uuid.uuid4(), uuid.uuid4()
    ahead = await db_now(stack) + timedelta(hours=20)
    prefix = f"booking:{booking}:reminder:"
    r1440, r120, leased_key, delivered_key = (prefix + m for m in ("1440", "120", "60", "30"))
    confirmed = f"booking:{booking}:confirmed"
    others = f"booking:{other}:reminder:1440"
    await stack.enqueue(via_bot(user, leased_key))
    held_id = str((await stack.row(leased_key))["id"])
    held = (await lease_until(stub, {held_id}))[held_id]
    await stack.enqueue(tg(next(_chats), delivered_key))
    done_id = str((await stack.row(delivered_key))["id"])
    done = await lease_until(stub, {done_id})
    await report(stub, list(done.values()), pb.DELIVERY_OUTCOME_DELIVERED)
    for k in (r1440, r120, others):
        await stack.enqueue(via_bot(user, k, ahead))
    await stack.enqueue(via_bot(user, confirmed, ahead))

    async with stack.pool.acquire() as conn:  # rolled back with the caller's transaction
        tx = conn.transaction()
        await tx.start()
        assert await repository.withdraw_prefix(conn, prefix) == 2
        await tx.rollback()
    assert (await stack.row(r1440))["status"] == "pending"

    assert await withdraw_prefix(stack, prefix) == 2
    assert await withdraw_prefix(stack, prefix) == 0
    gone = await stack.pool.fetchval(
        "SELECT count(*) FROM notifications_outbox WHERE dedup_key = ANY($1::text[])",
        [r1440, r120],
    )
    assert gone == 0
    assert (await stack.row(leased_key))["status"] == "leased"  # may be on its way
    assert (await stack.row(delivered_key))["status"] == "delivered"
    assert (await stack.row(confirmed))["status"] == "pending"
    assert (await stack.row(others))["status"] == "pending"
    await report(stub, [held], pb.DELIVERY_OUTCOME_DELIVERED)
    assert await withdraw_prefix(stack, f"booking:{other}:") == 1
    assert await withdraw_prefix(stack, f"booking:{booking}:") == 1  # the confirmation
    with pytest.raises(ValueError, match="non-empty"):
        await withdraw_prefix(stack, "")


async def test_withdraw_prefix_is_literal(stack: NotifyStack) -> None:
    """LIKE wildcards, a backslash, case, non-ASCII text and the highest code point are
    matched as themselves, byte-wise."""
    tag = uuid.uuid4().hex[:8]
    top = chr(0x10FFFF)
    cases: dict[str, tuple[list[str], list[str]]] = {
        # prefix: (keys it must withdraw, keys it must keep)
        f"w{tag}:a_b%:": (
            [f"w{tag}:a_b%:1", f"w{tag}:a_b%:"],
            [f"w{tag}:axb%:1", f"w{tag}:a_bz:1"],
        ),
        f"w{tag}:c\\d:": ([f"w{tag}:c\\d:1"], [f"w{tag}:c\\\\d:1", f"w{tag}:cd:1"]),
        f"w{tag}:Case:": ([f"w{tag}:Case:1"], [f"w{tag}:case:1", f"w{tag}:CASE:1"]),
        f"w{tag}:запись:я": ([f"w{tag}:запись:я1"], [f"w{tag}:запись:ю1", f"w{tag}:запись:ѐ"]),
        f"w{tag}:{top}": ([f"w{tag}:{top}", f"w{tag}:{top}{top}x"], [f"w{tag};", f"w{tag}:z"]),
        f"{top}{tag}": ([f"{top}{tag}-1"], [f"{top}{tag[:-1]}"]),
        top * 2: ([f"{top}{top}{tag}"], [f"{top}x{tag}"]),  # no upper bound: open range
    }
    sealed = await seal(stack)
    every = [k for gone, kept in cases.values() for k in gone + kept]
    await stack.pool.execute(
        """
        INSERT INTO notifications_outbox
            (dedup_key, channel, chat_id, bot, template, params, language, due_time,
             next_attempt_time)
        SELECT k, 'telegram', 1, 'login', 'notifications.admin_message', $2, 'en',
               now() + interval '1 day', now() + interval '1 day'
        FROM unnest($1::text[]) AS k
        """,
        every,
        sealed,
    )
    for prefix, (gone, kept) in cases.items():
        assert await withdraw_prefix(stack, prefix) == len(gone), prefix
        left = await stack.pool.fetch(
            "SELECT dedup_key FROM notifications_outbox WHERE dedup_key = ANY($1::text[])",
            gone + kept,
        )
        assert sorted(r["dedup_key"] for r in left) == sorted(kept), prefix
    await drop(stack, *every)


async def test_withdraw_prefix_racing_a_lease_never_loses_a_leased_notice(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    """Every row is either withdrawn or leased and reported, never both, never neither."""
    prefix = f"booking:{uuid.uuid4()}:reminder:"
    keys = [f"{prefix}{i}" for i in range(40)]
    for k in keys:  # different chats: a lease may take many at once
        await stack.enqueue(tg(next(_chats), k))
    leased_ids: set[str] = set()

    async def lease_some() -> None:
        for _ in range(4):
            response = await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=10))
            leased_ids.update(n.id for n in response.notifications)
            if response.notifications:
                await report(stub, list(response.notifications), pb.DELIVERY_OUTCOME_DELIVERED)

    withdrawn, _ = await asyncio.gather(withdraw_prefix(stack, prefix), lease_some())
    rows = await stack.pool.fetch(
        "SELECT id, status FROM notifications_outbox WHERE dedup_key = ANY($1::text[])", keys
    )
    assert withdrawn + len(rows) == len(keys)
    assert {str(r["id"]) for r in rows} <= leased_ids
    assert {r["status"] for r in rows} <= {"delivered"}


@pytest.mark.parametrize("generic", [False, True], ids=["custom_plan", "generic_plan"])
async def test_withdraw_prefix_is_an_index_range_scan(
    stack: NotifyStack, crowded: str, generic: bool
) -> None:
    """Over 20,000 pending reminders of other bookings (and as many delivered rows), one
    booking's reminders are found through the pending-keys index, reading only them."""
    user = await telegram_user(stack)
    prefix = f"booking:{uuid.uuid4()}:reminder:"
    ahead = await db_now(stack) + timedelta(hours=20)
    for minutes in (1440, 120):
        await stack.enqueue(via_bot(user, f"{prefix}{minutes}", ahead))
    upper = repository._prefix_upper_bound(prefix)
    assert upper is not None
    async with stack.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            plan = await explain(
                conn, repository.WITHDRAW_PREFIX_SQL, "text, text", [prefix, upper], generic=generic
            )
        finally:
            await tx.rollback()
    used, read = outbox_reads(plan)
    assert "Seq Scan:" not in used, (used, plan)
    assert {u for u in used if u.startswith("index:")} == {
        "index:notifications_outbox_pending_keys"
    }, (used, plan)
    assert read == 2, plan
    assert await withdraw_prefix(stack, prefix) == 2
