"""The outbox additions the booking domain relies on, through the real server: a user reached
through a named bot (their private chat, fallbacks, language), notices held back until
``not_before``, and ``withdraw`` in the caller's transaction."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
import pytest
from switchboard.notifications.v1 import notifications_pb2 as pb

from server.notifications import repository
from server.notifications.model import Channel, Notice, ToUserViaBot
from tests.integration.notifications.conftest import NotifyStack, tg
from tests.integration.notifications.test_outbox import lease_until, report

if TYPE_CHECKING:
    from switchboard.notifications.v1.notifications_pb2_grpc import (
        NotificationServiceAsyncStub,
    )

_telegram_ids = itertools.count(7_100_000_001)
_chats = itertools.count(7_200_000_001)

PARAMS = {"master": "Алексей", "service": "Стрижка", "when": "25.11.2026 14:00"}


def key() -> str:
    return f"booking-test:{uuid.uuid4()}"


def via_bot(
    user_id: UUID,
    dedup_key: str,
    *,
    default_language: str = "ru",
    not_before: datetime | None = None,
    template: str = "booking.confirmed",
) -> Notice:
    return Notice(
        ToUserViaBot(user_id, "booking", default_language),
        Channel.TELEGRAM,
        template,
        PARAMS,
        dedup_key,
        not_before=not_before,
    )


async def telegram_user(stack: NotifyStack, *, language: str | None = None) -> tuple[UUID, int]:
    """A user who logged in with Telegram (so has a Telegram user id)."""
    user_id = await stack.make_user(language=language)
    telegram_id = next(_telegram_ids)
    await stack.pool.execute(
        "UPDATE identity_users SET telegram_user_id = $2 WHERE id = $1", user_id, telegram_id
    )
    return user_id, telegram_id


async def db_now(stack: NotifyStack) -> datetime:
    now: datetime = await stack.pool.fetchval("SELECT clock_timestamp()")
    return now


async def test_via_bot_goes_to_the_private_chat_in_the_users_language(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    chosen, chosen_tg = await telegram_user(stack, language="fr")
    never_chose, never_chose_tg = await telegram_user(stack)
    k1, k2 = key(), key()
    assert await stack.enqueue(via_bot(chosen, k1))
    assert await stack.enqueue(via_bot(never_chose, k2, default_language="ru"))

    row = await stack.row(k1)
    assert (row["user_id"], row["bot"], row["chat_id"], row["language"]) == (
        chosen,
        "booking",
        None,
        "ru",
    )
    ids = {str((await stack.row(k))["id"]): k for k in (k1, k2)}
    leased = await lease_until(stub, set(ids))
    by_key = {ids[i]: item for i, item in leased.items()}

    fr = by_key[k1]
    assert (fr.telegram_chat_id, fr.bot, fr.language) == (chosen_tg, "booking", "fr")
    assert fr.template == "booking.confirmed"
    assert fr.body.startswith("Votre rendez-vous est confirmé.")
    ru = by_key[k2]
    assert (ru.telegram_chat_id, ru.bot, ru.language) == (never_chose_tg, "booking", "ru")
    assert "Алексей" in ru.body
    assert "25.11.2026 14:00" in ru.body
    await report(stub, list(leased.values()), pb.DELIVERY_OUTCOME_DELIVERED)
    # Paced per chat like any Telegram send: the pacing key names the booking bot.
    assert (await stack.row(k1))["pace_key"] == f"tg:booking:{chosen_tg}"
    assert (await stack.row(k1))["status"] == "delivered"


async def test_via_bot_without_a_telegram_id_falls_back_to_the_confirmed_channel(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    email_user = await stack.make_user(email=f"{uuid.uuid4().hex}@example.com")
    chat = next(_chats)
    await stack.bind_chat(email_user, chat, bot="login")
    nowhere = await stack.make_user(language="en", email=f"{uuid.uuid4().hex}@example.com")
    k1, k2 = key(), key()
    await stack.enqueue(via_bot(email_user, k1, default_language="fr"))
    await stack.enqueue(via_bot(nowhere, k2))
    nid = str((await stack.row(k1))["id"])
    item = (await lease_until(stub, {nid}))[nid]
    assert (item.telegram_chat_id, item.bot, item.language) == (chat, "login", "fr")
    await report(stub, [item], pb.DELIVERY_OUTCOME_DELIVERED)

    # No Telegram id and no confirmed chat: dead at once (an email address is no fallback
    # for a Telegram notice), audited like any undeliverable notification.
    async def dead() -> bool:
        await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=1))
        row = await stack.row(k2)
        return bool(row["status"] == "dead")

    for _ in range(100):
        if await dead():
            break
        await asyncio.sleep(0.05)
    row = await stack.row(k2)
    assert (row["status"], row["last_error"], row["params"]) == ("dead", "no_channel", None)


async def test_not_before_holds_a_notice_back_until_then(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    user, telegram_id = await telegram_user(stack)
    at = await db_now(stack) + timedelta(seconds=2)
    later, now_key = key(), key()
    await stack.enqueue(via_bot(user, later, not_before=at, template="booking.reminder"))
    await stack.enqueue(tg(next(_chats), now_key))
    row = await stack.row(later)
    assert row["next_attempt_time"] == at
    assert row["status"] == "pending"

    later_id = str(row["id"])
    now_id = str((await stack.row(now_key))["id"])
    first = await lease_until(stub, {now_id})
    assert later_id not in first
    await report(stub, list(first.values()), pb.DELIVERY_OUTCOME_DELIVERED)
    # Leasing again before `at` never hands it out.
    while await db_now(stack) < at - timedelta(seconds=0.3):
        response = await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=50))
        assert later_id not in {n.id for n in response.notifications}
        if response.notifications:
            await report(stub, list(response.notifications), pb.DELIVERY_OUTCOME_DELIVERED)
        await asyncio.sleep(0.1)
    leased = await lease_until(stub, {later_id}, timeout=5)
    item = leased[later_id]
    assert await db_now(stack) >= at
    assert item.template == "booking.reminder"
    assert item.telegram_chat_id == telegram_id
    assert item.body.startswith("Напоминаем о записи.")  # noqa: RUF001
    await report(stub, list(leased.values()), pb.DELIVERY_OUTCOME_DELIVERED)


async def test_withdraw_drops_only_pending_notices_in_the_callers_transaction(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    user, _ = await telegram_user(stack)
    future = await db_now(stack) + timedelta(hours=1)
    pending_later, pending_now, leased_key, delivered_key = key(), key(), key(), key()
    await stack.enqueue(via_bot(user, pending_later, not_before=future))
    await stack.enqueue(via_bot(user, leased_key))
    leased_id = str((await stack.row(leased_key))["id"])
    held = (await lease_until(stub, {leased_id}))[leased_id]
    await stack.enqueue(tg(next(_chats), delivered_key))
    delivered_id = str((await stack.row(delivered_key))["id"])
    done = await lease_until(stub, {delivered_id})
    await report(stub, list(done.values()), pb.DELIVERY_OUTCOME_DELIVERED)
    await stack.enqueue(via_bot(user, pending_now, not_before=future))
    keys = [pending_later, pending_now, leased_key, delivered_key, key()]

    # Rolled back with the caller's transaction: nothing is lost.
    async with stack.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        assert await repository.withdraw(conn, keys) == 2
        await tx.rollback()
    assert (await stack.row(pending_later))["status"] == "pending"

    async with stack.pool.acquire() as conn, conn.transaction():
        assert await repository.withdraw(conn, keys) == 2
        assert await repository.withdraw(conn, []) == 0
    statuses = await stack.statuses("booking-test:")
    assert pending_later not in statuses
    assert pending_now not in statuses
    assert statuses[leased_key] == "leased"  # in a dispatcher's hands: may be on its way
    assert (await stack.row(delivered_key))["status"] == "delivered"
    await report(stub, [held], pb.DELIVERY_OUTCOME_DELIVERED)

    # Withdrawn keys are free again (a rebooked slot may queue the same reminder key).
    assert await stack.enqueue(via_bot(user, pending_later, not_before=future))
    async with stack.pool.acquire() as conn, conn.transaction():
        assert await repository.withdraw(conn, [pending_later]) == 1


async def test_withdraw_racing_a_lease_never_loses_a_leased_notice(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    """A row is either withdrawn or leased (then reported), never both, never neither."""
    user, _ = await telegram_user(stack)
    keys = [key() for _ in range(30)]
    for k in keys:
        await stack.enqueue(via_bot(user, k))

    async def withdraw_all() -> int:
        async with stack.pool.acquire() as conn, conn.transaction():
            return await repository.withdraw(conn, keys)

    leased_ids: set[str] = set()

    async def lease_some() -> None:
        for _ in range(5):
            response = await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=50))
            leased_ids.update(n.id for n in response.notifications)
            if response.notifications:
                await report(stub, list(response.notifications), pb.DELIVERY_OUTCOME_DELIVERED)

    withdrawn, _ = await asyncio.gather(withdraw_all(), lease_some())
    rows = await stack.pool.fetch(
        "SELECT id, status FROM notifications_outbox WHERE dedup_key = ANY($1::text[])", keys
    )
    # A user is one chat: one notice at a time, so most stay pending for the withdrawal.
    assert withdrawn + len(rows) == len(keys)
    assert all(str(r["id"]) in leased_ids for r in rows)
    assert {r["status"] for r in rows} <= {"delivered"}


async def test_the_schema_still_refuses_a_bot_without_chat_or_user(stack: NotifyStack) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await stack.pool.execute(
            """
            INSERT INTO notifications_outbox (dedup_key, channel, email, bot, template, language)
            VALUES ($1, 'email', 'a@example.com', 'booking', 'booking.confirmed', 'en')
            """,
            key(),
        )
    user = await stack.make_user()
    with pytest.raises(asyncpg.CheckViolationError):  # a via-bot row carries its language
        await stack.pool.execute(
            """
            INSERT INTO notifications_outbox (dedup_key, channel, user_id, bot, template)
            VALUES ($1, 'telegram', $2, 'booking', 'booking.confirmed')
            """,
            key(),
            user,
        )
