"""Email login, email verification and chat binding as REST through Envoy, end to end.

The first tests read the code where the dispatcher reads it (the sealed params of the queued
mail); the last one runs the real dispatcher, which mails the code to a captured SMTP server
and greets the bound chat on the fake Bot API.
"""

from __future__ import annotations

import re
import subprocess  # nosec B404
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bots.login import SPEC as LOGIN
from tests.conftest import Platform
from tests.integration.identity.outbox import latest_code, queued
from tests.support.bots import running_dispatcher
from tests.support.fake_telegram import FakeBotApi
from tests.support.smtp import SmtpCapture


async def test_email_login_over_rest(http: httpx.AsyncClient, platform: Platform) -> None:
    email = f"rest-{uuid.uuid4().hex[:10]}@example.net"
    requested = await http.post("/v1/auth/email/code", json={"email": email, "language": "ru"})
    assert requested.status_code == 200, requested.text
    assert set(requested.json()) == {"expire_time", "next_request_time"}

    again = await http.post("/v1/auth/email/code", json={"email": email})
    assert again.status_code == 429, again.text
    assert again.json()["details"][0]["reason"] == "EMAIL_CODE_RATE_LIMITED"

    code = await latest_code(platform.pg_dsn, platform.secrets.data_key, email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = await http.post("/v1/auth/email/verify", json={"email": email, "code": wrong})
    assert refused.status_code == 400, refused.text
    assert refused.json()["details"][0]["reason"] == "EMAIL_CODE_WRONG"

    verified = await http.post("/v1/auth/email/verify", json={"email": email, "code": code})
    assert verified.status_code == 200, verified.text
    body = verified.json()
    token = body["session"]["token"]
    platform.secrets.issued.append(token)
    assert body["user"]["email"] == email
    assert body["user"]["language"] == "ru"

    headers = {"Authorization": f"Bearer {token}"}
    me = await http.get("/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["user"]["id"] == body["user"]["id"]

    language = await http.post("/v1/me:setLanguage", json={"language": "fr"}, headers=headers)
    assert language.status_code == 200, language.text
    assert language.json()["user"]["language"] == "fr"

    channels = await http.get("/v1/me/channels", headers=headers)
    assert channels.status_code == 200, channels.text
    assert [(c["id"], c["kind"], c["email"]) for c in channels.json()["channels"]] == [
        ("email", "CHANNEL_KIND_EMAIL", email)
    ]


async def test_chat_binding_over_rest(http: httpx.AsyncClient, platform: Platform) -> None:
    email = f"bind-{uuid.uuid4().hex[:10]}@example.net"
    assert (await http.post("/v1/auth/email/code", json={"email": email})).status_code == 200
    code = await latest_code(platform.pg_dsn, platform.secrets.data_key, email)
    session = (await http.post("/v1/auth/email/verify", json={"email": email, "code": code})).json()
    platform.secrets.issued.append(session["session"]["token"])
    headers = {"Authorization": f"Bearer {session['session']['token']}"}

    started = await http.post("/v1/me/channels/telegram:startBinding", json={}, headers=headers)
    assert started.status_code == 200, started.text
    deep_link = started.json()["deep_link"]
    assert deep_link.endswith("?start=bind_" + started.json()["code"])

    chat_id = 6_000_000_000 + uuid.uuid4().int % 10**8
    as_user = await http.post(
        "/v1/channels/telegram:confirmBinding",
        json={"code": started.json()["code"], "chat_id": str(chat_id)},
        headers=headers,
    )
    assert as_user.status_code == 403
    bot = {"Authorization": f"Bearer {platform.secrets.login_bot_service_token}"}
    confirmed = await http.post(
        "/v1/channels/telegram:confirmBinding",
        json={"code": "bind_" + started.json()["code"], "chat_id": str(chat_id)},
        headers=bot,
    )
    assert confirmed.status_code == 200, confirmed.text
    channel = confirmed.json()["channel"]
    assert channel["telegram_chat_id"] == str(chat_id)

    listed = (await http.get("/v1/me/channels", headers=headers)).json()["channels"]
    assert [c["id"] for c in listed] == ["email", channel["id"]]
    [notice] = await queued(platform.pg_dsn, platform.secrets.data_key, chat_id=chat_id)
    assert notice.template == "identity.telegram_channel_bound"

    deleted = await http.delete(f"/v1/me/channels/{channel['id']}", headers=headers)
    assert deleted.status_code == 200, deleted.text
    listed = (await http.get("/v1/me/channels", headers=headers)).json()["channels"]
    assert [c["id"] for c in listed] == ["email"]


@dataclass
class Delivery:
    smtp: SmtpCapture
    telegram: FakeBotApi
    log_path: Path
    proc: subprocess.Popen[bytes]

    def alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise AssertionError(f"the dispatcher exited ({self.proc.returncode}):\n{tail}")


@pytest.fixture
async def delivery(platform: Platform, workdir: Path) -> AsyncIterator[Delivery]:
    """The real dispatcher (a child process) sending to a captured SMTP server and a fake Bot API."""
    smtp = SmtpCapture().start()
    telegram = await FakeBotApi().start()
    log_path = workdir / "dispatcher-identity-e2e.log"
    smtp_env = {
        "SWITCHBOARD_SMTP_HOST": smtp.host,
        "SWITCHBOARD_SMTP_PORT": str(smtp.port),
        "SWITCHBOARD_SMTP_TIMEOUT_S": "2",
    }
    try:
        with running_dispatcher(platform, telegram.base_url, log_path, LOGIN, **smtp_env) as proc:
            yield Delivery(smtp, telegram, log_path, proc)
    finally:
        await telegram.stop()
        smtp.stop()


def code_in(body: str) -> str:
    found: list[str] = re.findall(r"(?<![0-9])[0-9]{6}(?![0-9])", body)
    assert len(found) == 1, body
    return found[0]


async def test_codes_arrive_by_mail_and_the_chat_is_greeted(
    http: httpx.AsyncClient, platform: Platform, delivery: Delivery
) -> None:
    # Email login with the code from the mail that actually arrived.
    email = f"mail-{uuid.uuid4().hex[:10]}@example.net"
    requested = await http.post("/v1/auth/email/code", json={"email": email, "language": "fr"})
    assert requested.status_code == 200, requested.text
    try:
        mail = await delivery.smtp.wait_for(email, timeout=15)
    except TimeoutError:
        delivery.alive()
        raise
    assert mail.subject.startswith("Votre code Switchboard")
    code = code_in(mail.body)
    verified = await http.post("/v1/auth/email/verify", json={"email": email, "code": code})
    assert verified.status_code == 200, verified.text
    token = verified.json()["session"]["token"]
    platform.secrets.issued.append(token)
    headers = {"Authorization": f"Bearer {token}"}
    me = await http.get("/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["user"]["email"] == email

    # Verifying a second address, with the code from its mail.
    other = f"other-{uuid.uuid4().hex[:10]}@example.net"
    started = await http.post(
        "/v1/me/email:startVerification", json={"email": other}, headers=headers
    )
    assert started.status_code == 200, started.text
    other_code = code_in((await delivery.smtp.wait_for(other, timeout=15)).body)
    confirmed = await http.post(
        "/v1/me/email:confirmVerification",
        json={"email": other, "code": other_code},
        headers=headers,
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["user"]["email"] == other
    await delivery.smtp.wait_for(other, predicate=lambda m: "vérifiée" in m.subject, timeout=15)

    # Binding a chat: the bot confirms, the chat gets the greeting in the user's language.
    binding = await http.post("/v1/me/channels/telegram:startBinding", json={}, headers=headers)
    chat_id = 5_000_000_000 + uuid.uuid4().int % 10**8
    bound = await http.post(
        "/v1/channels/telegram:confirmBinding",
        json={"code": binding.json()["code"], "chat_id": str(chat_id)},
        headers={"Authorization": f"Bearer {platform.secrets.login_bot_service_token}"},
    )
    assert bound.status_code == 200, bound.text
    greeting = await delivery.telegram.wait_for_message(chat_id, timeout=15)
    assert "Switchboard" in greeting["text"]
    assert greeting["text"].startswith("Cette conversation")

    # Neither code reached the server's or the dispatcher's log.
    for path in (platform.log_path, delivery.log_path):
        text = path.read_text()
        for secret in (code, other_code):
            assert not re.search(rf"(?<![0-9]){secret}(?![0-9])", text), path.name
