"""The dispatcher against the real server, the fake Bot API and a real SMTP server: delivery,
429 retry_after, blocked chats, SMTP outages, crashes (SIGKILL), two dispatchers, SIGTERM,
pacing observed at the Bot API, and nothing secret in the logs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from switchboard.notifications.v1 import notifications_pb2 as npb
from switchboard.notifications.v1 import notifications_pb2_grpc as pb_grpc

from client.channel import connect
from server.kernel.logs import JsonFormatter
from server.notifications.model import Channel, Notice, ToEmail
from tests.integration.notifications.conftest import (
    BODY_MARK,
    DispatcherProcess,
    NotifyStack,
    dispatcher_env,
    eventually,
    in_process_dispatcher,
    mail,
    text,
    tg,
)
from tests.support.api import Api
from tests.support.fake_telegram import Call, FakeBotApi
from tests.support.smtp import SmtpCapture, self_signed_tls
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID
from workers.dispatcher.dispatcher import Dispatcher, DispatcherRefused
from workers.dispatcher.senders import LogSender, Router, SmtpConfig, SmtpSender

SERVER_ENV = {
    "SWITCHBOARD_NOTIFICATIONS_MAX_ATTEMPTS": "6",
    "SWITCHBOARD_NOTIFICATIONS_BACKOFF_BASE_S": "0.4",
    "SWITCHBOARD_NOTIFICATIONS_BACKOFF_CAP_S": "1",
}
GLOBAL_RATE = 40.0
CHAT_INTERVAL = 0.3

_chats = itertools.count(7_000_000)
# Text that must never reach a log: every message body of this module contains it.


def calls_to(fake: FakeBotApi, chat: int) -> list[Call]:
    return [
        c
        for c in fake.calls
        if c.method.lower() == "sendmessage" and str(c.params.get("chat_id")) == str(chat)
    ]


def assert_paced(calls: list[Call]) -> None:
    """At most GLOBAL_RATE sends in any 1 s window; CHAT_INTERVAL between sends to a chat."""
    times = sorted(c.time for c in calls)
    window = int(GLOBAL_RATE)
    for a, b in zip(times, times[window:], strict=False):
        assert b - a >= 1.0, f"{window + 1} sends within {b - a:.3f} s"
    by_chat: dict[str, list[float]] = {}
    for c in calls:
        by_chat.setdefault(str(c.params.get("chat_id")), []).append(c.time)
    for chat, stamps in by_chat.items():
        stamps.sort()
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(g >= CHAT_INTERVAL for g in gaps), (chat, gaps)


async def test_delivers_telegram_and_email(
    stack: NotifyStack, fake: FakeBotApi, smtp: SmtpCapture
) -> None:
    chats = [next(_chats), next(_chats)]
    prefix = f"deliver:{uuid.uuid4()}:"
    for i in range(6):
        await stack.enqueue(tg(chats[i % 2], f"{prefix}tg{i}", text(f"<i>{i}</i>")))
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    await stack.enqueue(mail(address, f"{prefix}mail", text("mail"), language="fr"))
    async with in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port):
        await stack.wait_statuses(prefix, 7)
    sent = [c for chat in chats for c in calls_to(fake, chat)]
    assert len(sent) == 6
    assert all(c.ok for c in sent)
    for call in sent:
        assert call.params["parse_mode"] == "HTML"
        assert call.params["text"].startswith(BODY_MARK)
        assert "&lt;i&gt;" in call.params["text"]  # the param was escaped
        assert call.params["link_preview_options"]["is_disabled"] is True
    assert_paced(sent)
    got = smtp.mails(address)
    assert len(got) == 1
    assert got[0].subject == "Message de Switchboard"
    assert got[0].body.strip() == text("mail")


async def test_telegram_429_retry_after_is_honoured(
    stack: NotifyStack, fake: FakeBotApi, smtp: SmtpCapture
) -> None:
    chat, other = next(_chats), next(_chats)
    prefix = f"429:{uuid.uuid4()}:"
    fake.fail_next("sendMessage", status=429, retry_after=2, chat_id=chat)
    await stack.enqueue(tg(chat, f"{prefix}a", text("a")))
    await stack.enqueue(tg(chat, f"{prefix}b", text("b")))
    await stack.enqueue(tg(other, f"{prefix}c", text("c")))
    async with in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port):
        await stack.wait_statuses(prefix, 3, timeout=10)
    calls = calls_to(fake, chat)
    assert [c.status for c in calls] == [429, 200, 200]
    # Nothing went to that chat before retry_after (2 s) had passed.
    assert calls[1].time - calls[0].time >= 2.0
    # The other chat was not held back.
    assert calls_to(fake, other)[0].time - calls[0].time < 1.0


async def test_a_blocked_chat_is_dead_lettered_not_retried(
    stack: NotifyStack, fake: FakeBotApi, smtp: SmtpCapture
) -> None:
    chat = next(_chats)
    fake.block_chat(chat)
    k = f"blocked:{uuid.uuid4()}"
    await stack.enqueue(tg(chat, k, text("blocked")))
    async with in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port):
        await stack.wait_statuses(k, 1, status="dead")
        await asyncio.sleep(0.5)
    row = await stack.row(k)
    assert (row["attempts"], row["last_error"], row["params"]) == (1, "telegram_403", None)
    assert len(calls_to(fake, chat)) == 1
    events = await stack.audit("notification.dead")
    assert any(e["target"] == f"notification:{row['id']}" for e in events)


async def test_smtp_down_then_up_delivers_later(
    stack: NotifyStack, fake: FakeBotApi, smtp: SmtpCapture
) -> None:
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    k = f"smtp:{uuid.uuid4()}"
    smtp.stop()
    try:
        await stack.enqueue(mail(address, k, text("later")))
        async with in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port):

            async def failed_once() -> bool:
                row = await stack.row(k)
                return bool(row["attempts"] >= 1 and row["status"] == "pending")

            await eventually(failed_once)
            assert (await stack.row(k))["last_error"] == "smtp_connect"
            smtp.start()
            await stack.wait_statuses(k, 1, timeout=10)
    finally:
        smtp.start()
    assert len(smtp.mails(address)) == 1


# aiosmtpd warns about AUTH without TLS: deliberate here (STARTTLS has its own test).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_smtp_user_and_password(
    stack: NotifyStack, fake: FakeBotApi, dispatchers: list[DispatcherProcess], workdir: Path
) -> None:
    """SWITCHBOARD_SMTP_USER/PASSWORD log the dispatcher in (AUTH). A wrong password is a
    retryable failure (``smtp_auth``: configuration an operator fixes), so the mail waits in the
    outbox and goes out once the dispatcher runs with the right one."""
    user, password, wrong = "mailer", "pw-" + uuid.uuid4().hex, "pw-" + uuid.uuid4().hex
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    k = f"smtp-auth:{uuid.uuid4()}"
    with SmtpCapture(auth=(user, password)) as server:

        def start(secret: str, name: str) -> DispatcherProcess:
            env = dispatcher_env(
                stack,
                telegram_base=fake.base_url,
                smtp_port=server.port,
                extra={"SWITCHBOARD_SMTP_USER": user, "SWITCHBOARD_SMTP_PASSWORD": secret},
            )
            proc = DispatcherProcess(env, workdir / name).start()
            dispatchers.append(proc)
            return proc

        await stack.enqueue(mail(address, k, text("auth")))
        refused = start(wrong, "dispatcher-smtp-wrong-password.log")

        async def failed_once() -> bool:
            return bool((await stack.row(k))["attempts"] >= 1)

        await eventually(failed_once, timeout=20)
        assert await refused.terminate() == 0
        row = await stack.row(k)
        assert (row["status"], row["last_error"]) == ("pending", "smtp_auth")
        assert server.mails(address) == []
        assert (user, False) in server.logins
        assert (user, True) not in server.logins

        accepted = start(password, "dispatcher-smtp-password.log")
        await stack.wait_statuses(k, 1, timeout=20)
        assert await accepted.terminate() == 0
    got = server.mails(address)
    assert len(got) == 1
    assert (got[0].login, got[0].body.strip()) == (user, text("auth"))
    assert (user, True) in server.logins
    logs = await asyncio.to_thread(_scan_logs, workdir, [password, wrong])
    assert {"dispatcher-smtp-wrong-password.log", "dispatcher-smtp-password.log"} <= set(logs)
    assert {name: leaks for name, leaks in logs.items() if leaks} == {}


async def test_smtp_starttls_with_a_private_ca(
    stack: NotifyStack, fake: FakeBotApi, dispatchers: list[DispatcherProcess], workdir: Path
) -> None:
    """SWITCHBOARD_SMTP_STARTTLS with SWITCHBOARD_SMTP_CA_FILE: the dispatcher upgrades the
    session, checks the server's certificate against that CA and logs in under TLS."""
    context, ca_file = self_signed_tls(workdir / f"smtp-tls-{uuid.uuid4().hex[:8]}")
    user, password = "mailer", "pw-" + uuid.uuid4().hex  # pragma: allowlist secret
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    k = f"smtp-tls:{uuid.uuid4()}"
    with SmtpCapture(auth=(user, password), tls_context=context) as server:
        # Without the CA the certificate is not trusted: nothing is sent (retryable).
        untrusted = SmtpSender(
            SmtpConfig(
                "127.0.0.1", server.port, user=user, password=password, starttls=True, timeout_s=2
            )
        )
        item = npb.LeasedNotification(
            id="1", channel=npb.CHANNEL_EMAIL, email_address=address, subject="s", body="b"
        )
        result = await untrusted.send(item)
        assert (result.outcome, result.error) == (
            npb.DELIVERY_OUTCOME_RETRYABLE_FAILURE,
            "smtp_connect",
        )
        assert server.mails(address) == []
        assert server.logins == []

        await stack.enqueue(mail(address, k, text("tls")))
        env = dispatcher_env(
            stack,
            telegram_base=fake.base_url,
            smtp_port=server.port,
            extra={
                "SWITCHBOARD_SMTP_STARTTLS": "true",
                "SWITCHBOARD_SMTP_CA_FILE": str(ca_file),
                "SWITCHBOARD_SMTP_USER": user,
                "SWITCHBOARD_SMTP_PASSWORD": password,
            },
        )
        proc = DispatcherProcess(env, workdir / "dispatcher-smtp-tls.log").start()
        dispatchers.append(proc)
        await stack.wait_statuses(k, 1, timeout=20)
        assert await proc.terminate() == 0
    got = server.mails(address)
    assert len(got) == 1
    assert (got[0].tls, got[0].login, got[0].body.strip()) == (True, user, text("tls"))


