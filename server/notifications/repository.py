"""Notifications' SQL, explicit, over asyncpg.

``enqueue`` is the transactional-outbox entry point other domains call with THEIR connection,
inside their own transaction: the notice is committed (or rolled back) with the state change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from server.identity.model import DEFAULT_LANGUAGE, LANGUAGES
from server.kernel.audit import insert_audit_event
from server.kernel.crypto import SecretBox
from server.notifications.model import (
    PARAMS_PURPOSE,
    TEMPLATES,
    Applied,
    Channel,
    Death,
    LeaseBatch,
    LeasedRow,
    Notice,
    OutboxEntry,
    Outcome,
    Pacing,
    Report,
    Status,
    ToEmail,
    ToTelegramChat,
    ToUser,
    ToUserViaBot,
    encode_params,
    pace_key,
    plan_slots,
    validate_notice,
)


async def enqueue(conn: asyncpg.Connection, box: SecretBox, notice: Notice) -> bool:
    """Queue ``notice``; True when queued, False when its dedup key was already queued.

    Just one INSERT: no sender is contacted, so a down sender never slows the caller.
    A notice with ``not_before`` is first due then (its row waits, pending, until that time;
    a ``not_before`` already past means now). That first due time is stored (``due_time``):
    the row's place in the lease queue and the start of its delivery delay.
    Raises ``model.InvalidNotice`` for a notice that could never be delivered.
    """
    validate_notice(notice)
    recipient = notice.recipient
    user_id = recipient.user_id if isinstance(recipient, ToUser | ToUserViaBot) else None
    chat_id = recipient.chat_id if isinstance(recipient, ToTelegramChat) else None
    bot = recipient.bot if isinstance(recipient, ToTelegramChat | ToUserViaBot) else None
    email = recipient.address if isinstance(recipient, ToEmail) else None
    language: str | None
    if isinstance(recipient, ToUser):
        language = None
    elif isinstance(recipient, ToUserViaBot):
        # Stored as the fallback; the user's own language wins at lease time.
        language = recipient.default_language
    else:
        language = recipient.language
    sealed = box.seal(encode_params(notice.params), PARAMS_PURPOSE)
    row = await conn.fetchrow(
        """
        INSERT INTO notifications_outbox
            (dedup_key, channel, user_id, chat_id, bot, email, template, params, language,
             due_time, next_attempt_time)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                GREATEST(now(), $10::timestamptz), GREATEST(now(), $10::timestamptz))
        ON CONFLICT (dedup_key) DO NOTHING
        RETURNING id
        """,
        notice.dedup_key,
        str(notice.channel),
        user_id,
        chat_id,
        bot,
        email,
        notice.template,
        sealed,
        language,
        notice.not_before,
    )
    return row is not None


async def withdraw(conn: asyncpg.Connection, dedup_keys: Sequence[str]) -> int:
    """Drop the still-pending notices with these dedup keys, in the caller's transaction.

    For notices that no longer make sense (the reminders of a cancelled booking). A notice in
    a dispatcher's hands (leased) or already final is left alone: it may be on its way. A
    row a lease holds locked is waited for, then seen leased and kept; unknown keys are
    ignored. Returns how many were dropped.
    """
    if not dedup_keys:
        return 0
    result: str = await conn.execute(
        """
        DELETE FROM notifications_outbox
        WHERE dedup_key = ANY($1::text[]) AND status = 'pending'
        """,
        list(dedup_keys),
    )
    return int(result.split()[-1])


# Pending rows by dedup key prefix: a byte-wise range ($1 = the prefix, $2 = the least string
# above all its extensions) the text_pattern_ops index answers in any plan (a LIKE with a
# parameter pattern cannot use an index in a generic plan), rechecked exactly by starts_with.
WITHDRAW_PREFIX_SQL = """
    DELETE FROM notifications_outbox
    WHERE status = 'pending' AND dedup_key ~>=~ $1 AND dedup_key ~<~ $2
      AND starts_with(dedup_key, $1)
"""
WITHDRAW_PREFIX_UNBOUNDED_SQL = """
    DELETE FROM notifications_outbox
    WHERE status = 'pending' AND dedup_key ~>=~ $1 AND starts_with(dedup_key, $1)
