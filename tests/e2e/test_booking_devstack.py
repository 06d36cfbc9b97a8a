"""`make dev` seeds two booking masters through the public API, idempotently.

The real dev stack (embedded PostgreSQL and Redis, migrations, the server; no Envoy, no
workers): the masters exist once it is up, their availability shows free slots at once,
seeding again (a second run, a restart on the same data) makes nothing new.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from switchboard.booking.v1 import booking_pb2 as bpb
from switchboard.booking.v1 import booking_pb2_grpc as bpb_grpc
from switchboard.identity.v1 import identity_pb2 as ipb
from switchboard.identity.v1 import identity_pb2_grpc as ipb_grpc

from server.devstack import booking_seed
from server.devstack.stack import DevStack
from tests.support.devstack import dev_environ, dev_settings
from tests.support.stack import ROOT

pytestmark = pytest.mark.e2e


ENVIRON = dev_environ(
    SWITCHBOARD_DEV_NO_WORKERS="1",
    # An operator's own super admins stay super admins; the seed admin is added.
    SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS="123456789",
)


@pytest.fixture
def booking_served() -> None:
    domains = (ROOT / "configs" / "dev.yaml").read_text()
    if "booking" not in domains.split("domains:", 1)[1].split("\n", 1)[0]:
        pytest.skip("configs/dev.yaml does not enable the booking domain yet")


async def _availability(
    grpc_addr: str, masters: list[booking_seed.SeededMaster]
) -> dict[str, list[bpb.AvailableDay]]:
    async with grpc.aio.insecure_channel(
        grpc_addr, options=[("grpc.enable_http_proxy", 0)]
    ) as channel:
        login = await ipb_grpc.AuthServiceStub(channel).DevLogin(
            ipb.DevLoginRequest(telegram_user_id=700_000_099, display_name="Client")
        )
        metadata = (("authorization", f"Bearer {login.session.token}"),)
        booking = bpb_grpc.BookingServiceStub(channel)
        listed = await booking.ListMasters(bpb.ListMastersRequest(), metadata=metadata)
        assert sorted(m.display_name for m in listed.masters) == ["Алексей", "Марина"]
        # Two days ahead of UTC's date: a future day in any time zone, so no slot is past.
        start = datetime.now(UTC).date() + timedelta(days=2)
        out: dict[str, list[bpb.AvailableDay]] = {}
        for master in masters:
            response = await booking.GetAvailability(
                bpb.GetAvailabilityRequest(
                    master_id=master.master_id,
                    start_date=start.isoformat(),
                    end_date=(start + timedelta(days=6)).isoformat(),
                    service_id="haircut",
                ),
                metadata=metadata,
            )
            out[master.display_name] = list(response.days)
        return out


@pytest.mark.usefixtures("booking_served")
async def test_make_dev_seeds_two_masters_with_free_slots_once(tmp_path: Path) -> None:
    out = io.StringIO()
    dev = DevStack(dev_settings(tmp_path, startup_timeout=60.0), environ=ENVIRON, out=out)
    try:
        await asyncio.to_thread(dev.start)
        assert dev.seeded is not None, out.getvalue()
        assert [(m.display_name, m.created) for m in dev.seeded] == [
            ("Алексей", True),
            ("Марина", True),
        ]
        assert "[dev] booking masters: Алексей (created), Марина (created)" in out.getvalue()
        assert "Booking       masters Алексей, Марина" in dev.summary()
        ids = [m.master_id for m in dev.seeded]

        # Default hours (Mon-Sat 10:00-20:00, lunch 13-14): a week has free slots at once.
        days = await _availability(dev.settings.grpc_addr, dev.seeded)
        for name, week in days.items():
            assert len(week) == 7, name
            working = [d for d in week if not d.not_working]
            assert len(working) == 6, name
            assert all(len(d.slots) == 9 for d in working), name  # 10..20 minus lunch, 60 min
            assert working[0].slots[0].local_time == "10:00"

        # Seeding again makes nothing new and finds the same masters.
        again = await asyncio.to_thread(booking_seed.run_seed, dev.settings.grpc_addr)
        assert again is not None
        assert [(m.master_id, m.created) for m in again] == [(i, False) for i in ids]
        # The operator's own super admin is kept next to the seed admin.
        assert dev.server_env()["SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS"] == "123456789,700000000"
    finally:
        await asyncio.to_thread(dev.stop)

    # A restart on the same data finds them too.
    out = io.StringIO()
    second = DevStack(dev_settings(tmp_path, startup_timeout=60.0), environ=ENVIRON, out=out)
    try:
        await asyncio.to_thread(second.start)
        assert second.seeded is not None, out.getvalue()
        assert [(m.master_id, m.created) for m in second.seeded] == [(i, False) for i in ids]
        assert "Алексей (already there), Марина (already there)" in out.getvalue()
    finally:
        await asyncio.to_thread(second.stop)
