"""gRPC servicers for identity: proto <-> domain, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache

from switchboard.identity.v1 import channels_pb2 as channels_pb
from switchboard.identity.v1 import channels_pb2_grpc as channels_grpc
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.identity.v1 import identity_pb2_grpc as pb_grpc

from server.identity.model import (
    AuditEvent,
    ChannelView,
    CodePurpose,
    IssuedSession,
    TelegramChannel,
    User,
)
from server.identity.service import IdentityService
from server.kernel.access import role_to_proto
from server.kernel.context import ServicerContext, current_call
from server.kernel.wire import to_timestamp

_HANDSHAKE_STATES = {
    "pending": pb.HANDSHAKE_STATE_PENDING,
    "confirmed": pb.HANDSHAKE_STATE_CONFIRMED,
    "expired": pb.HANDSHAKE_STATE_EXPIRED,
}


# GetMe answers the same cached User object over and over: building its message (timestamp
# conversion is pure Python) once per User value is a measurable share of the call. Callers
# copy the result into their response and never mutate it.
@lru_cache(maxsize=4096)
def user_to_proto(user: User) -> pb.User:
    message = pb.User(
        id=str(user.id),
        display_name=user.display_name,
        username=user.username,
        email=user.email or "",
        role=role_to_proto(user.role),
        create_time=to_timestamp(user.create_time),
        last_login_time=to_timestamp(user.last_login_time),
        language=user.language or "",
    )
    if user.telegram_user_id is not None:
        message.telegram_user_id = user.telegram_user_id
    return message


def session_to_proto(session: IssuedSession) -> pb.Session:
    return pb.Session(token=session.token, expire_time=to_timestamp(session.expire_time))


def audit_to_proto(event: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        id=str(event.id),
        actor=event.actor,
        action=event.action,
        target=event.target,
        create_time=to_timestamp(event.create_time),
        request_id=event.request_id,
        attributes=event.attributes,
    )


def _widget_fields(request: pb.LoginWithTelegramWidgetRequest) -> dict[str, str]:
    """The widget's fields as Telegram signed them (absent ones stay out of the check)."""
    fields = {
        "id": str(request.id),
        "first_name": request.first_name,
        "last_name": request.last_name,
        "username": request.username,
        "photo_url": request.photo_url,
        "auth_date": str(request.auth_date),
        "hash": request.hash,
    }
    return {k: v for k, v in fields.items() if v != ""}


class AuthApi(pb_grpc.AuthServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def LoginWithTelegramWidget(
        self, request: pb.LoginWithTelegramWidgetRequest, context: ServicerContext
    ) -> pb.LoginWithTelegramWidgetResponse:
        user, session = await self._service.login_with_telegram_widget(
            _widget_fields(request), current_call().request_id
        )
        return pb.LoginWithTelegramWidgetResponse(
            session=session_to_proto(session), user=user_to_proto(user)
        )

    async def StartTelegramLogin(
        self, request: pb.StartTelegramLoginRequest, context: ServicerContext
    ) -> pb.StartTelegramLoginResponse:
        code, deep_link, handshake_token, expire_time = await self._service.start_telegram_login()
        return pb.StartTelegramLoginResponse(
            code=code,
            deep_link=deep_link,
            handshake_token=handshake_token,
            expire_time=to_timestamp(expire_time),
        )

    async def WaitTelegramLogin(
        self, request: pb.WaitTelegramLoginRequest, context: ServicerContext
    ) -> AsyncIterator[pb.WaitTelegramLoginResponse]:
        updates = self._service.wait_telegram_login(
            request.handshake_token, current_call().request_id
        )
        async for update in updates:
            response = pb.WaitTelegramLoginResponse(state=_HANDSHAKE_STATES[update.state])
            if update.session is not None and update.user is not None:
                response.session.CopyFrom(session_to_proto(update.session))
                response.user.CopyFrom(user_to_proto(update.user))
            yield response

    async def ConfirmTelegramLogin(
        self, request: pb.ConfirmTelegramLoginRequest, context: ServicerContext
    ) -> pb.ConfirmTelegramLoginResponse:
        call = current_call()
        user = await self._service.confirm_telegram_login(
            request.code, call.principal, request.display_name, request.username, call.request_id
        )
        return pb.ConfirmTelegramLoginResponse(user=user_to_proto(user))

    async def RequestEmailCode(
        self, request: pb.RequestEmailCodeRequest, context: ServicerContext
    ) -> pb.RequestEmailCodeResponse:
        call = current_call()
        expire_time, next_time = await self._service.request_email_code(
            request.email,
            CodePurpose.LOGIN,
            principal=call.principal,
            language=request.language,
            request_id=call.request_id,
        )
        return pb.RequestEmailCodeResponse(
            expire_time=to_timestamp(expire_time), next_request_time=to_timestamp(next_time)
        )

    async def VerifyEmailCode(
        self, request: pb.VerifyEmailCodeRequest, context: ServicerContext
    ) -> pb.VerifyEmailCodeResponse:
        user, session = await self._service.login_with_email_code(
            request.email, request.code, current_call().request_id
        )
        return pb.VerifyEmailCodeResponse(
            session=session_to_proto(session), user=user_to_proto(user)
        )

    async def DevLogin(
        self, request: pb.DevLoginRequest, context: ServicerContext
    ) -> pb.DevLoginResponse:
        user, session = await self._service.dev_login(
            request.telegram_user_id, request.display_name, current_call().request_id
        )
        return pb.DevLoginResponse(session=session_to_proto(session), user=user_to_proto(user))

    async def Logout(
        self, request: pb.LogoutRequest, context: ServicerContext
    ) -> pb.LogoutResponse:
        call = current_call()
        await self._service.logout(call.principal, call.request_id)
        return pb.LogoutResponse()

    async def GetMe(self, request: pb.GetMeRequest, context: ServicerContext) -> pb.GetMeResponse:
        user = await self._service.get_me(current_call().principal)
        return pb.GetMeResponse(user=user_to_proto(user))


class AdminApi(pb_grpc.AdminServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: ServicerContext
    ) -> pb.ListUsersResponse:
        users, next_token = await self._service.list_users(request.page_size, request.page_token)
        return pb.ListUsersResponse(
            users=[user_to_proto(u) for u in users], next_page_token=next_token
        )

    async def PromoteUser(
        self, request: pb.PromoteUserRequest, context: ServicerContext
    ) -> pb.PromoteUserResponse:
        call = current_call()
        user = await self._service.promote_user(call.principal, request.user_id, call.request_id)
        return pb.PromoteUserResponse(user=user_to_proto(user))

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: ServicerContext
    ) -> pb.DeleteUserResponse:
        call = current_call()
        await self._service.delete_user(call.principal, request.user_id, call.request_id)
        return pb.DeleteUserResponse()

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: ServicerContext
    ) -> pb.ListAuditEventsResponse:
        events, next_token = await self._service.list_audit_events(
            request.page_size, request.page_token, request.action
        )
        return pb.ListAuditEventsResponse(
            events=[audit_to_proto(e) for e in events], next_page_token=next_token
        )