"""


def _prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix``, byte-wise (UTF-8 order
    is code point order); None when there is none (the prefix is all U+10FFFF)."""
    chars = list(prefix)
    while chars:
        following = ord(chars.pop()) + 1
        if following == 0xD800:  # surrogates are not characters PostgreSQL stores
            following = 0xE000
        if following <= 0x10FFFF:
            return "".join(chars) + chr(following)
    return None


async def withdraw_prefix(conn: asyncpg.Connection, prefix: str) -> int:
    """Drop the still-pending notices whose dedup key starts with ``prefix``, in the caller's
    transaction (a cancelled booking's reminders: ``booking:<id>:reminder:``).

    The prefix is literal (``%``, ``_`` and ``\\`` match only themselves). Same rules as
    ``withdraw``: leased and final rows stay, a row a lease holds locked is waited for and then
    kept. One index range scan over pending rows (``notifications_outbox_pending_keys``, byte-wise
    ``text_pattern_ops`` bounds, so any collation and any plan use it). Returns how many.
    Raises ValueError for an empty prefix (it would withdraw everything) or one with NUL.
    """
    if not prefix or "\x00" in prefix:
        raise ValueError("withdraw_prefix needs a non-empty prefix without NUL")
    upper = _prefix_upper_bound(prefix)
    if upper is None:
        result: str = await conn.execute(WITHDRAW_PREFIX_UNBOUNDED_SQL, prefix)
    else:
        result = await conn.execute(WITHDRAW_PREFIX_SQL, prefix, upper)
    return int(result.split()[-1])


# --- the outbox's own side ------------------------------------------------------------------

# Due rows in first-due order ($1 = now, $2 = how many). The queue index (due_time, id) over
# pending/leased rows is walked from the oldest up to due_time <= now and stops at the limit:
# scheduled rows (first due later) are beyond the range and never read. Rows already due once
# but waiting (a retry's backoff, a busy chat, a lease not yet expired) are within the range
# and skipped by the next_attempt_time filter, so they keep their FIFO place.
LEASE_CANDIDATES_SQL = """
    SELECT id, channel, template, user_id, chat_id, bot, email, language, status,
           attempts, last_error, params
    FROM notifications_outbox
    WHERE status IN ('pending', 'leased')
      AND due_time <= $1 AND next_attempt_time <= $1
    ORDER BY due_time, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
"""

_ENTRY_COLUMNS = (
    "id, dedup_key, channel, template, user_id, chat_id, bot, email, language, status, "
    "attempts, next_attempt_time, last_error, create_time, update_time, deliver_time, dead_time"
)