async def test_a_down_sender_does_not_slow_enqueueing(
    stack: NotifyStack, fake: FakeBotApi, smtp: SmtpCapture, api: Api
) -> None:
    admin = await api.login(SUPER_ADMIN_TELEGRAM_ID, "Admin")
    user = await stack.make_user(email=f"{uuid.uuid4().hex[:8]}@example.com")
    admin_stub = pb_grpc.NotificationAdminServiceStub(api.channel)
    smtp.stop()
    try:
        async with in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port):
            started = time.monotonic()
            for i in range(5):
                response = await admin_stub.SendAdminMessage(
                    npb.SendAdminMessageRequest(
                        user_id=str(user),
                        channel=npb.CHANNEL_EMAIL,
                        text=text("admin"),
                        request_id=f"slow-{uuid.uuid4().hex[:8]}-{i}",
                    ),
                    metadata=admin.metadata,
                )
                assert response.queued
            assert time.monotonic() - started < 1.0  # five enqueues, SMTP down: no waiting
    finally:
        smtp.start()


async def test_two_dispatchers_send_nothing_twice_and_keep_the_limits(
    stack: NotifyStack, fake: FakeBotApi, smtp: SmtpCapture
) -> None:
    chats = [next(_chats) for _ in range(12)]
    prefix = f"two:{uuid.uuid4()}:"
    labels = [f"{prefix}{i}" for i in range(60)]
    for i, label in enumerate(labels):
        await stack.enqueue(tg(chats[i % len(chats)], label, text(label)))
    # Two dispatchers, each its own gRPC channel and senders, leasing concurrently.
    async with (
        in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port) as one,
        in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port) as two,
    ):
        await stack.wait_statuses(prefix, len(labels), timeout=30)
    calls = [c for chat in chats for c in calls_to(fake, chat)]
    assert Counter(c.params["text"] for c in calls) == Counter(text(label) for label in labels)
    assert_paced(calls)
    assert one.stats.sent > 0
    assert two.stats.sent > 0  # both took part
    assert one.stats.stale == two.stats.stale == 0