_CHANNEL_KINDS = {
    "telegram": channels_pb.CHANNEL_KIND_TELEGRAM,
    "email": channels_pb.CHANNEL_KIND_EMAIL,
}


def channel_view_to_proto(view: ChannelView) -> channels_pb.Channel:
    return channels_pb.Channel(
        id=view.id,
        kind=_CHANNEL_KINDS[view.kind],
        telegram_chat_id=view.telegram_chat_id,
        bot=view.bot,
        email=view.email,
        create_time=to_timestamp(view.create_time),
        confirm_time=to_timestamp(view.confirm_time),
    )


def telegram_channel_to_proto(channel: TelegramChannel) -> channels_pb.Channel:
    return channels_pb.Channel(
        id=str(channel.id),
        kind=channels_pb.CHANNEL_KIND_TELEGRAM,
        telegram_chat_id=channel.chat_id,
        bot=channel.bot,
        create_time=to_timestamp(channel.create_time),
        confirm_time=to_timestamp(channel.confirm_time),
    )


class ChannelApi(channels_grpc.ChannelServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def StartTelegramChannelBinding(
        self, request: channels_pb.StartTelegramChannelBindingRequest, context: ServicerContext
    ) -> channels_pb.StartTelegramChannelBindingResponse:
        code, deep_link, expire_time = await self._service.start_telegram_channel_binding(
            current_call().principal
        )
        return channels_pb.StartTelegramChannelBindingResponse(
            code=code, deep_link=deep_link, expire_time=to_timestamp(expire_time)
        )

    async def ConfirmTelegramChannelBinding(
        self, request: channels_pb.ConfirmTelegramChannelBindingRequest, context: ServicerContext
    ) -> channels_pb.ConfirmTelegramChannelBindingResponse:
        call = current_call()
        channel, user = await self._service.confirm_telegram_channel_binding(
            call.principal, request.code, request.chat_id, request.bot, call.request_id
        )
        return channels_pb.ConfirmTelegramChannelBindingResponse(
            channel=telegram_channel_to_proto(channel), user=user_to_proto(user)
        )

    async def ListChannels(
        self, request: channels_pb.ListChannelsRequest, context: ServicerContext
    ) -> channels_pb.ListChannelsResponse:
        views, next_token = await self._service.list_channels(
            current_call().principal, request.page_size, request.page_token
        )
        return channels_pb.ListChannelsResponse(
            channels=[channel_view_to_proto(v) for v in views], next_page_token=next_token
        )

    async def DeleteChannel(
        self, request: channels_pb.DeleteChannelRequest, context: ServicerContext
    ) -> channels_pb.DeleteChannelResponse:
        call = current_call()
        await self._service.delete_channel(call.principal, request.channel_id, call.request_id)
        return channels_pb.DeleteChannelResponse()

    async def StartEmailVerification(
        self, request: channels_pb.StartEmailVerificationRequest, context: ServicerContext
    ) -> channels_pb.StartEmailVerificationResponse:
        call = current_call()
        expire_time, next_time = await self._service.request_email_code(
            request.email,
            CodePurpose.VERIFY,
            principal=call.principal,
            request_id=call.request_id,
        )
        return channels_pb.StartEmailVerificationResponse(
            expire_time=to_timestamp(expire_time), next_request_time=to_timestamp(next_time)
        )

    async def ConfirmEmailVerification(
        self, request: channels_pb.ConfirmEmailVerificationRequest, context: ServicerContext
    ) -> channels_pb.ConfirmEmailVerificationResponse:
        call = current_call()
        user = await self._service.confirm_email_verification(
            call.principal, request.email, request.code, call.request_id
        )
        return channels_pb.ConfirmEmailVerificationResponse(user=user_to_proto(user))

    async def SetLanguage(
        self, request: channels_pb.SetLanguageRequest, context: ServicerContext
    ) -> channels_pb.SetLanguageResponse:
        user = await self._service.set_language(current_call().principal, request.language)
        return channels_pb.SetLanguageResponse(user=user_to_proto(user))
