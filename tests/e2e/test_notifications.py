"""Notifications end to end: an administrator sends a message to a user over REST (through
Envoy), a dispatcher delivers it to the user's confirmed Telegram chat on the fake Bot API, and
the REST listing shows it delivered. Own server and gateway on a fresh database, so that no
other test's notifications are delivered here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.envoy import run_gateway
from gateway.openapi import write_openapi
from gateway.testing import ensure_image
from tests.integration.notifications.conftest import (
    NotifyStack,
    in_process_dispatcher,
    notify_stack,
)
from tests.support.api import Api
from tests.support.fake_telegram import FakeBotApi
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID, Infra, Secrets

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def stack(stack_infra: Infra, secrets: Secrets, workdir: Path) -> AsyncIterator[NotifyStack]:
    async with notify_stack(stack_infra, secrets, workdir, "notify_e2e", {}) as running:
        yield running


@pytest.fixture(scope="module")
async def http(stack: NotifyStack, workdir: Path) -> AsyncIterator[httpx.AsyncClient]:
    image = ensure_image()
    openapi = write_openapi(image, workdir / "notify-openapi.json")
    host, _, port = stack.grpc_addr.rpartition(":")
    with run_gateway(
        upstream_host=host,
        upstream_port=int(port),
        descriptor_path=image,
        openapi_path=openapi,
        workdir=workdir / "notify-envoy",
    ) as gateway:
        async with httpx.AsyncClient(
            base_url=gateway.base_url, timeout=10, trust_env=False
        ) as client:
            yield client


async def test_admin_message_over_rest_reaches_the_users_chat(
    stack: NotifyStack, http: httpx.AsyncClient
) -> None:
    async with grpc.aio.insecure_channel(
        stack.grpc_addr, options=[("grpc.enable_http_proxy", 0)]
    ) as channel:
        api = Api(channel, stack.secrets)
        admin = await api.login(SUPER_ADMIN_TELEGRAM_ID, "Admin")
        someone = await api.login()
    headers = {"authorization": f"Bearer {admin.token}"}
    chat = 9_100_000 + uuid.uuid4().int % 100_000
    user = await stack.make_user(language="ru")
    await stack.bind_chat(user, chat)

    body = {
        "user_id": str(user),
        "channel": "CHANNEL_TELEGRAM",
        "text": "Plan <b>tonight</b>",
        "request_id": uuid.uuid4().hex,
    }
    sent = await http.post("/v1/admin/notifications:send", json=body, headers=headers)
    assert sent.status_code == 200, sent.text
    notification = sent.json()["notification"]
    assert sent.json()["queued"] is True
    assert notification["status"] == "NOTIFICATION_STATUS_PENDING"
    again = await http.post("/v1/admin/notifications:send", json=body, headers=headers)
    assert again.json()["notification"]["id"] == notification["id"]
    assert again.json().get("queued", False) is False

    denied = await http.post(
        "/v1/admin/notifications:send",
        json={**body, "request_id": uuid.uuid4().hex},
        headers={"authorization": f"Bearer {someone.token}"},
    )
    assert denied.status_code == 403

    async with (
        FakeBotApi() as fake,
        in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=1),
    ):
        message = await fake.wait_for_message(chat, timeout=10)
        await stack.wait_statuses("notifications.admin_message:", 1)
    assert message["text"] == "Plan &lt;b&gt;tonight&lt;/b&gt;"
    assert message["parse_mode"] == "HTML"

    listed = await http.get(
        "/v1/admin/notifications",
        params={"status": "NOTIFICATION_STATUS_DELIVERED", "page_size": 50},
        headers=headers,
    )
    assert listed.status_code == 200
    found = [n for n in listed.json()["notifications"] if n["id"] == notification["id"]]
    assert len(found) == 1
    assert found[0]["user_id"] == str(user)
    assert found[0]["attempts"] == 1


async def test_dispatcher_paths_over_rest(stack: NotifyStack, http: httpx.AsyncClient) -> None:
    token = {"authorization": f"Bearer {stack.secrets.dispatcher_token}"}
    leased = await http.post("/v1/notifications:lease", json={"max_items": 5}, headers=token)
    assert leased.status_code == 200, leased.text
    assert "nextLeaseDelay" in leased.json() or "next_lease_delay" in leased.json()
    stale = await http.post(
        "/v1/notifications:report",
        json={
            "reports": [
                {
                    "notification_id": str(uuid.uuid4()),
                    "lease_id": str(uuid.uuid4()),
                    "outcome": "DELIVERY_OUTCOME_DELIVERED",
                }
            ]
        },
        headers=token,
    )
    assert stale.status_code == 400  # FAILED_PRECONDITION maps to 400
    assert "STALE_LEASE" in stale.text
    anonymous = await http.post("/v1/notifications:lease", json={"max_items": 1})
    assert anonymous.status_code == 401
