"""gRPC servicers for notifications: proto <-> domain, nothing else."""

from __future__ import annotations

from uuid import UUID

from google.protobuf import duration_pb2
from switchboard.notifications.v1 import notifications_pb2 as pb
from switchboard.notifications.v1 import notifications_pb2_grpc as pb_grpc

from server.kernel.context import ServicerContext, current_call
from server.kernel.wire import to_timestamp
from server.notifications.model import Channel, OutboxEntry, Outcome, Report, Status
from server.notifications.service import LeasedNotice, NotificationsService

_CHANNELS = {Channel.TELEGRAM: pb.CHANNEL_TELEGRAM, Channel.EMAIL: pb.CHANNEL_EMAIL}
_CHANNELS_IN = {v: k for k, v in _CHANNELS.items()}
_STATUSES = {
    Status.PENDING: pb.NOTIFICATION_STATUS_PENDING,
    Status.LEASED: pb.NOTIFICATION_STATUS_LEASED,
    Status.DELIVERED: pb.NOTIFICATION_STATUS_DELIVERED,
    Status.DEAD: pb.NOTIFICATION_STATUS_DEAD,
}
_STATUSES_IN = {v: k for k, v in _STATUSES.items()}
_OUTCOMES_IN = {
    pb.DELIVERY_OUTCOME_DELIVERED: Outcome.DELIVERED,
    pb.DELIVERY_OUTCOME_RETRYABLE_FAILURE: Outcome.RETRYABLE,
    pb.DELIVERY_OUTCOME_PERMANENT_FAILURE: Outcome.PERMANENT,
}
# A dispatcher's retry_after or send duration beyond a day is nonsense; clamp, don't trust.
_MAX_DURATION_S = 86_400.0


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def _seconds(value: duration_pb2.Duration) -> float:
    return min(_MAX_DURATION_S, max(0.0, value.ToNanoseconds() / 1e9))


def leased_to_proto(notice: LeasedNotice) -> pb.LeasedNotification:
    row, rendered = notice.row, notice.rendered
    return pb.LeasedNotification(
        id=str(row.id),
        lease_id=str(row.lease_id),
        channel=_CHANNELS[row.channel],
        telegram_chat_id=row.chat_id or 0,
        bot=row.bot or "",
        email_address=row.email or "",
        subject=rendered.subject,
        body=rendered.body,
        disable_link_preview=not rendered.link_preview,
        attempt=row.attempt,
        send_delay=_duration(notice.send_delay_s),
        lease_expire_time=to_timestamp(row.lease_expire_time),
        language=rendered.language,
        template=row.template,
    )


def entry_to_proto(entry: OutboxEntry) -> pb.Notification:
    return pb.Notification(
        id=str(entry.id),
        dedup_key=entry.dedup_key,
        channel=_CHANNELS[entry.channel],
        template=entry.template,
        user_id=str(entry.user_id) if entry.user_id else "",
        telegram_chat_id=entry.chat_id or 0,
        bot=entry.bot or "",
        email_address=entry.email or "",
        language=entry.language,
        status=_STATUSES[entry.status],
        attempts=entry.attempts,
        next_attempt_time=to_timestamp(entry.next_attempt_time),
        last_error=entry.last_error,
        create_time=to_timestamp(entry.create_time),
        update_time=to_timestamp(entry.update_time),
        deliver_time=to_timestamp(entry.deliver_time),
        dead_time=to_timestamp(entry.dead_time),
    )


def report_from_proto(report: pb.DeliveryReport) -> Report:
    return Report(
        notification_id=UUID(report.notification_id),
        lease_id=UUID(report.lease_id),
        outcome=_OUTCOMES_IN[report.outcome],
        error=report.error,
        retry_after_s=_seconds(report.retry_after),
        send_duration_s=_seconds(report.send_duration)
        if report.HasField("send_duration")
        else None,
        send_age_s=_seconds(report.send_age) if report.HasField("send_age") else None,
    )


class NotificationApi(pb_grpc.NotificationServiceServicer):
    def __init__(self, service: NotificationsService) -> None:
        self._service = service

    async def LeaseNotifications(
        self, request: pb.LeaseNotificationsRequest, context: ServicerContext
    ) -> pb.LeaseNotificationsResponse:
        call = current_call()
        lease = await self._service.lease(request.max_items, call.principal, call.request_id)
        return pb.LeaseNotificationsResponse(
            notifications=[leased_to_proto(n) for n in lease.notices],
            next_lease_delay=_duration(lease.next_lease_delay_s),
        )

    async def ReportDelivery(
        self, request: pb.ReportDeliveryRequest, context: ServicerContext
    ) -> pb.ReportDeliveryResponse:
        call = current_call()
        await self._service.report(
            [report_from_proto(r) for r in request.reports], call.principal, call.request_id
        )
        return pb.ReportDeliveryResponse()


class NotificationAdminApi(pb_grpc.NotificationAdminServiceServicer):
    def __init__(self, service: NotificationsService) -> None:
        self._service = service

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: ServicerContext
    ) -> pb.ListNotificationsResponse:
        entries, token = await self._service.list_notifications(
            _STATUSES_IN.get(request.status), request.page_size, request.page_token
        )
        return pb.ListNotificationsResponse(
            notifications=[entry_to_proto(e) for e in entries], next_page_token=token
        )

    async def RetryNotification(
        self, request: pb.RetryNotificationRequest, context: ServicerContext
    ) -> pb.RetryNotificationResponse:
        call = current_call()
        entry = await self._service.retry(
            UUID(request.notification_id), call.principal, call.request_id
        )
        return pb.RetryNotificationResponse(notification=entry_to_proto(entry))

    async def SendAdminMessage(
        self, request: pb.SendAdminMessageRequest, context: ServicerContext
    ) -> pb.SendAdminMessageResponse:
        call = current_call()
        entry, queued = await self._service.send_admin_message(
            UUID(request.user_id),
            _CHANNELS_IN[request.channel],
            request.text,
            request.request_id,
            call.principal,
            call.request_id,
        )
        return pb.SendAdminMessageResponse(notification=entry_to_proto(entry), queued=queued)
