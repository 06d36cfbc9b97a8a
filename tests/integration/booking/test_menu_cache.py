"""GetAvailability's in-process copy of the menu: when it has expired, concurrent callers
reload it once, not once each (the service over the real database, counting the loads)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from server.booking.model import ServiceOption
from server.booking.repository import BookingRepository
from server.booking.service import BookingConfig, BookingService, ServiceChange
from server.kernel.errors import NotFound
from server.kernel.principal import Principal, ServicePrincipal
from server.notifications.model import Notice
from server.notifications.repository import withdraw_prefix
from tests.conftest import Platform


class CountingRepository(BookingRepository):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.menu_loads = 0

    async def list_services(
        self, after: tuple[int, str] | None, limit: int, *, active_only: bool
    ) -> list[ServiceOption]:
        self.menu_loads += 1
        return await super().list_services(after, limit, active_only=active_only)


async def _no_outbox(conn: asyncpg.Connection, notice: Notice) -> bool:
    raise AssertionError("availability notifies nobody")


async def test_an_expired_menu_is_reloaded_once_for_concurrent_callers(
    platform: Platform,
) -> None:
    pool = await asyncpg.create_pool(platform.pg_dsn, min_size=1, max_size=8)
    try:
        repo = CountingRepository(pool)
        service = BookingService(
            repo, BookingConfig(), outbox=_no_outbox, withdraw_prefix=withdraw_prefix
        )
        nobody = uuid.uuid4()

        async def call(service_id: str) -> str:
            try:
                await service.availability(nobody, "2030-01-07", "", service_id)
            except NotFound as exc:
                return exc.reason
            return "ok"

        # A fresh service holds no menu: 40 callers at once, one load.
        reasons = await asyncio.gather(*(call("haircut") for _ in range(40)))
        assert set(reasons) == {"MASTER_NOT_FOUND"}  # the menu said haircut is fine
        assert repo.menu_loads == 1
        # Within the TTL: served from the copy, unknown options refused without a load.
        assert await call("nope") == "SERVICE_NOT_FOUND"
        assert repo.menu_loads == 1
    finally:
        await pool.close()


async def test_a_change_during_a_reload_is_not_lost(platform: Platform) -> None:
    """UpdateServiceOption drops the copy; a reload already running then may have read the old
    menu, so it must not mark its copy fresh: the next call loads again."""
    pool = await asyncpg.create_pool(platform.pg_dsn, min_size=1, max_size=4)
    try:
        repo = CountingRepository(pool)
        service = BookingService(
            repo, BookingConfig(), outbox=_no_outbox, withdraw_prefix=withdraw_prefix
        )
        admin = Principal(service=ServicePrincipal("test-menu-cache"))
        loading = repo.list_services
        changes = 0

        async def load_then_change(
            after: tuple[int, str] | None, limit: int, *, active_only: bool
        ) -> list[ServiceOption]:
            nonlocal changes
            loaded = await loading(after, limit, active_only=active_only)
            if changes == 0:  # an admin's change commits after this load read the menu
                changes += 1
                await service.update_service(admin, "beard", ServiceChange(), "call-1")
            return loaded

        repo.list_services = load_then_change  # type: ignore[method-assign]

        async def call() -> None:
            with pytest.raises(NotFound, match="master"):
                await service.availability(uuid.uuid4(), "2030-01-07", "", "haircut")

        await call()
        assert repo.menu_loads == 1
        await call()  # the copy was stale from birth: loaded again
        assert repo.menu_loads == 2
        await call()  # that one is fresh
        assert repo.menu_loads == 2
    finally:
        await pool.close()
