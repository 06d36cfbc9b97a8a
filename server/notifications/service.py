"""Notifications use cases: leasing rendered notifications, applying delivery reports,
administration (list, retry, send), and the queue-depth gauge."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from cryptography.exceptions import InvalidTag
from prometheus_client import Counter, Gauge, Histogram

from server.kernel import paging
from server.kernel.crypto import SecretBox
from server.kernel.errors import FailedPrecondition, NotFound
from server.kernel.principal import Principal
from server.notifications.model import (
    DOMAIN,
    PARAMS_PURPOSE,
    Channel,
    LeasedRow,
    Notice,
    OutboxEntry,
    Outcome,
    Pacing,
    Rendered,
    Report,
    Status,
    ToUser,
    backoff_s,
    decode_params,
    render,
)
from server.notifications.repository import NotificationsRepository, StaleLeases

log = logging.getLogger(__name__)

SENT = Counter(
    "notifications_sent_total",
    "Delivery outcomes reported by dispatchers.",
    ["channel", "result"],
)
DEAD = Counter(
    "notifications_dead_total",
    "Notifications dead-lettered (after a permanent failure or too many attempts).",
    ["channel", "reason"],
)
QUEUE_DEPTH = Gauge(
    "notifications_queue_depth",
    "Notifications not yet final, by status: scheduled (not yet due), pending, leased"
    " (the whole outbox, as seen by this replica).",
    ["status"],
)
SEND_LATENCY = Histogram(
    "notifications_send_latency_seconds",
    "How long one send took (Bot API call or SMTP session), as measured by the dispatcher.",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_DELAY = Histogram(
    "notifications_delivery_delay_seconds",
    "From first due (enqueue, or a scheduled notice's not_before) to the delivered report"
    " (queueing, pacing, retries and the send).",
    ["channel"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)

_RESULTS = {
    Outcome.DELIVERED: "delivered",
    Outcome.RETRYABLE: "retryable_failure",
    Outcome.PERMANENT: "permanent_failure",
}

# Bounds of the delay a lease response suggests before the next lease.
MIN_LEASE_DELAY_S = 0.02
MAX_LEASE_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    global_rate: float = 30.0
    per_chat_interval_s: float = 1.0
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0
    lease_s: float = 30.0
    lease_ahead_s: float = 1.0
    depth_interval_s: float = 5.0
    # Pacing rows of chats idle this long are pruned.
    pacing_retention_s: float = 3600.0

    @property
    def pacing(self) -> Pacing:
        return Pacing.from_limits(self.global_rate, self.per_chat_interval_s, self.lease_ahead_s)


@dataclass(frozen=True, slots=True)
class LeasedNotice:
    row: LeasedRow
    rendered: Rendered
    send_delay_s: float


@dataclass(frozen=True, slots=True)
class Lease:
    notices: list[LeasedNotice]
    next_lease_delay_s: float


class NotificationsService:
    def __init__(
        self, repository: NotificationsRepository, box: SecretBox, config: NotificationsConfig
    ) -> None:
        self._repo = repository
        self._box = box
        self._config = config

    # --- dispatch ------------------------------------------------------------------------

    async def lease(self, max_items: int, principal: Principal, request_id: str) -> Lease:
        config = self._config
        batch = await self._repo.lease(
            max_items=max_items,
            pacing=config.pacing,
            lease_s=config.lease_s,
            max_attempts=config.max_attempts,
            actor=principal.label(),
            request_id=request_id,
        )
        for death in batch.dead:
            DEAD.labels(death.channel.value, death.reason).inc()
        notices: list[LeasedNotice] = []
        for row in batch.rows:
            rendered = self._render(row)
            if rendered is None:
                await self._repo.kill_leased(
                    row.id,
                    row.lease_id,
                    "render_failed",
                    actor=principal.label(),
                    request_id=request_id,
                )
                DEAD.labels(row.channel.value, "render_failed").inc()
                continue
            # Relative to now, not to the transaction's start: the time the lease took (locks,
            # queries, rendering) must not shift the send slots this response hands out.
            spent = time.monotonic() - batch.clock
            delay = max(0.0, (row.send_time - batch.now).total_seconds() - spent)
            notices.append(LeasedNotice(row, rendered, delay))
        wait = (batch.next_lease_time - batch.now).total_seconds()
        return Lease(notices, min(MAX_LEASE_DELAY_S, max(MIN_LEASE_DELAY_S, wait)))

    def _render(self, row: LeasedRow) -> Rendered | None:
        try:
            params = (
                decode_params(self._box.open(row.sealed_params, PARAMS_PURPOSE))
                if row.sealed_params is not None
                else {}
            )
            return render(row.template, row.language, row.channel, params)
        except (InvalidTag, ValueError, KeyError):
            # Another data key, a tampered value or a template removed since: never sendable.
            log.warning("notification cannot be rendered", extra={"notification_id": str(row.id)})
            return None

    async def report(self, reports: list[Report], principal: Principal, request_id: str) -> None:
        config = self._config

        def backoff(attempts: int) -> float:
            return backoff_s(attempts, config.backoff_base_s, config.backoff_cap_s)

        try:
            applied = await self._repo.report(
                reports,
                max_attempts=config.max_attempts,
                backoff=backoff,
                chat_spacing_s=config.pacing.chat_spacing_s,
                actor=principal.label(),
                request_id=request_id,
            )
        except StaleLeases as exc:
            raise FailedPrecondition(
                "STALE_LEASE",
                "a report names a lease that is no longer held; nothing was applied",
                domain=DOMAIN,
                metadata={"notification_ids": ",".join(str(i) for i in exc.ids)},
            ) from None
        now = datetime.now(UTC)
        by_id = {r.notification_id: r for r in reports}
        for item in applied:
            channel = item.channel.value
            SENT.labels(channel, _RESULTS[item.outcome]).inc()
            duration = by_id[item.id].send_duration_s
            if duration is not None:
                SEND_LATENCY.labels(channel).observe(duration)
            if item.final_status is Status.DELIVERED:
                DELIVERY_DELAY.labels(channel).observe((now - item.due_time).total_seconds())
            elif item.final_status is Status.DEAD:
                DEAD.labels(channel, by_id[item.id].error or item.outcome.value).inc()
                log.info(
                    "notification dead-lettered",
                    extra={"notification_id": str(item.id), "error": by_id[item.id].error},
                )

    # --- administration ------------------------------------------------------------------

    async def list_notifications(
        self, status: Status | None, page_size: int, page_token: str
    ) -> tuple[list[OutboxEntry], str]:
        cursor = paging.decode(page_token)
        before: tuple[datetime, UUID] | None = None
        if cursor is not None:
            try:
                before = (datetime.fromisoformat(cursor["t"]), UUID(cursor["id"]))
                if cursor.get("s") != (status.value if status else ""):
                    raise ValueError("filter changed")
            except (KeyError, ValueError, TypeError):
                raise paging.invalid_token(
                    "page_token is not a token this API returned for this filter"
                ) from None
        size = paging.page_size(page_size)
        entries = await self._repo.list_entries(status, before, size + 1)
        next_token = ""
        if len(entries) > size:
            entries = entries[:size]
            last = entries[-1]
            next_token = paging.encode(
                {
                    "t": last.create_time.isoformat(),
                    "id": str(last.id),
                    "s": status.value if status else "",
                }
            )
        return entries, next_token

    async def retry(
        self, notification_id: UUID, principal: Principal, request_id: str
    ) -> OutboxEntry:
        entry, was_dead, has_params = await self._repo.retry_dead(
            notification_id, actor=principal.label(), request_id=request_id
        )
        if entry is None:
            raise NotFound("NOTIFICATION_NOT_FOUND", "no such notification", domain=DOMAIN)
        if not was_dead:
            raise FailedPrecondition(
                "NOT_DEAD", f"the notification is {entry.status.value}, not dead", domain=DOMAIN
            )
        if not has_params:
            raise FailedPrecondition(
                "PARAMS_WIPED",
                "the notification's parameters were wiped when it died; send it again",
                domain=DOMAIN,
            )
        return entry

    async def send_admin_message(
        self,
        user_id: UUID,
        channel: Channel,
        text: str,
        client_request_id: str,
        principal: Principal,
        request_id: str,
    ) -> tuple[OutboxEntry, bool]:
        if not await self._repo.user_exists(user_id):
            raise NotFound("USER_NOT_FOUND", "no such user", domain=DOMAIN)
        admin = principal.user.user_id if principal.user is not None else principal.label()
        notice = Notice(
            recipient=ToUser(user_id),
            channel=channel,
            template="notifications.admin_message",
            params={"text": text},
            dedup_key=f"notifications.admin_message:{admin}:{client_request_id}",
        )
        try:
            return await self._repo.enqueue_audited(
                self._box,
                notice,
                actor=principal.label(),
                request_id=request_id,
                action="notification.admin_message",
            )
        except asyncpg.ForeignKeyViolationError:  # the user vanished meanwhile
            raise NotFound("USER_NOT_FOUND", "no such user", domain=DOMAIN) from None

    # --- background ----------------------------------------------------------------------

    async def maintain(self) -> None:
        """Refresh the queue-depth gauge and prune idle chat pacing rows, until cancelled."""
        rounds = 0
        while True:
            try:
                for status, count in (await self._repo.queue_depth()).items():
                    QUEUE_DEPTH.labels(status).set(count)
                if rounds % 60 == 0:  # every 5 minutes at the default interval
                    await self._repo.prune_pacing(self._config.pacing_retention_s)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The health monitor reports PostgreSQL; the gauge just keeps its last value.
                log.warning("notifications maintenance failed", extra={"error": type(exc).__name__})
            rounds += 1
            await asyncio.sleep(self._config.depth_interval_s)
