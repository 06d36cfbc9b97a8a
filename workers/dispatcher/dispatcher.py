"""The dispatch loop: lease -> wait for each notification's slot -> send concurrently -> report.

* Leasing: asks for as many notifications as it has room for (``concurrency`` minus what it
  holds). When the server had fewer due, it waits the server's ``next_lease_delay`` (a freed
  slot does not make more due); when it has no room, it waits until a send frees some.
* Pacing is the server's: each notification comes with a ``send_delay``; the dispatcher never
  sends before it, so several dispatchers together keep the global and per-chat limits.
* Reports are batched: a reporter sends everything finished since its last call, at most every
  ``report_interval_s``. A STALE_LEASE refusal drops the named reports and resends the rest.
* Stopping (``stop`` set, e.g. SIGTERM): no new leases; notifications in hand are sent (their
  slots are at most the server's lease-ahead window away) and every report is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.protobuf import duration_pb2
from switchboard.notifications.v1 import notifications_pb2 as pb

from client.errors import error_details
from workers.dispatcher.senders import RETRYABLE, Router, SendResult

if TYPE_CHECKING:
    from switchboard.notifications.v1.notifications_pb2_grpc import (
        NotificationServiceAsyncStub,
    )

log = logging.getLogger("switchboard.dispatcher")

MAX_REPORT_BATCH = 500
# The server will not take this dispatcher's token: retrying cannot help, the operator must.
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class DispatcherRefused(Exception):
    """The server refused the dispatcher's credentials (wrong token or missing scope)."""


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return value


@dataclass
class DispatcherStats:
    leased: int = 0
    sent: int = 0
    failed: int = 0
    reported: int = 0
    stale: int = 0


class Dispatcher:
    def __init__(
        self,
        stub: NotificationServiceAsyncStub,
        router: Router,
        *,
        name: str = "",
        concurrency: int = 64,
        report_interval_s: float = 0.2,
        rpc_timeout_s: float = 10.0,
    ) -> None:
        self._stub = stub
        self._router = router
        self._name = name
        self._concurrency = concurrency
        self._report_interval = report_interval_s
        self._rpc_timeout = rpc_timeout_s
        self._in_hand: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        # Finished sends to report, with time.monotonic() when each send started.
        self._pending: list[tuple[pb.DeliveryReport, float]] = []
        self._have_reports = asyncio.Event()
        self.stats = DispatcherStats()

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        reporter = asyncio.create_task(self._report_loop())
        failures = 0
        try:
            while not stop.is_set():
                room = self._concurrency - len(self._in_hand)
                if room <= 0:
                    self._room.clear()
                    await _first(stop.wait(), self._room.wait())
                    continue
                try:
                    response = await self._stub.LeaseNotifications(
                        pb.LeaseNotificationsRequest(max_items=room, dispatcher=self._name),
                        timeout=self._rpc_timeout,
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in _REFUSED:
                        raise DispatcherRefused(exc.code().name) from None
                    failures += 1
                    details = error_details(exc)
                    wait = details.retry_delay or min(5.0, 0.2 * 2 ** min(failures, 5))
                    log.warning(
                        "lease failed",
                        extra={"code": exc.code().name, "reason": details.reason, "wait_s": wait},
                    )
                    await _sleep_or(stop, wait * random.uniform(0.8, 1.2))  # noqa: S311
                    continue
                failures = 0
                received = time.monotonic()
                for item in response.notifications:
                    send_at = received + item.send_delay.ToNanoseconds() / 1e9
                    task = asyncio.create_task(self._deliver(item, send_at))
                    self._in_hand.add(task)
                    task.add_done_callback(self._done)
                self.stats.leased += len(response.notifications)
                if len(response.notifications) < room:
                    delay = response.next_lease_delay.ToNanoseconds() / 1e9
                    await _sleep_or(stop, delay)
        finally:
            # Graceful: what is in hand is sent and reported; nothing new is leased.
            if self._in_hand:
                await asyncio.gather(*self._in_hand, return_exceptions=True)
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            await self._flush_all()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_hand.discard(task)
        self._room.set()

    async def _deliver(self, item: pb.LeasedNotification, send_at: float) -> None:
        delay = send_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sender = self._router.sender(item)
        send_started = time.monotonic()
        started = time.perf_counter()
        try:
            result = await sender.send(item)
        except Exception:  # a sender bug must not lose the report
            log.exception("sender failed", extra={"notification_id": item.id})
            result = SendResult(RETRYABLE, "sender_error")
        elapsed = time.perf_counter() - started
        if result.outcome == pb.DELIVERY_OUTCOME_DELIVERED:
            self.stats.sent += 1
        else:
            self.stats.failed += 1
            log.info(
                "send failed",
                extra={
                    "notification_id": item.id,
                    "error": result.error,
                    "attempt": item.attempt,
                    "retry_after_s": result.retry_after_s,
                },
            )
        report = pb.DeliveryReport(
            notification_id=item.id,
            lease_id=item.lease_id,
            outcome=result.outcome,
            error=result.error,
            send_duration=_duration(elapsed),
        )
        if result.retry_after_s > 0:
            report.retry_after.CopyFrom(_duration(result.retry_after_s))
        self._pending.append((report, send_started))
        self._have_reports.set()

    # --- reports -------------------------------------------------------------------------

    async def _report_loop(self) -> None:
        while True:
            await self._have_reports.wait()
            ok = await self._flush_once()
            await asyncio.sleep(self._report_interval if ok else 1.0)

    async def _flush_all(self) -> None:
        for _ in range(20):
            if not self._pending:
                return
            if not await self._flush_once():
                await asyncio.sleep(0.5)
        if self._pending:
            log.warning("reports not delivered at exit", extra={"count": len(self._pending)})

    async def _flush_once(self) -> bool:
        """Send one batch; False when it should be retried later."""
        entries = self._pending[:MAX_REPORT_BATCH]
        if not entries:
            self._have_reports.clear()
            return True
        now = time.monotonic()
        batch = []
        for report, send_started in entries:
            report.send_age.CopyFrom(_duration(now - send_started))
            batch.append(report)
        try:
            await self._stub.ReportDelivery(
                pb.ReportDeliveryRequest(reports=batch), timeout=self._rpc_timeout
            )
        except grpc.aio.AioRpcError as exc:
            details = error_details(exc)
            if details.reason == "STALE_LEASE":
                stale = set(details.metadata.get("notification_ids", "").split(","))
                kept = [e for e in entries if e[0].notification_id not in stale]
                self.stats.stale += len(batch) - len(kept)
                log.warning("stale leases dropped", extra={"count": len(batch) - len(kept)})
                if len(kept) == len(batch):  # nothing identifiable: drop the batch
                    kept = []
                self._pending[: len(batch)] = kept
                return True
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                log.error("reports refused as invalid", extra={"count": len(batch)})
                del self._pending[: len(batch)]
                return True
            log.warning("report failed", extra={"code": exc.code().name})
            return False
        del self._pending[: len(batch)]
        self.stats.reported += len(batch)
        if not self._pending:
            self._have_reports.clear()
        return True


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))


async def _first(*waits: object) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
