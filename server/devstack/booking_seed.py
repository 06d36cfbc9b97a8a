"""Dev seed of the booking domain: two masters, so `make dev` shows availability at once.

Everything goes through the public gRPC API, as a client would do it: dev users are made with
``DevLogin`` (dev only), and a dev super admin (:data:`SEED_ADMIN_TELEGRAM_ID`, made one by the
dev stack through ``SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS``) calls ``CreateMaster`` with fixed
request ids. Running it again changes nothing: a master already there (``MASTER_EXISTS``, or the
same request id answered again) is looked up instead. No SQL, no shortcuts: a seed that works
is also a smoke test of the contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from uuid import UUID

import grpc
from google.rpc import error_details_pb2, status_pb2
from switchboard.booking.v1 import booking_pb2 as bpb
from switchboard.booking.v1 import booking_pb2_grpc as bpb_grpc
from switchboard.identity.v1 import identity_pb2 as ipb
from switchboard.identity.v1 import identity_pb2_grpc as ipb_grpc
from switchboard.options.v1.access_pb2 import ROLE_SUPER_ADMIN

__all__ = [
    "MASTERS",
    "SEED_ADMIN_TELEGRAM_ID",
    "SeedError",
    "SeedMaster",
    "SeededMaster",
    "seed_booking",
    "super_admin_ids",
]

#: The dev super admin who creates the masters (DevLogin with this Telegram id).
SEED_ADMIN_TELEGRAM_ID = 700000000
SEED_ADMIN_NAME = "Dev Admin"
SUPER_ADMIN_VARIABLE = "SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS"


@dataclass(frozen=True, slots=True)
class SeedMaster:
    telegram_user_id: int
    display_name: str
    request_id: UUID


MASTERS: tuple[SeedMaster, ...] = (
    SeedMaster(700000001, "Алексей", UUID("5eed0000-b00c-4000-8000-000000000001")),
    SeedMaster(700000002, "Марина", UUID("5eed0000-b00c-4000-8000-000000000002")),
)


@dataclass(frozen=True, slots=True)
class SeededMaster:
    master_id: str
    user_id: str
    display_name: str
    #: False when the master was there already (a later run of `make dev`).
    created: bool


class SeedError(RuntimeError):
    """The seed could not run (the server refused something it should have accepted)."""


def super_admin_ids(current: str) -> str:
    """``SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS`` with the seed admin added (kept once)."""
    ids = [part.strip() for part in current.split(",") if part.strip()]
    if str(SEED_ADMIN_TELEGRAM_ID) not in ids:
        ids.append(str(SEED_ADMIN_TELEGRAM_ID))
    return ",".join(ids)


def _reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _login(
    auth: ipb_grpc.AuthServiceAsyncStub, telegram_user_id: int, name: str, rpc_timeout: float
) -> ipb.DevLoginResponse:
    response: ipb.DevLoginResponse = await auth.DevLogin(
        ipb.DevLoginRequest(telegram_user_id=telegram_user_id, display_name=name),
        timeout=rpc_timeout,
    )
    return response


async def _masters_by_user(
    admin: bpb_grpc.BookingAdminServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    rpc_timeout: float,
) -> dict[str, bpb.Master]:
    found: dict[str, bpb.Master] = {}
    token = ""
    while True:
        page = await admin.ListAllMasters(
            bpb.ListAllMastersRequest(page_size=200, page_token=token),
            metadata=metadata,
            timeout=rpc_timeout,
        )
        found.update({master.user_id: master for master in page.masters})
        token = page.next_page_token
        if not token:
            return found


async def seed_booking(
    grpc_addr: str, *, masters: Sequence[SeedMaster] = MASTERS, rpc_timeout: float = 10.0
) -> list[SeededMaster] | None:
    """Make sure the dev masters exist; None when the server does not serve booking.

    Raises :class:`SeedError` when the server refuses what a dev server should accept, and
    ``grpc.aio.AioRpcError`` when it cannot be reached.
    """
    async with grpc.aio.insecure_channel(
        grpc_addr, options=[("grpc.enable_http_proxy", 0)]
    ) as channel:
        auth = ipb_grpc.AuthServiceStub(channel)
        admin = bpb_grpc.BookingAdminServiceStub(channel)
        try:
            admin_login = await _login(auth, SEED_ADMIN_TELEGRAM_ID, SEED_ADMIN_NAME, rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None  # not a Switchboard server with identity: nothing to seed
            raise SeedError(f"DevLogin: {exc.code().name} {_reason(exc) or exc.details()}") from exc
        sessions = [admin_login.session.token]
        try:
            if admin_login.user.role != ROLE_SUPER_ADMIN:
                raise SeedError(
                    f"the seed admin (Telegram id {SEED_ADMIN_TELEGRAM_ID}) is not a super "
                    f"admin: add it to {SUPER_ADMIN_VARIABLE}"
                )
            metadata = _bearer(admin_login.session.token)
            try:
                existing = await _masters_by_user(admin, metadata, rpc_timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return None  # the booking domain is not enabled on this server
                raise
            seeded: list[SeededMaster] = []
            for wanted in masters:
                login = await _login(
                    auth, wanted.telegram_user_id, wanted.display_name, rpc_timeout
                )
                sessions.append(login.session.token)
                master = existing.get(login.user.id)
                created = master is None
                if master is None:
                    master = await _create(admin, wanted, login.user.id, metadata, rpc_timeout)
                seeded.append(SeededMaster(master.id, master.user_id, master.display_name, created))
            return seeded
        finally:
            await _logout(auth, sessions, rpc_timeout)


async def _create(
    admin: bpb_grpc.BookingAdminServiceAsyncStub,
    wanted: SeedMaster,
    user_id: str,
    metadata: tuple[tuple[str, str], ...],
    rpc_timeout: float,
) -> bpb.Master:
    """CreateMaster with the seed's fixed request id (a retried call returns the same master;
    one made meanwhile by another run is MASTER_EXISTS and looked up)."""
    request = bpb.CreateMasterRequest(
        user_id=user_id, display_name=wanted.display_name, request_id=str(wanted.request_id)
    )
    try:
        response = await admin.CreateMaster(request, metadata=metadata, timeout=rpc_timeout)
    except grpc.aio.AioRpcError as exc:
        if _reason(exc) == "MASTER_EXISTS":
            master = (await _masters_by_user(admin, metadata, rpc_timeout)).get(user_id)
            if master is not None:
                return master
        raise SeedError(
            f"CreateMaster {wanted.display_name}: {exc.code().name} {_reason(exc) or exc.details()}"
        ) from exc
    created: bpb.Master = response.master
    return created


async def _logout(
    auth: ipb_grpc.AuthServiceAsyncStub, tokens: list[str], rpc_timeout: float
) -> None:
    """The seed's sessions are not needed afterwards: revoke them (best effort)."""
    for token in tokens:
        with suppress(grpc.aio.AioRpcError):
            await auth.Logout(ipb.LogoutRequest(), metadata=_bearer(token), timeout=rpc_timeout)


def run_seed(grpc_addr: str, *, rpc_timeout: float = 10.0) -> list[SeededMaster] | None:
    """:func:`seed_booking` from synchronous code (the dev stack's start)."""
    return asyncio.run(seed_booking(grpc_addr, rpc_timeout=rpc_timeout))
