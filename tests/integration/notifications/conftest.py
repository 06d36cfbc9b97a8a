"""A notifications stack per test module: a fresh database, a server configured for the
module (fast retries, small limits), a pool to look at the outbox, and dispatcher helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess  # nosec B404
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
import grpc
import pytest
from switchboard.notifications.v1 import notifications_pb2_grpc as pb_grpc

from client.channel import connect
from server.devstack.processes import ServerProcess
from server.kernel.crypto import SecretBox
from server.notifications import repository
from server.notifications.model import Channel, Notice, ToEmail, ToTelegramChat, ToUser
from tests.support.api import Api
from tests.support.fake_telegram import FakeBotApi
from tests.support.smtp import SmtpCapture
from tests.support.stack import ROOT, Infra, Secrets, migrate, server_env, start_server
from workers.dispatcher.dispatcher import Dispatcher
from workers.dispatcher.senders import Router, SmtpConfig, SmtpSender, TelegramSender

if TYPE_CHECKING:
    from switchboard.notifications.v1.notifications_pb2_grpc import (
        NotificationServiceAsyncStub,
    )


# Defaults for these tests: quick retries and leases, limits small enough to observe.
FAST = {
    "SWITCHBOARD_NOTIFICATIONS_GLOBAL_RATE": "40",
    "SWITCHBOARD_NOTIFICATIONS_PER_CHAT_INTERVAL_S": "0.3",
    "SWITCHBOARD_NOTIFICATIONS_MAX_ATTEMPTS": "3",
    "SWITCHBOARD_NOTIFICATIONS_BACKOFF_BASE_S": "0.1",
    "SWITCHBOARD_NOTIFICATIONS_BACKOFF_CAP_S": "0.3",
    "SWITCHBOARD_NOTIFICATIONS_LEASE_S": "2",
    "SWITCHBOARD_NOTIFICATIONS_LEASE_AHEAD_S": "0.5",
}


@dataclass
class NotifyStack:
    infra: Infra
    secrets: Secrets
    pg_dsn: str
    env: dict[str, str]
    server: ServerProcess
    workdir: Path
    pool: asyncpg.Pool
    box: SecretBox
    names: list[str] = field(default_factory=list)

    @property
    def grpc_addr(self) -> str:
        return self.server.grpc_addr

    def dispatcher_channel(self) -> grpc.aio.Channel:
        return connect(
            self.grpc_addr,
            service_token=self.secrets.dispatcher_token,
            options=[("grpc.enable_http_proxy", 0)],
        )

    async def enqueue(self, notice: Notice) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await repository.enqueue(conn, self.box, notice)

    async def row(self, dedup_key: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM notifications_outbox WHERE dedup_key = $1", dedup_key
        )
        assert row is not None, dedup_key
        return row

    async def statuses(self, prefix: str) -> dict[str, str]:
        rows = await self.pool.fetch(
            "SELECT dedup_key, status FROM notifications_outbox WHERE dedup_key LIKE $1",
            prefix + "%",
        )
        return {r["dedup_key"]: r["status"] for r in rows}

    async def wait_statuses(
        self, prefix: str, count: int, status: str = "delivered", timeout: float = 15.0
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.statuses(prefix)
            if sum(1 for s in found.values() if s == status) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"wanted {count} {status} under {prefix!r}, have {found}")
            await asyncio.sleep(0.05)

    async def make_user(self, *, language: str | None = None, email: str | None = None) -> UUID:
        """A user; ``language`` None: one who never chose a language (as sign-ups start)."""
        user_id: UUID = await self.pool.fetchval(
            """
            INSERT INTO identity_users (display_name, email, email_verify_time, language)
            VALUES ('N', $1::text, CASE WHEN $1::text IS NULL THEN NULL ELSE now() END, $2)
            RETURNING id
            """,
            email,
            language,
        )
        return user_id

    async def bind_chat(self, user_id: UUID, chat_id: int, bot: str = "login") -> None:
        await self.pool.execute(
            """
            INSERT INTO identity_telegram_channels (user_id, chat_id, bot, confirm_time)
            VALUES ($1, $2, $3, now())
            """,
            user_id,
            chat_id,
            bot,
        )

    async def audit(self, action: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT * FROM identity_audit_events WHERE action = $1 ORDER BY id", action
        )
        return rows


@contextlib.asynccontextmanager
async def notify_stack(
    infra: Infra, secrets: Secrets, workdir: Path, name: str, overrides: dict[str, str]
) -> AsyncIterator[NotifyStack]:
    dsn = infra.fresh_database(name)
    migrate(dsn, workdir / f"{name}-migrate.log")
    env = {**server_env(dsn, infra.redis.url, secrets), **FAST, **overrides}
    server = start_server(env, workdir / f"{name}-server.log")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=5)
    try:
        yield NotifyStack(
            infra, secrets, dsn, env, server, workdir, pool, SecretBox.from_text(secrets.data_key)
        )
    finally:
        await pool.close()
        server.terminate()


@pytest.fixture(scope="module")
async def stack(
    request: pytest.FixtureRequest, stack_infra: Infra, secrets: Secrets, workdir: Path
) -> AsyncIterator[NotifyStack]:
    overrides: dict[str, str] = getattr(request.module, "SERVER_ENV", {})
    name = "notify_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    async with notify_stack(stack_infra, secrets, workdir, name, overrides) as running:
        yield running


@pytest.fixture
async def stub(stack: NotifyStack) -> AsyncIterator[NotificationServiceAsyncStub]:
    channel = stack.dispatcher_channel()
    try:
        yield pb_grpc.NotificationServiceStub(channel)
    finally:
        await channel.close()


@pytest.fixture
async def api(stack: NotifyStack) -> AsyncIterator[Api]:
    async with grpc.aio.insecure_channel(
        stack.grpc_addr, options=[("grpc.enable_http_proxy", 0)]
    ) as channel:
        yield Api(channel, stack.secrets)


# --- dispatchers ---------------------------------------------------------------------------


def dispatcher_env(
    stack: NotifyStack, *, telegram_base: str, smtp_port: int, extra: dict[str, str] | None = None
) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "SWITCHBOARD_ENV": "test",
        "SWITCHBOARD_CONFIG_DIR": str(ROOT / "configs"),
        "SWITCHBOARD_SERVER_ADDR": stack.grpc_addr,
        "SWITCHBOARD_SERVICE_TOKEN_DISPATCHER": stack.secrets.dispatcher_token,
        "SWITCHBOARD_LOGIN_BOT_TOKEN": stack.secrets.login_bot_token,
        "SWITCHBOARD_NOTIFICATIONS_SENDER": "real",
        "SWITCHBOARD_TELEGRAM_API_BASE": telegram_base,
        "SWITCHBOARD_SMTP_HOST": "127.0.0.1",
        "SWITCHBOARD_SMTP_PORT": str(smtp_port),
        "SWITCHBOARD_SMTP_TIMEOUT_S": "2",
        "SWITCHBOARD_DISPATCHER_REPORT_INTERVAL_S": "0.05",
        **(extra or {}),
    }


class DispatcherProcess:
    """``python -m workers.dispatcher`` as a child, its output in a .log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DispatcherProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # nosec B603
            [sys.executable, "-m", "workers.dispatcher"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait without blocking the event loop (the fake Bot API runs in it)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait(5)
                    raise TimeoutError("the dispatcher did not stop on SIGTERM")
                await asyncio.sleep(0.05)
        return self.proc.returncode


@pytest.fixture
def dispatchers() -> Iterator[list[DispatcherProcess]]:
    started: list[DispatcherProcess] = []
    yield started
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()


@contextlib.asynccontextmanager
async def in_process_dispatcher(
    stack: NotifyStack, *, telegram_base: str, smtp_port: int, concurrency: int = 64
) -> AsyncIterator[Dispatcher]:
    """A Dispatcher object in this event loop, talking gRPC to the stack's server."""
    channel = stack.dispatcher_channel()
    router = Router(
        TelegramSender({"login": stack.secrets.login_bot_token}, api_base=telegram_base),
        SmtpSender(SmtpConfig(host="127.0.0.1", port=smtp_port, timeout_s=2)),
    )
    dispatcher = Dispatcher(
        pb_grpc.NotificationServiceStub(channel),
        router,
        name="test",
        concurrency=concurrency,
        report_interval_s=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await router.close()
        await channel.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


def tg(chat_id: int, key: str, text: str = "hello", language: str = "en") -> Notice:
    return Notice(
        ToTelegramChat(chat_id, "login", language),
        Channel.TELEGRAM,
        "notifications.admin_message",
        {"text": text},
        key,
    )


def mail(address: str, key: str, text: str = "hello", language: str = "en") -> Notice:
    return Notice(
        ToEmail(address, language),
        Channel.EMAIL,
        "notifications.admin_message",
        {"text": text},
        key,
    )


def to_user(user_id: UUID, channel: Channel, key: str, text: str = "hello") -> Notice:
    return Notice(ToUser(user_id), channel, "notifications.admin_message", {"text": text}, key)


# A marker in every test body, so a test can prove no body reached a log.
BODY_MARK = "BODY-" + uuid.uuid4().hex


def text(label: str) -> str:
    return f"{BODY_MARK} {label}"


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeBotApi]:
    """One fake Bot API for the module (overrides the per-test one of tests/conftest.py)."""
    async with FakeBotApi() as api:
        yield api


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpCapture]:
    with SmtpCapture() as server:
        yield server
