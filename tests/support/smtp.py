"""A real SMTP server for tests (aiosmtpd on 127.0.0.1) that captures every message.

    smtp = SmtpCapture().start()
    ... SWITCHBOARD_SMTP_HOST=smtp.host, SWITCHBOARD_SMTP_PORT=smtp.port ...
    mail = await smtp.wait_for("user@example.com")
    smtp.stop()    # the port now refuses connections (SMTP down) ...
    smtp.start()   # ... and accepts them again, on the same port (SMTP back up)

The server runs in aiosmtpd's own thread and event loop; captured mails are parsed into
:class:`CapturedMail` (envelope, headers, plain-text body).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from server.devstack.embedded import free_port

__all__ = ["CapturedMail", "SmtpCapture"]


@dataclass(frozen=True)
class CapturedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    body: str
    message: EmailMessage
    time: float

    @property
    def to(self) -> str:
        return self.rcpt_tos[0] if self.rcpt_tos else ""


class _Handler:
    def __init__(self, owner: SmtpCapture) -> None:
        self._owner = owner

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.lower() in self._owner.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        part = parsed.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        mail = CapturedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            subject=str(parsed.get("Subject", "")),
            body=body,
            message=parsed,
            time=time.monotonic(),
        )
        self._owner._add(mail)
        return "250 Message accepted for delivery"


class SmtpCapture:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.messages: list[CapturedMail] = []
        # Addresses (lower case) answered 550 at RCPT (a permanent refusal).
        self.refused: set[str] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        if self._controller is None:
            controller = Controller(_Handler(self), hostname=self.host, port=self.port)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add(self, mail: CapturedMail) -> None:
        with self._lock:
            self.messages.append(mail)

    def mails(self, to: str | None = None) -> list[CapturedMail]:
        with self._lock:
            return [
                m
                for m in self.messages
                if to is None or to.lower() in (r.lower() for r in m.rcpt_tos)
            ]

    async def wait_for(
        self,
        to: str,
        predicate: Callable[[CapturedMail], bool] | None = None,
        timeout: float = 5.0,
    ) -> CapturedMail:
        """The first captured mail to `to` matching `predicate`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for mail in self.mails(to):
                if predicate is None or predicate(mail):
                    return mail
            if time.monotonic() >= deadline:
                subjects = [m.subject for m in self.mails(to)]
                raise TimeoutError(f"no matching mail to {to} within {timeout}s; got {subjects}")
            await asyncio.sleep(0.02)