def _entry(row: asyncpg.Record) -> OutboxEntry:
    return OutboxEntry(
        id=row["id"],
        dedup_key=row["dedup_key"],
        channel=Channel(row["channel"]),
        template=row["template"],
        user_id=row["user_id"],
        chat_id=row["chat_id"],
        bot=row["bot"],
        email=row["email"],
        language=row["language"] or "",
        status=Status(row["status"]),
        attempts=row["attempts"],
        next_attempt_time=row["next_attempt_time"],
        last_error=row["last_error"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        deliver_time=row["deliver_time"],
        dead_time=row["dead_time"],
    )


class StaleLeases(Exception):
    """Reports naming leases no longer held; nothing of the batch was applied."""

    def __init__(self, ids: list[UUID]) -> None:
        super().__init__(f"{len(ids)} stale lease(s)")
        self.ids = ids


@dataclass(frozen=True, slots=True)
class _Recipient:
    language: str
    chat_id: int | None = None
    bot: str | None = None
    email: str | None = None


class NotificationsRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- dispatch ------------------------------------------------------------------------

    async def lease(
        self,
        *,
        max_items: int,
        pacing: Pacing,
        lease_s: float,
        max_attempts: int,
        actor: str,
        request_id: str,
    ) -> LeaseBatch:
        """Lease due notifications and give each a paced send time, in one transaction.

        The global pacing row is locked first (FOR UPDATE), which serialises leases across
        replicas and dispatchers so the slots they hand out never overlap; due rows are then
        taken with FOR UPDATE SKIP LOCKED, so reports and admin retries holding a row lock
        are skipped instead of waited for. Rows are taken in first-due order (FIFO: a row
        waiting for its chat or a retry keeps its place), walking the queue index only up to
        ``due_time <= now``: scheduled rows (reminders a day ahead) are never visited.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            global_next: datetime = await conn.fetchval(
                "SELECT next_time FROM notifications_pacing WHERE key = '*' FOR UPDATE"
            )
            # The time after the lock is ours (another lease may have held it): slots are
            # planned from here, and `clock` pins this instant for the response's delays.
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            clock = time.monotonic()
            candidates = await conn.fetch(LEASE_CANDIDATES_SQL, now, max_items * 4)
            resolved = await self._resolve_users(conn, candidates)
            dead: list[Death] = []
            usable: list[tuple[asyncpg.Record, _Recipient]] = []
            for row in candidates:
                channel = Channel(row["channel"])
                if row["status"] == "leased" and row["attempts"] >= max_attempts:
                    # Leased max_attempts times and never reported: the dispatchers crash on it.
                    reason = "lease_expired"
                elif row["user_id"] is not None and row["id"] not in resolved:
                    reason = "no_channel"
                else:
                    recipient = resolved.get(row["id"]) or _Recipient(
                        language=row["language"] or DEFAULT_LANGUAGE,
                        chat_id=row["chat_id"],
                        bot=row["bot"],
                        email=row["email"],
                    )
                    usable.append((row, recipient))
                    continue
                await self._kill(conn, row, reason, actor=actor, request_id=request_id)
                dead.append(Death(row["id"], channel, reason))

            keys = [
                pace_key(r.bot, r.chat_id) if r.chat_id is not None and r.bot else None
                for _, r in usable
            ]
            wanted = sorted({k for k in keys if k is not None})
            chat_next = {
                rec["key"]: rec["next_time"]
                for rec in await conn.fetch(
                    "SELECT key, next_time FROM notifications_pacing WHERE key = ANY($1::text[])",
                    wanted,
                )
            }
            busy = {
                rec["pace_key"]
                for rec in await conn.fetch(
                    """
                    SELECT DISTINCT pace_key FROM notifications_outbox
                    WHERE status = 'leased' AND pace_key = ANY($1::text[])
                      AND lease_expire_time > $2
                    """,
                    wanted,
                    now,
                )
            }
            plan = plan_slots(
                keys,
                now=now,
                global_next=global_next,
                chat_next=chat_next,
                pacing=pacing,
                capacity=max_items,
                busy=frozenset(busy),
            )
            leased: list[LeasedRow] = []
            lease_for = timedelta(seconds=lease_s)
            lease_args: list[tuple[object, ...]] = []
            for index, send_time in plan.assigned.items():
                row, recipient = usable[index]
                expire = send_time + lease_for
                lease_id = uuid4()
                lease_args.append((row["id"], lease_id, expire, keys[index], now))
                leased.append(
                    LeasedRow(
                        id=row["id"],
                        lease_id=lease_id,
                        channel=Channel(row["channel"]),
                        template=row["template"],
                        sealed_params=row["params"],
                        language=recipient.language,
                        chat_id=recipient.chat_id,
                        bot=recipient.bot,
                        email=recipient.email,
                        attempt=row["attempts"] + 1,
                        send_time=send_time,
                        lease_expire_time=expire,
                    )
                )
            if lease_args:
                await conn.executemany(
                    """
                    UPDATE notifications_outbox SET
                        status = 'leased', lease_id = $2, lease_expire_time = $3,
                        next_attempt_time = $3, attempts = attempts + 1, pace_key = $4,
                        update_time = $5
                    WHERE id = $1
                    """,
                    lease_args,
                )
            ahead = timedelta(seconds=pacing.ahead_s)
            # Not an attempt: a deferred row waits until its chat is free within a lease
            # window (an expired lease stays leased meanwhile).
            deferred_args = [
                (usable[index][0]["id"], max(now + ahead / 4, ready - ahead))
                for index, ready in plan.deferred.items()
            ]
            if deferred_args:
                await conn.executemany(
                    "UPDATE notifications_outbox SET next_attempt_time = $2 WHERE id = $1",
                    deferred_args,
                )
            await conn.execute(
                "UPDATE notifications_pacing SET next_time = $1 WHERE key = '*'", plan.next_slot
            )
            if plan.chat_next:
                await conn.executemany(
                    """
                    INSERT INTO notifications_pacing (key, next_time) VALUES ($1, $2)
                    ON CONFLICT (key) DO UPDATE SET next_time = GREATEST(
                        notifications_pacing.next_time, EXCLUDED.next_time)
                    """,
                    list(plan.chat_next.items()),
                )
            earliest: datetime | None = await conn.fetchval(
                """
                SELECT min(next_attempt_time) FROM notifications_outbox
                WHERE status IN ('pending', 'leased')
                """
            )
        # Ask again when something is due and the next global slot is half a window away.
        window = plan.next_slot - timedelta(seconds=pacing.ahead_s / 2)
        wake = max(earliest, window) if earliest is not None else now + timedelta(days=1)
        return LeaseBatch(rows=leased, now=now, clock=clock, next_lease_time=wake, dead=dead)

    async def _resolve_users(
        self, conn: asyncpg.Connection, candidates: list[asyncpg.Record]
    ) -> dict[UUID, _Recipient]:
        """A user recipient's chat or address for the notification's kind, and language.

        A plain user recipient: their confirmed channel of that kind, in their language (en
        when they never chose one). A user-via-bot recipient (the row names a bot): the
        private chat with that bot, which has their Telegram user id, else their confirmed
        Telegram channel; in their language, else the row's default language.
        """
        by_user = [
            (r["id"], r["user_id"], r["channel"], r["bot"], r["language"])
            for r in candidates
            if r["user_id"] is not None
        ]
        if not by_user:
            return {}
        rows = await conn.fetch(
            """
            -- language is NULL for a user who never chose one.
            SELECT u.id, u.language, u.telegram_user_id,
                   CASE WHEN u.email_verify_time IS NOT NULL THEN u.email END AS email,
                   c.chat_id, c.bot
            FROM identity_users u
            LEFT JOIN LATERAL (
                SELECT chat_id, bot FROM identity_telegram_channels t
                WHERE t.user_id = u.id AND t.confirm_time IS NOT NULL
                  AND t.delete_time IS NULL
                ORDER BY t.confirm_time DESC, t.id
                LIMIT 1
            ) c ON true
            WHERE u.id = ANY($1::uuid[]) AND u.delete_time IS NULL
            """,
            sorted({user_id for _, user_id, _, _, _ in by_user}),
        )
        users = {r["id"]: r for r in rows}
        out: dict[UUID, _Recipient] = {}
        for notification_id, user_id, channel, via_bot, default_language in by_user:
            user = users.get(user_id)
            if user is None:
                continue
            fallback = default_language if default_language in LANGUAGES else DEFAULT_LANGUAGE
            language = user["language"] if user["language"] in LANGUAGES else fallback
            if via_bot is not None and user["telegram_user_id"] is not None:
                out[notification_id] = _Recipient(language, user["telegram_user_id"], via_bot)
            elif channel == Channel.TELEGRAM and user["chat_id"] is not None:
                out[notification_id] = _Recipient(language, user["chat_id"], user["bot"])
            elif channel == Channel.EMAIL and user["email"] is not None:
                out[notification_id] = _Recipient(language, email=user["email"])
        return out

    async def _kill(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        reason: str,
        *,
        actor: str,
        request_id: str,
    ) -> None:
        """Dead-letter a row (params wiped) and write the audit event, in the caller's tx."""
        await conn.execute(
            """
            UPDATE notifications_outbox SET
                status = 'dead', params = NULL, lease_id = NULL, lease_expire_time = NULL,
                last_error = $2, dead_time = now(), update_time = now()
            WHERE id = $1
            """,
            row["id"],
            reason,
        )
        await insert_audit_event(
            conn,
            actor=actor,
            action="notification.dead",
            target=f"notification:{row['id']}",
            request_id=request_id,
            attributes={
                "channel": row["channel"],
                "template": row["template"],
                "error": reason,
                "attempts": str(row["attempts"]),
            },
        )

    async def report(
        self,
        reports: list[Report],
        *,
        max_attempts: int,
        backoff: Callable[[int], float],
        chat_spacing_s: float,
        actor: str,
        request_id: str,
    ) -> list[Applied]:
        """Apply a batch of reports atomically; StaleLeases if any names a lost lease."""
        ids = [r.notification_id for r in reports]
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT id, lease_id, channel, template, attempts, pace_key, due_time
                FROM notifications_outbox
                WHERE id = ANY($1::uuid[]) AND status = 'leased'
                ORDER BY id
                FOR UPDATE
                """,
                ids,
            )
            held = {r["id"]: r for r in rows}
            stale = [
                r.notification_id
                for r in reports
                if r.notification_id not in held
                or held[r.notification_id]["lease_id"] != r.lease_id
            ]
            if stale or len(set(ids)) != len(ids):
                raise StaleLeases(stale or ids)
            applied: list[Applied] = []
            for report in reports:
                row = held[report.notification_id]
                channel = Channel(row["channel"])
                if report.outcome is Outcome.DELIVERED:
                    await conn.execute(
                        """
                        UPDATE notifications_outbox SET
                            status = 'delivered', params = NULL, lease_id = NULL,
                            lease_expire_time = NULL, last_error = '', deliver_time = now(),
                            update_time = now()
                        WHERE id = $1
                        """,
                        row["id"],
                    )
                    final = Status.DELIVERED
                elif report.outcome is Outcome.RETRYABLE and row["attempts"] < max_attempts:
                    delay = max(backoff(row["attempts"]), report.retry_after_s)
                    await conn.execute(
                        """
                        UPDATE notifications_outbox SET
                            status = 'pending', lease_id = NULL, lease_expire_time = NULL,
                            last_error = $2,
                            next_attempt_time = now() + make_interval(secs => $3),
                            update_time = now()
                        WHERE id = $1
                        """,
                        row["id"],
                        report.error or "retryable",
                        delay,
                    )
                    final = Status.PENDING
                else:
                    reason = report.error or (
                        "permanent" if report.outcome is Outcome.PERMANENT else "retryable"
                    )
                    await self._kill(conn, row, reason, actor=actor, request_id=request_id)
                    final = Status.DEAD
                if report.send_age_s is not None and row["pace_key"] is not None:
                    # Pace the chat from when the send really started (it may have been late).
                    await conn.execute(
                        """
                        UPDATE notifications_pacing
                        SET next_time = GREATEST(next_time, now() + make_interval(secs => $2))
                        WHERE key = $1
                        """,
                        row["pace_key"],
                        chat_spacing_s - report.send_age_s,
                    )
                if report.retry_after_s > 0 and row["pace_key"] is not None:
                    # Telegram said wait: nothing goes to that chat before then, whoever sends.
                    await conn.execute(
                        """
                        INSERT INTO notifications_pacing (key, next_time)
                        VALUES ($1, now() + make_interval(secs => $2))
                        ON CONFLICT (key) DO UPDATE SET next_time = GREATEST(
                            notifications_pacing.next_time, EXCLUDED.next_time)
                        """,
                        row["pace_key"],
                        report.retry_after_s,
                    )
                applied.append(Applied(row["id"], channel, report.outcome, final, row["due_time"]))
            return applied

    async def kill_leased(
        self, notification_id: UUID, lease_id: UUID, reason: str, *, actor: str, request_id: str
    ) -> bool:
        """Dead-letter a notification the server itself cannot render."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                SELECT id, channel, template, attempts FROM notifications_outbox
                WHERE id = $1 AND lease_id = $2 FOR UPDATE
                """,
                notification_id,
                lease_id,
            )
            if row is None:
                return False
            await self._kill(conn, row, reason, actor=actor, request_id=request_id)
            return True

    async def queue_depth(self) -> dict[str, int]:
        """Rows not final: ``scheduled`` (pending, first due later: not_before), ``pending``
        (due, or waiting for a retry or their chat), ``leased``."""
        row = await self._pool.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'pending' AND due_time <= now()) AS pending,
                   count(*) FILTER (WHERE status = 'pending' AND due_time > now()) AS scheduled,
                   count(*) FILTER (WHERE status = 'leased') AS leased
            FROM notifications_outbox WHERE status IN ('pending', 'leased')
            """
        )
        assert row is not None
        return {"pending": row["pending"], "scheduled": row["scheduled"], "leased": row["leased"]}

    async def prune_pacing(self, older_than_s: float) -> int:
        """Forget chats not sent to for a while (their next_time is long past)."""
        result: str = await self._pool.execute(
            """
            DELETE FROM notifications_pacing
            WHERE key <> '*' AND next_time < now() - make_interval(secs => $1)
            """,
            older_than_s,
        )
        return int(result.split()[-1])

    # --- administration ------------------------------------------------------------------

    async def get(self, notification_id: UUID) -> OutboxEntry | None:
        row = await self._pool.fetchrow(
            f"SELECT {_ENTRY_COLUMNS} FROM notifications_outbox WHERE id = $1", notification_id
        )
        return _entry(row) if row is not None else None

    async def list_entries(
        self, status: Status | None, before: tuple[datetime, UUID] | None, limit: int
    ) -> list[OutboxEntry]:
        rows = await self._pool.fetch(
            f"""
            SELECT {_ENTRY_COLUMNS} FROM notifications_outbox
            WHERE ($1::text IS NULL OR status = $1)
              AND ($2::timestamptz IS NULL OR (create_time, id) < ($2, $3::uuid))
            ORDER BY create_time DESC, id DESC
            LIMIT $4
            """,
            str(status) if status is not None else None,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return [_entry(r) for r in rows]

    async def retry_dead(
        self, notification_id: UUID, *, actor: str, request_id: str
    ) -> tuple[OutboxEntry | None, bool, bool]:
        """(entry, was dead, params present); revives it only when dead with usable params."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                SELECT {_ENTRY_COLUMNS}, params IS NOT NULL AS has_params
                FROM notifications_outbox WHERE id = $1 FOR UPDATE
                """,
                notification_id,
            )
            if row is None:
                return None, False, False
            entry = _entry(row)
            if entry.status is not Status.DEAD:
                return entry, False, bool(row["has_params"])
            if TEMPLATES[entry.template].params and not row["has_params"]:
                return entry, True, False
            revived = await conn.fetchrow(
                f"""
                UPDATE notifications_outbox SET
                    status = 'pending', attempts = 0, next_attempt_time = now(), last_error = '',
                    due_time = now(), dead_time = NULL, update_time = now()
                WHERE id = $1
                RETURNING {_ENTRY_COLUMNS}
                """,
                notification_id,
            )
            assert revived is not None
            await insert_audit_event(
                conn,
                actor=actor,
                action="notification.retry",
                target=f"notification:{notification_id}",
                request_id=request_id,
                attributes={"channel": entry.channel.value, "template": entry.template},
            )
            return _entry(revived), True, True

    async def enqueue_audited(
        self, box: SecretBox, notice: Notice, *, actor: str, request_id: str, action: str
    ) -> tuple[OutboxEntry, bool]:
        """Enqueue (with an audit event when queued) and return the entry either way."""
        async with self._pool.acquire() as conn, conn.transaction():
            queued = await enqueue(conn, box, notice)
            row = await conn.fetchrow(
                f"SELECT {_ENTRY_COLUMNS} FROM notifications_outbox WHERE dedup_key = $1",
                notice.dedup_key,
            )
            assert row is not None
            entry = _entry(row)
            if queued:
                await insert_audit_event(
                    conn,
                    actor=actor,
                    action=action,
                    target=f"notification:{entry.id}",
                    request_id=request_id,
                    attributes={"channel": entry.channel.value, "template": entry.template},
                )
            return entry, queued

    async def user_exists(self, user_id: UUID) -> bool:
        found: bool = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM identity_users WHERE id = $1 AND delete_time IS NULL)",
            user_id,
        )
        return found
