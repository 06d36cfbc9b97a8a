"""Helpers for the booking tests: stubs, masters, clients, a free slot, outbox rows."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import grpc
from google.protobuf import timestamp_pb2
from switchboard.booking.v1 import booking_pb2 as pb
from switchboard.booking.v1 import booking_pb2_grpc as pb_grpc

from server.kernel.crypto import SecretBox
from tests.support.api import Api, Session, error_info, next_telegram_id
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

TZ = ZoneInfo("Europe/Moscow")  # configs/test.yaml keeps the default shop time zone
PARAMS_PURPOSE = b"notifications:params"


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def local(day: date, hhmm: str) -> datetime:
    """The UTC instant of a local wall time of the shop."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


def working_day(ahead: int = 3) -> date:
    """A local Monday..Saturday at least ``ahead`` days from today (default working hours)."""
    day = datetime.now(TZ).date() + timedelta(days=ahead)
    while day.isoweekday() == 7:
        day += timedelta(days=1)
    return day


def reason_of(error: grpc.aio.AioRpcError) -> str:
    info = error_info(error)
    assert info.domain == "booking.switchboard.dev", info
    return str(info.reason)


@dataclass
class MasterUser:
    session: Session
    master: pb.Master


class Booking:
    """The three booking stubs on one channel, plus shortcuts."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.client = pb_grpc.BookingServiceStub(api.channel)
        self.masters = pb_grpc.MasterServiceStub(api.channel)
        self.admin = pb_grpc.BookingAdminServiceStub(api.channel)

    async def boss(self) -> Session:
        return await self.api.login(SUPER_ADMIN_TELEGRAM_ID, name="Boss")

    async def user(self, name: str = "Client") -> Session:
        return await self.api.login(next_telegram_id(), name=name)

    async def new_master(self, name: str = "Мастер", **fields: Any) -> MasterUser:
        session = await self.user(name)
        boss = await self.boss()
        response = await self.admin.CreateMaster(
            pb.CreateMasterRequest(
                user_id=session.user.id,
                display_name=name,
                request_id=str(uuid.uuid4()),
                **fields,
            ),
            metadata=boss.metadata,
        )
        return MasterUser(session, response.master)

    async def book(
        self,
        who: Session,
        master_id: str,
        start: datetime,
        service_id: str = "haircut",
        request_id: str | None = None,
    ) -> pb.Booking:
        response = await self.client.CreateBooking(
            pb.CreateBookingRequest(
                master_id=master_id,
                service_id=service_id,
                start_time=ts(start),
                request_id=request_id or str(uuid.uuid4()),
            ),
            metadata=who.metadata,
        )
        return response.booking

    async def slots(
        self, who: Session, master_id: str, day: date, service_id: str = ""
    ) -> list[str]:
        response = await self.client.GetAvailability(
            pb.GetAvailabilityRequest(
                master_id=master_id, start_date=day.isoformat(), service_id=service_id
            ),
            metadata=who.metadata,
        )
        assert len(response.days) == 1
        return [s.local_time for s in response.days[0].slots]


@dataclass(frozen=True)
class Queued:
    dedup_key: str
    template: str
    user_id: UUID | None
    bot: str | None
    status: str
    next_attempt_time: datetime
    params: dict[str, str]


async def outbox(dsn: str, data_key: str, booking_id: str) -> dict[str, Queued]:
    """The outbox rows of one booking by dedup key, params opened."""
    box = SecretBox.from_text(data_key)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT dedup_key, template, user_id, bot, status, next_attempt_time, params"
            " FROM notifications_outbox WHERE dedup_key LIKE $1",
            f"booking:{booking_id}:%",
        )
    finally:
        await conn.close()
    return {
        row["dedup_key"]: Queued(
            dedup_key=row["dedup_key"],
            template=row["template"],
            user_id=row["user_id"],
            bot=row["bot"],
            status=row["status"],
            next_attempt_time=row["next_attempt_time"],
            params=json.loads(box.open(row["params"], PARAMS_PURPOSE)),
        )
        for row in rows
    }


async def audit(dsn: str, target: str) -> list[tuple[str, str, dict[str, str]]]:
    """(actor, action, attributes) of the audit events naming ``target``, oldest first."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT actor, action, attributes::text FROM identity_audit_events"
            " WHERE target = $1 ORDER BY id",
            target,
        )
    finally:
        await conn.close()
    return [(r[0], r[1], json.loads(r[2])) for r in rows]