async def test_sigterm_finishes_what_is_in_hand(
    stack: NotifyStack,
    fake: FakeBotApi,
    smtp: SmtpCapture,
    dispatchers: list[DispatcherProcess],
    workdir: Path,
) -> None:
    chat = next(_chats)
    prefix = f"term:{uuid.uuid4()}:"
    for i in range(6):
        await stack.enqueue(tg(chat, f"{prefix}{i}", text(f"term{i}")))
    env = dispatcher_env(stack, telegram_base=fake.base_url, smtp_port=smtp.port)
    proc = DispatcherProcess(env, workdir / "dispatcher-term.log").start()
    dispatchers.append(proc)
    await stack.wait_statuses(prefix, 2, timeout=20)
    assert await proc.terminate() == 0
    statuses = await stack.statuses(prefix)
    # Whatever it had leased was sent and reported before it exited.
    assert "leased" not in statuses.values(), statuses
    delivered = {k for k, s in statuses.items() if s == "delivered"}
    assert len(fake.sent_messages(chat)) == len(delivered) >= 2


# Loggers of this test's own servers (the fake Bot API, the SMTP capture): not the dispatcher's.
_NOT_THE_DISPATCHER = ("aiohttp.access", "aiohttp.server", "aiohttp.web", "mail.log")


