"""Small helpers to call the real server from tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.identity.v1 import identity_pb2_grpc as pb_grpc

from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID, Secrets
from tests.support.telegram import signed_widget_payload

# Telegram ids unique within a run (and across runs sharing a database, by pid).
_ids = itertools.count(os.getpid() * 1000 + 1)


def next_telegram_id() -> int:
    return next(_ids)


Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Session:
    token: str
    user: pb.User

    @property
    def metadata(self) -> Metadata:
        return bearer(self.token)


class PatientSuperAdmin(grpc.aio.UnaryUnaryClientInterceptor):
    """Waits out RATE_LIMITED for the shared super admin's sessions only.

    Every test module's setup reads as the one configured super admin, so on a slow machine its
    read bucket can run dry between tests; what those calls test is never the limiter. Calls of
    every other principal (the rate-limit tests' included) see the limiter as it is."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        metadata = dict(client_call_details.metadata or ())
        token = metadata.get("authorization", "").removeprefix("Bearer ")
        deadline = time.monotonic() + 20
        while True:
            call = await continuation(client_call_details, request)
            if token not in self.tokens or await call.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                return call
            if time.monotonic() > deadline:
                return call
            await asyncio.sleep(random.uniform(0.05, 0.3))


class Api:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        secrets: Secrets,
        patient: PatientSuperAdmin | None = None,
    ) -> None:
        self.channel = channel
        self.secrets = secrets
        self._patient = patient
        self.auth = pb_grpc.AuthServiceStub(channel)
        self.admin = pb_grpc.AdminServiceStub(channel)

    async def login(self, telegram_user_id: int | None = None, name: str = "Test") -> Session:
        payload = signed_widget_payload(
            self.secrets.login_bot_token, telegram_user_id or next_telegram_id(), first_name=name
        )
        response = await self.auth.LoginWithTelegramWidget(
            pb.LoginWithTelegramWidgetRequest(**payload)
        )
        self.secrets.issued.append(response.session.token)
        if self._patient is not None and telegram_user_id == SUPER_ADMIN_TELEGRAM_ID:
            self._patient.tokens.add(response.session.token)
        return Session(response.session.token, response.user)

    def service(self, token: str, act_as: int | None = None) -> Metadata:
        md = bearer(token)
        if act_as is not None:
            md += (("x-telegram-user-id", str(act_as)),)
        return md


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in status_of(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError(f"no ErrorInfo in {error!r}")


def field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    for detail in status_of(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return [(v.field, v.reason) for v in bad.field_violations]
    return []
