"""The outbox through the real server: enqueue in a transaction, lease, report, pacing, expiry,
retries, dead letters; no dispatcher (the test plays it through the gRPC contract)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography.exceptions import InvalidTag
from switchboard.notifications.v1 import notifications_pb2 as pb
from switchboard.notifications.v1 import notifications_pb2_grpc as pb_grpc

from server.notifications import repository
from server.notifications.model import (
    PARAMS_PURPOSE,
    Channel,
    InvalidNotice,
    Notice,
    ToTelegramChat,
)
from tests.integration.notifications.conftest import NotifyStack, eventually, mail, tg, to_user
from tests.support.api import error_info

if TYPE_CHECKING:
    from switchboard.notifications.v1.notifications_pb2_grpc import (
        NotificationServiceAsyncStub,
    )


SERVER_ENV = {
    "SWITCHBOARD_NOTIFICATIONS_GLOBAL_RATE": "20",
    "SWITCHBOARD_NOTIFICATIONS_PER_CHAT_INTERVAL_S": "0.5",
    "SWITCHBOARD_NOTIFICATIONS_LEASE_S": "1",
    "SWITCHBOARD_NOTIFICATIONS_LEASE_AHEAD_S": "1",
}

_chats = iter(range(5_000_000, 6_000_000))


def key() -> str:
    return f"test:{uuid.uuid4()}"


async def lease_until(
    stub: NotificationServiceAsyncStub, wanted: set[str], timeout: float = 5.0
) -> dict[str, pb.LeasedNotification]:
    """Lease until every id in `wanted` came back; other leased items are reported delivered."""
    found: dict[str, pb.LeasedNotification] = {}
    deadline = time.monotonic() + timeout
    while not wanted <= set(found):
        assert time.monotonic() < deadline, f"not leased: {wanted - set(found)}"
        response = await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=50))
        others = []
        for item in response.notifications:
            if item.id in wanted:
                found[item.id] = item
            else:
                others.append(item)
        if others:
            await report(stub, others, pb.DELIVERY_OUTCOME_DELIVERED)
        if not response.notifications:
            await asyncio.sleep(0.05)
    return found


async def report(
    stub: NotificationServiceAsyncStub,
    items: list[pb.LeasedNotification],
    outcome: pb.DeliveryOutcome.ValueType,
    error: str = "",
    retry_after_s: float = 0,
) -> None:
    reports = []
    for item in items:
        r = pb.DeliveryReport(
            notification_id=item.id, lease_id=item.lease_id, outcome=outcome, error=error
        )
        if retry_after_s:
            r.retry_after.FromNanoseconds(int(retry_after_s * 1e9))
        reports.append(r)
    await stub.ReportDelivery(pb.ReportDeliveryRequest(reports=reports))


async def test_enqueue_rolled_back_leaves_nothing(stack: NotifyStack) -> None:
    k = key()
    async with stack.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        assert await repository.enqueue(conn, stack.box, tg(next(_chats), k))
        await tx.rollback()
    assert await stack.statuses(k) == {}


async def test_dedup_key_queues_once(stack: NotifyStack) -> None:
    k = key()
    assert await stack.enqueue(tg(next(_chats), k, "first"))
    assert not await stack.enqueue(tg(next(_chats), k, "second"))
    assert await stack.statuses(k) == {k: "pending"}


async def test_params_are_sealed_at_rest(stack: NotifyStack) -> None:
    k = key()
    await stack.enqueue(mail("sealed@example.com", k, "TOP-SECRET-TEXT"))
    row = await stack.row(k)
    assert b"TOP-SECRET-TEXT" not in row["params"]
    assert b"TOP-SECRET-TEXT" in stack.box.open(row["params"], PARAMS_PURPOSE)
    with pytest.raises(InvalidTag):
        stack.box.open(row["params"], b"another:purpose")


async def test_enqueue_rejects_bad_notices(stack: NotifyStack) -> None:
    bad = [
        Notice(ToTelegramChat(1), Channel.EMAIL, "notifications.admin_message", {"text": "x"}, key()),
        Notice(ToTelegramChat(1), Channel.TELEGRAM, "no.such.template", {}, key()),
        Notice(ToTelegramChat(1), Channel.TELEGRAM, "notifications.admin_message", {}, key()),
        Notice(ToTelegramChat(1), Channel.TELEGRAM, "identity.email_code", {"code": "1", "ttl_minutes": "1"}, key()),
        Notice(ToTelegramChat(1, language="de"), Channel.TELEGRAM, "notifications.admin_message", {"text": "x"}, key()),
        Notice(ToTelegramChat(1), Channel.TELEGRAM, "notifications.admin_message", {"text": "x"}, ""),
    ]  # fmt: skip
    for notice in bad:
        with pytest.raises(InvalidNotice):
            await stack.enqueue(notice)


async def test_lease_renders_language_and_escapes_html(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    chat = next(_chats)
    k1, k2, k3 = key(), key(), key()
    await stack.enqueue(tg(chat, k1, "<b>x</b> & y", language="fr"))
    await stack.enqueue(mail("Lang@example.com", k2, "<b>x</b>", language="ru"))
    code = Notice(
        mail("code@example.com", k3).recipient,
        Channel.EMAIL,
        "identity.email_code",
        {"code": "123456", "ttl_minutes": "10"},
        k3,
    )
    await stack.enqueue(code)
    ids = {str((await stack.row(k))["id"]): k for k in (k1, k2, k3)}
    leased = await lease_until(stub, set(ids))
    by_key = {ids[i]: item for i, item in leased.items()}

    telegram = by_key[k1]
    assert telegram.channel == pb.CHANNEL_TELEGRAM
    assert telegram.telegram_chat_id == chat
    assert telegram.bot == "login"
    assert telegram.body == "&lt;b&gt;x&lt;/b&gt; &amp; y"  # params escaped for HTML
    assert telegram.language == "fr"
    assert telegram.attempt == 1
    assert telegram.disable_link_preview

    email = by_key[k2]
    assert email.email_address == "Lang@example.com"
    assert email.body == "<b>x</b>"  # plain text mail: not escaped
    assert email.subject == "Сообщение от Switchboard"

    code_mail = by_key[k3]
    assert "123456" in code_mail.body
    assert "10" in code_mail.body
    assert code_mail.subject == "Your Switchboard code: 123456"
    await report(stub, list(leased.values()), pb.DELIVERY_OUTCOME_DELIVERED)
    for k in (k1, k2, k3):
        row = await stack.row(k)
        assert row["status"] == "delivered"
        assert row["params"] is None
        assert row["deliver_time"] is not None


async def test_report_twice_is_a_stale_lease(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    k = key()
    await stack.enqueue(tg(next(_chats), k))
    nid = str((await stack.row(k))["id"])
    item = (await lease_until(stub, {nid}))[nid]
    await report(stub, [item], pb.DELIVERY_OUTCOME_DELIVERED)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(stub, [item], pb.DELIVERY_OUTCOME_DELIVERED)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(caught.value)
    assert info.reason == "STALE_LEASE"
    assert info.metadata["notification_ids"] == nid


async def test_a_batch_with_a_stale_report_applies_nothing(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    k1, k2 = key(), key()
    await stack.enqueue(tg(next(_chats), k1))
    await stack.enqueue(tg(next(_chats), k2))
    ids = {str((await stack.row(k))["id"]) for k in (k1, k2)}
    leased = list((await lease_until(stub, ids)).values())
    forged = pb.LeasedNotification(id=leased[1].id, lease_id=str(uuid.uuid4()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(stub, [leased[0], forged], pb.DELIVERY_OUTCOME_DELIVERED)
    assert error_info(caught.value).metadata["notification_ids"] == leased[1].id
    statuses = await stack.statuses("test:")
    assert {statuses[k1], statuses[k2]} == {"leased"}
    await report(stub, leased, pb.DELIVERY_OUTCOME_DELIVERED)


async def test_an_expired_lease_is_leased_again_and_the_old_one_refused(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    k = key()
    await stack.enqueue(tg(next(_chats), k))
    nid = str((await stack.row(k))["id"])
    first = (await lease_until(stub, {nid}))[nid]
    # Nobody reports (a crashed dispatcher): the lease (1 s after the send slot) expires.
    again = (await lease_until(stub, {nid}, timeout=5))[nid]
    assert again.lease_id != first.lease_id
    assert again.attempt == 2
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(stub, [first], pb.DELIVERY_OUTCOME_DELIVERED)
    assert error_info(caught.value).reason == "STALE_LEASE"
    await report(stub, [again], pb.DELIVERY_OUTCOME_DELIVERED)
    assert (await stack.row(k))["status"] == "delivered"


async def test_retry_after_holds_back_the_chat(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    chat = next(_chats)
    k1, k2 = key(), key()
    await stack.enqueue(tg(chat, k1))
    nid = str((await stack.row(k1))["id"])
    item = (await lease_until(stub, {nid}))[nid]
    reported = time.monotonic()
    await report(stub, [item], pb.DELIVERY_OUTCOME_RETRYABLE_FAILURE, "telegram_429", 1.5)
    row = await stack.row(k1)
    assert row["status"] == "pending"
    assert row["last_error"] == "telegram_429"
    # Another notification to the same chat is not handed out before retry_after either.
    await stack.enqueue(tg(chat, k2))
    nid2 = str((await stack.row(k2))["id"])
    seen: set[str] = set()
    deadline = time.monotonic() + 8
    while seen != {nid, nid2}:  # a chat has one notification out at a time: loop
        assert time.monotonic() < deadline, seen
        response = await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=50))
        waited = time.monotonic() - reported
        for got in response.notifications:
            if got.id in (nid, nid2):
                seen.add(got.id)
                assert waited + got.send_delay.ToNanoseconds() / 1e9 >= 1.5 - 0.02
        if response.notifications:
            await report(stub, list(response.notifications), pb.DELIVERY_OUTCOME_DELIVERED)
        await asyncio.sleep(0.05)


async def test_retryable_failures_end_dead_with_an_audit_event(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    k = key()
    await stack.enqueue(mail("flaky@example.com", k))
    nid = str((await stack.row(k))["id"])
    for attempt in (1, 2, 3):  # max attempts 3 (FAST)
        item = (await lease_until(stub, {nid}, timeout=5))[nid]
        assert item.attempt == attempt
        await report(stub, [item], pb.DELIVERY_OUTCOME_RETRYABLE_FAILURE, "smtp_connect")
    row = await stack.row(k)
    assert row["status"] == "dead"
    assert row["last_error"] == "smtp_connect"
    assert row["params"] is None
    assert row["dead_time"] is not None
    events = [
        e for e in await stack.audit("notification.dead") if e["target"] == f"notification:{nid}"
    ]
    assert len(events) == 1
    assert events[0]["actor"] == "service:dispatcher"


async def test_permanent_failure_is_dead_at_once(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    k = key()
    await stack.enqueue(tg(next(_chats), k))
    nid = str((await stack.row(k))["id"])
    item = (await lease_until(stub, {nid}))[nid]
    await report(stub, [item], pb.DELIVERY_OUTCOME_PERMANENT_FAILURE, "telegram_403")
    row = await stack.row(k)
    assert (row["status"], row["attempts"], row["last_error"]) == ("dead", 1, "telegram_403")


async def test_a_user_recipient_resolves_to_the_confirmed_channel(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    chat = next(_chats)
    user = await stack.make_user(language="ru", email=f"{uuid.uuid4().hex}@example.com")
    await stack.bind_chat(user, chat)
    nobody = await stack.make_user()
    k1, k2, k3 = key(), key(), key()
    await stack.enqueue(to_user(user, Channel.TELEGRAM, k1))
    await stack.enqueue(to_user(user, Channel.EMAIL, k2))
    await stack.enqueue(to_user(nobody, Channel.TELEGRAM, k3))
    ids = {str((await stack.row(k))["id"]): k for k in (k1, k2)}
    leased = {ids[i]: item for i, item in (await lease_until(stub, set(ids))).items()}
    assert leased[k1].telegram_chat_id == chat
    assert leased[k1].language == "ru"
    assert leased[k2].email_address.endswith("@example.com")
    assert leased[k2].subject == "Сообщение от Switchboard"
    await report(stub, list(leased.values()), pb.DELIVERY_OUTCOME_DELIVERED)
    row = await stack.row(k3)
    assert (row["status"], row["last_error"]) == ("dead", "no_channel")


async def test_a_user_who_never_chose_a_language_gets_english(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    chat = next(_chats)
    user = await stack.make_user(email=f"{uuid.uuid4().hex}@example.com")
    assert await stack.pool.fetchval(
        "SELECT language FROM identity_users WHERE id = $1", user
    ) is None  # fmt: skip
    await stack.bind_chat(user, chat)
    k1, k2 = key(), key()
    await stack.enqueue(to_user(user, Channel.TELEGRAM, k1))
    await stack.enqueue(to_user(user, Channel.EMAIL, k2))
    ids = {str((await stack.row(k))["id"]): k for k in (k1, k2)}
    leased = {ids[i]: item for i, item in (await lease_until(stub, set(ids))).items()}
    assert (leased[k1].telegram_chat_id, leased[k1].language) == (chat, "en")
    assert leased[k2].language == "en"
    assert leased[k2].subject == "Message from Switchboard"
    await report(stub, list(leased.values()), pb.DELIVERY_OUTCOME_DELIVERED)


async def test_pacing_spaces_global_slots_and_chats(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    chat = next(_chats)
    prefix = f"pace:{uuid.uuid4()}:"
    for i in range(3):
        await stack.enqueue(tg(chat, f"{prefix}same:{i}"))
    for i in range(10):
        await stack.enqueue(tg(next(_chats), f"{prefix}other:{i}"))
    wanted = {str(r["id"]) for r in await stack.pool.fetch(
        "SELECT id FROM notifications_outbox WHERE dedup_key LIKE $1", prefix + "%")}  # fmt: skip
    sends: dict[str, tuple[float, int]] = {}  # id -> (absolute send time, chat)
    deadline = time.monotonic() + 8
    while not wanted <= set(sends):
        assert time.monotonic() < deadline
        response = await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=100))
        now = time.monotonic()
        for item in response.notifications:
            sends[item.id] = (now + item.send_delay.ToNanoseconds() / 1e9, item.telegram_chat_id)
        if response.notifications:
            await report(stub, list(response.notifications), pb.DELIVERY_OUTCOME_DELIVERED)
        await asyncio.sleep(response.next_lease_delay.ToNanoseconds() / 1e9)
    ours = sorted(t for i, (t, _) in sends.items() if i in wanted)
    # Global: 20/s -> slots at least 50 ms apart (lease round trips only add jitter upward
    # in absolute terms, so allow a few ms of measurement noise).
    gaps = [b - a for a, b in itertools.pairwise(ours)]
    assert min(gaps) >= 0.05 - 0.01, gaps
    same = sorted(t for i, (t, c) in sends.items() if i in wanted and c == chat)
    assert len(same) == 3
    assert all(b - a >= 0.5 - 0.01 for a, b in itertools.pairwise(same)), same


async def test_dispatch_rpcs_need_the_dispatch_scope(stack: NotifyStack) -> None:
    from tests.support.api import bearer

    async with grpc.aio.insecure_channel(stack.grpc_addr) as channel:
        plain = pb_grpc.NotificationServiceStub(channel)
        for metadata in ((), bearer(stack.secrets.plain_worker_token)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await plain.LeaseNotifications(
                    pb.LeaseNotificationsRequest(max_items=1), metadata=metadata
                )
            assert caught.value.code() in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            )


async def test_bad_reports_are_invalid_arguments(
    stub: NotificationServiceAsyncStub,
) -> None:
    bad = [
        pb.ReportDeliveryRequest(),
        pb.ReportDeliveryRequest(reports=[pb.DeliveryReport(notification_id="x", lease_id="y")]),
        pb.ReportDeliveryRequest(
            reports=[
                pb.DeliveryReport(
                    notification_id=str(uuid.uuid4()),
                    lease_id=str(uuid.uuid4()),
                    outcome=pb.DELIVERY_OUTCOME_DELIVERED,
                    error="Some Free Text with a body",
                )
            ]
        ),
    ]
    for request in bad:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ReportDelivery(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=0))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_notification_never_reported_dies_after_max_leases(
    stack: NotifyStack, stub: NotificationServiceAsyncStub
) -> None:
    # A dispatcher that crashes on it every time: leased max_attempts (3) times, never
    # reported; the next lease dead-letters it instead of handing it out forever.
    k = key()
    await stack.enqueue(tg(next(_chats), k))
    nid = str((await stack.row(k))["id"])
    for attempt in (1, 2, 3):
        item = (await lease_until(stub, {nid}, timeout=5))[nid]
        assert item.attempt == attempt

    async def dead() -> bool:
        await stub.LeaseNotifications(pb.LeaseNotificationsRequest(max_items=1))
        return bool((await stack.row(k))["status"] == "dead")

    await eventually(dead, timeout=5)
    row = await stack.row(k)
    assert row["last_error"] == "lease_expired"
    assert row["params"] is None
    assert any(e["target"] == f"notification:{nid}" for e in await stack.audit("notification.dead"))