class _JsonLines(logging.Handler):
    """Every record, formatted by the real JSON formatter (given no secrets: nothing scrubbed,
    so whatever a record carries is seen)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_NOT_THE_DISPATCHER):
            return
        self.records.append(record)
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _captured_logs() -> Iterator[_JsonLines]:
    """Every log record of this process at DEBUG (the root logger's level restored after)."""
    handler = _JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _leaks(text: str, needles: list[str]) -> list[str]:
    return [needle[:6] for needle in needles if needle in text]


def _scan_logs(workdir: Path, needles: list[str]) -> dict[str, list[str]]:
    """The needles (their first characters) found in each non-empty log file under workdir."""
    return {
        path.name: _leaks(path.read_text(errors="replace"), needles)
        for path in sorted(workdir.rglob("*.log"))
        if path.stat().st_size
    }


def _code_notice(address: str, code: str, key: str) -> Notice:
    return Notice(
        ToEmail(address, "en"),
        Channel.EMAIL,
        "identity.email_code",
        {"code": code, "ttl_minutes": "10"},
        key,
    )


async def test_no_body_params_or_token_in_any_log(
    stack: NotifyStack,
    fake: FakeBotApi,
    smtp: SmtpCapture,
    dispatchers: list[DispatcherProcess],
    workdir: Path,
) -> None:
    # A distinctive code (six digits could turn up in any log line by chance, as a port...).
    code = "C0DE" + uuid.uuid4().hex[:10]
    needles = [
        BODY_MARK,  # in every body, and in the notices' "text" parameter
        code,
        stack.secrets.login_bot_token,
        stack.secrets.dispatcher_token,
        stack.secrets.data_key,
    ]

    # In-process dispatcher: a Telegram send that first meets a 429 (so it logs), and an email
    # login code; every record of this process, at DEBUG, through the real JSON formatter.
    chat, address = next(_chats), f"{uuid.uuid4().hex[:8]}@example.com"
    prefix = f"nolog:{uuid.uuid4()}:"
    fake.fail_next("sendMessage", status=429, retry_after=1, chat_id=chat)
    await stack.enqueue(tg(chat, f"{prefix}tg", text("<b>param</b>")))
    await stack.enqueue(_code_notice(address, code, f"{prefix}code"))
    with _captured_logs() as captured:
        async with in_process_dispatcher(stack, telegram_base=fake.base_url, smtp_port=smtp.port):
            await stack.wait_statuses(prefix, 2)
    # The secrets were really in play: the body reached the Bot API, the code the mailbox.
    assert [m["text"] for m in fake.sent_messages(chat)] == [text("&lt;b&gt;param&lt;/b&gt;")]
    assert code in smtp.mails(address)[0].body
    # Something was logged: the failed first attempt, by id.
    failed = [r for r in captured.records if r.getMessage() == "send failed"]
    assert [getattr(r, "error", None) for r in failed] == ["telegram_429"]
    assert captured.lines
    assert [_leaks(line, needles) for line in captured.lines if _leaks(line, needles)] == []

    # The dispatcher process: same again, then every log file (its own and the server's).
    chat, address = next(_chats), f"{uuid.uuid4().hex[:8]}@example.com"
    prefix = f"nolog-process:{uuid.uuid4()}:"
    fake.fail_next("sendMessage", status=429, retry_after=1, chat_id=chat)
    await stack.enqueue(tg(chat, f"{prefix}tg", text("process")))
    await stack.enqueue(_code_notice(address, code, f"{prefix}code"))
    env = dispatcher_env(stack, telegram_base=fake.base_url, smtp_port=smtp.port)
    log_path = workdir / "dispatcher-nolog.log"
    proc = DispatcherProcess(env, log_path).start()
    dispatchers.append(proc)
    await stack.wait_statuses(prefix, 2, timeout=20)
    assert await proc.terminate() == 0
    assert len(fake.sent_messages(chat)) == 1
    assert code in smtp.mails(address)[0].body
    own = await asyncio.to_thread(log_path.read_text, errors="replace")
    assert '"send failed"' in own
    assert '"telegram_429"' in own
    found = await asyncio.to_thread(_scan_logs, workdir, needles)
    assert log_path.name in found
    assert {name: leaks for name, leaks in found.items() if leaks} == {}


async def test_a_refused_token_stops_the_dispatcher(stack: NotifyStack) -> None:
    for token in ("wrong-token-0123456789", stack.secrets.plain_worker_token):
        channel = connect(
            stack.grpc_addr, service_token=token, options=[("grpc.enable_http_proxy", 0)]
        )
        try:
            dispatcher = Dispatcher(
                pb_grpc.NotificationServiceStub(channel), Router(LogSender(), LogSender())
            )
            with pytest.raises(DispatcherRefused):
                await asyncio.wait_for(dispatcher.run(asyncio.Event()), 10)
        finally:
            await channel.close()
