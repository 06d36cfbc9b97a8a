"""The administrators' side of the outbox: list (paged, filtered), retry a dead one, send a
message to a user (idempotent by request_id), who may call what, and the metrics."""

from __future__ import annotations

import asyncio
import secrets
import urllib.request
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from switchboard.notifications.v1 import notifications_pb2 as pb
from switchboard.notifications.v1 import notifications_pb2_grpc as pb_grpc

from server.notifications.model import Channel, Notice, ToTelegramChat
from tests.integration.notifications.conftest import NotifyStack, in_process_dispatcher, tg
from tests.support.api import Api, Session, error_info, field_violations
from tests.support.fake_telegram import FakeBotApi
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

if TYPE_CHECKING:
    from switchboard.notifications.v1.notifications_pb2_grpc import (
        NotificationAdminServiceAsyncStub,
    )


@pytest.fixture
async def admin(api: Api) -> Session:
    return await api.login(SUPER_ADMIN_TELEGRAM_ID, "Admin")


@pytest.fixture
def admin_stub(api: Api) -> NotificationAdminServiceAsyncStub:
    return pb_grpc.NotificationAdminServiceStub(api.channel)


async def _kill(stack: NotifyStack, dedup_key: str) -> None:
    await stack.pool.execute(
        """
        UPDATE notifications_outbox SET status = 'dead', dead_time = now(),
            last_error = 'telegram_403', params = NULL
        WHERE dedup_key = $1
        """,
        dedup_key,
    )


async def test_send_admin_message_is_idempotent_by_request_id(
    stack: NotifyStack, admin: Session, admin_stub: NotificationAdminServiceAsyncStub
) -> None:
    user = await stack.make_user(language="fr")
    request = pb.SendAdminMessageRequest(
        user_id=str(user),
        channel=pb.CHANNEL_TELEGRAM,
        text="Maintenance tonight",
        request_id=uuid.uuid4().hex,
    )
    first = await admin_stub.SendAdminMessage(request, metadata=admin.metadata)
    again = await admin_stub.SendAdminMessage(request, metadata=admin.metadata)
    assert first.queued
    assert not again.queued
    assert again.notification.id == first.notification.id
    assert first.notification.user_id == str(user)
    assert first.notification.status == pb.NOTIFICATION_STATUS_PENDING
    assert first.notification.template == "notifications.admin_message"
    events = await stack.audit("notification.admin_message")
    assert [e["target"] for e in events].count(f"notification:{first.notification.id}") == 1


