"""A dispatcher killed (SIGKILL) while it holds leased, unsent notifications, then restarted:
every notification is delivered, none twice. The server here has a low global rate so that
notifications are leased ahead of their send slots (work in hand to lose)."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from pathlib import Path

from tests.integration.notifications.conftest import (
    DispatcherProcess,
    NotifyStack,
    dispatcher_env,
    eventually,
    text,
    tg,
)
from tests.support.fake_telegram import FakeBotApi
from tests.support.smtp import SmtpCapture

SERVER_ENV = {
    "SWITCHBOARD_NOTIFICATIONS_GLOBAL_RATE": "5",
    "SWITCHBOARD_NOTIFICATIONS_PER_CHAT_INTERVAL_S": "0.3",
    # Slots are handed out up to 2 s ahead: a dispatcher holds several notifications at once.
    "SWITCHBOARD_NOTIFICATIONS_LEASE_AHEAD_S": "2",
}
_chats = itertools.count(7_500_000)


async def test_killed_mid_batch_then_restarted_delivers_each_once(
    stack: NotifyStack,
    fake: FakeBotApi,
    smtp: SmtpCapture,
    dispatchers: list[DispatcherProcess],
    workdir: Path,
) -> None:
    chats = [next(_chats) for _ in range(8)]
    prefix = f"kill:{uuid.uuid4()}:"
    labels = [f"{prefix}{i}" for i in range(16)]
    for i, label in enumerate(labels):
        await stack.enqueue(tg(chats[i % len(chats)], label, text(label)))
    env = dispatcher_env(stack, telegram_base=fake.base_url, smtp_port=smtp.port)
    first = DispatcherProcess(env, workdir / "dispatcher-kill-1.log").start()
    dispatchers.append(first)
    await stack.wait_statuses(prefix, 2, timeout=20)

    async def holding_unsent_work() -> bool:
        # The dispatcher holds leased notifications whose send slots are all still ahead:
        # killing it now loses work in hand (mid-batch) but no send is in flight, so a
        # duplicate could only come from the dispatcher or the server, not from the kill.
        row = await stack.pool.fetchrow(
            """
            SELECT count(*) AS held,
                   min(lease_expire_time - make_interval(secs => $2)) - now() AS next_send
            FROM notifications_outbox WHERE status = 'leased' AND dedup_key LIKE $1
            """,
            prefix + "%",
            float(stack.env["SWITCHBOARD_NOTIFICATIONS_LEASE_S"]),
        )
        return bool(row["held"] > 0 and row["next_send"].total_seconds() > 0.12)

    await eventually(holding_unsent_work, timeout=10)
    first.kill()
    statuses = await stack.statuses(prefix)
    assert "leased" in statuses.values(), statuses
    assert "pending" in statuses.values(), statuses
    second = DispatcherProcess(env, workdir / "dispatcher-kill-2.log").start()
    dispatchers.append(second)
    await stack.wait_statuses(prefix, len(labels), timeout=30)
    assert await second.terminate() == 0
    texts = Counter(p["text"] for chat in chats for p in fake.sent_messages(chat))
    assert texts == Counter(text(label) for label in labels)