async def test_send_to_an_unknown_user_is_not_found(
    admin: Session, admin_stub: NotificationAdminServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin_stub.SendAdminMessage(
            pb.SendAdminMessageRequest(
                user_id=str(uuid.uuid4()),
                channel=pb.CHANNEL_EMAIL,
                text="x",
                request_id=uuid.uuid4().hex,
            ),
            metadata=admin.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "USER_NOT_FOUND"


async def test_send_validates_its_request(
    admin: Session, admin_stub: NotificationAdminServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin_stub.SendAdminMessage(
            pb.SendAdminMessageRequest(user_id="nope", text="", request_id="x"),
            metadata=admin.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {f for f, _ in field_violations(caught.value)}
    assert {"user_id", "channel", "text", "request_id"} <= fields


async def test_list_pages_and_filters(
    stack: NotifyStack, admin: Session, admin_stub: NotificationAdminServiceAsyncStub
) -> None:
    prefix = f"list:{uuid.uuid4()}:"
    for i in range(5):
        await stack.enqueue(tg(8_000_000 + i, f"{prefix}{i}"))
    await _kill(stack, f"{prefix}0")
    seen: list[pb.Notification] = []
    token = ""
    while True:
        page = await admin_stub.ListNotifications(
            pb.ListNotificationsRequest(page_size=2, page_token=token), metadata=admin.metadata
        )
        assert len(page.notifications) <= 2
        seen.extend(page.notifications)
        token = page.next_page_token
        if not token:
            break
    ours = [n for n in seen if n.dedup_key.startswith(prefix)]
    assert len(ours) == 5
    assert len({n.id for n in seen}) == len(seen)  # no duplicates across pages
    stamps = [n.create_time.ToNanoseconds() for n in seen]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    dead = await admin_stub.ListNotifications(
        pb.ListNotificationsRequest(status=pb.NOTIFICATION_STATUS_DEAD, page_size=200),
        metadata=admin.metadata,
    )
    assert all(n.status == pb.NOTIFICATION_STATUS_DEAD for n in dead.notifications)
    assert f"{prefix}0" in {n.dedup_key for n in dead.notifications}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin_stub.ListNotifications(
            pb.ListNotificationsRequest(page_token="garbage!"), metadata=admin.metadata
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_retry_revives_a_dead_notification_only(
    stack: NotifyStack, admin: Session, admin_stub: NotificationAdminServiceAsyncStub
) -> None:
    prefix = f"retry:{uuid.uuid4()}:"
    kept, wiped, alive = f"{prefix}kept", f"{prefix}wiped", f"{prefix}alive"
    # A template without parameters can be sent again after death; one with parameters
    # cannot (they were wiped when it died).
    await stack.enqueue(
        Notice(
            ToTelegramChat(8_100_000), Channel.TELEGRAM, "identity.telegram_channel_bound", {}, kept
        )
    )
    await stack.enqueue(tg(8_100_001, wiped))
    await stack.enqueue(tg(8_100_002, alive))
    await _kill(stack, kept)
    await _kill(stack, wiped)
    ids = {k: str((await stack.row(k))["id"]) for k in (kept, wiped, alive)}

    revived = await admin_stub.RetryNotification(
        pb.RetryNotificationRequest(notification_id=ids[kept]), metadata=admin.metadata
    )
    assert revived.notification.status == pb.NOTIFICATION_STATUS_PENDING
    assert revived.notification.attempts == 0
    assert (await stack.row(kept))["dead_time"] is None
    assert any(
        e["target"] == f"notification:{ids[kept]}" for e in await stack.audit("notification.retry")
    )

    for k, reason in ((wiped, "PARAMS_WIPED"), (alive, "NOT_DEAD")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin_stub.RetryNotification(
                pb.RetryNotificationRequest(notification_id=ids[k]), metadata=admin.metadata
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(caught.value).reason == reason
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin_stub.RetryNotification(
            pb.RetryNotificationRequest(notification_id=str(uuid.uuid4())),
            metadata=admin.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_only_admins_and_not_the_dispatcher(
    api: Api, admin_stub: NotificationAdminServiceAsyncStub, stack: NotifyStack
) -> None:
    user = await api.login()
    dispatcher = api.service(stack.secrets.dispatcher_token)
    for metadata in ((), user.metadata, dispatcher):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin_stub.ListNotifications(pb.ListNotificationsRequest(), metadata=metadata)
        assert caught.value.code() in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        )
    # ...and an admin may not lease (that is the dispatcher's scope).
    admin = await api.login(SUPER_ADMIN_TELEGRAM_ID, "Admin")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.NotificationServiceStub(api.channel).LeaseNotifications(
            pb.LeaseNotificationsRequest(max_items=1), metadata=admin.metadata
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _scrape(stack: NotifyStack) -> str:
    url = f"http://{stack.env['SWITCHBOARD_METRICS_ADDR']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _sent_total(text: str, channel: str, result: str) -> float:
    """notifications_sent_total{channel, result} in a scrape (0 if not yet there)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "notifications_sent_total"
                and sample.labels.get("channel") == channel
                and sample.labels.get("result") == result
            ):
                return float(sample.value)
    return 0.0


async def _delivered_rows(stack: NotifyStack) -> int:
    count: int = await stack.pool.fetchval(
        "SELECT count(*) FROM notifications_outbox"
        " WHERE channel = 'telegram' AND status = 'delivered'"
    )
    return count


async def test_metrics_are_exported(stack: NotifyStack) -> None:
    text = ""
    for _ in range(40):  # the queue depth gauge is refreshed in the background
        text = await asyncio.to_thread(_scrape, stack)
        if 'notifications_queue_depth{status="pending"}' in text:
            break
        await asyncio.sleep(0.25)
    assert 'notifications_queue_depth{status="pending"}' in text
    assert "# TYPE notifications_sent_total counter" in text
    assert "# TYPE notifications_send_latency_seconds histogram" in text


async def test_a_delivered_telegram_notice_is_counted(stack: NotifyStack) -> None:
    before = _sent_total(await asyncio.to_thread(_scrape, stack), "telegram", "delivered")
    rows_before = await _delivered_rows(stack)
    chat = 8_000_000 + secrets.randbelow(999_999)
    key = f"metrics:{uuid.uuid4()}"
    await stack.enqueue(tg(chat, key, "counted"))
    fake = FakeBotApi()
    await fake.start()
    try:
        async with in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=1):
            await stack.wait_statuses(key, 1)
        assert [m["text"] for m in fake.sent_messages(chat)] == ["counted"]
    finally:
        await fake.stop()
    # The dispatcher is stopped: nothing more is delivered. Every telegram notice delivered
    # meanwhile (ours, and any left pending by earlier tests of this module) is counted once.
    delivered = await _delivered_rows(stack) - rows_before
    assert delivered >= 1
    after = before
    for _ in range(40):  # the counter moves once the report's transaction has committed
        after = _sent_total(await asyncio.to_thread(_scrape, stack), "telegram", "delivered")
        if after - before >= delivered:
            break
        await asyncio.sleep(0.1)
    assert after - before == delivered
