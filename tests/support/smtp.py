"""A real SMTP server for tests (aiosmtpd on 127.0.0.1) that captures every message.

    smtp = SmtpCapture().start()
    ... SWITCHBOARD_SMTP_HOST=smtp.host, SWITCHBOARD_SMTP_PORT=smtp.port ...
    mail = await smtp.wait_for("user@example.com")
    smtp.stop()    # the port now refuses connections (SMTP down) ...
    smtp.start()   # ... and accepts them again, on the same port (SMTP back up)

    smtp = SmtpCapture(auth=("mailer", "s3cret")).start()   # AUTH required (PLAIN, LOGIN)
    smtp = SmtpCapture(tls_context=context).start()          # STARTTLS required first

The server runs in aiosmtpd's own thread and event loop; captured mails are parsed into
:class:`CapturedMail` (envelope, headers, plain-text body, the login and TLS of the session).
With ``auth`` the server advertises AUTH on a plain connection too (``auth_require_tls=False``,
unless ``tls_context`` is given) and refuses MAIL before a successful login; every attempt is
in :attr:`SmtpCapture.logins` as (user, accepted).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.devstack.embedded import free_port

__all__ = ["CapturedMail", "SmtpCapture", "self_signed_tls"]


def self_signed_tls(directory: Path, host: str = "127.0.0.1") -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for `host` with a fresh self-signed certificate (also its own CA),
    and the PEM file of that certificate, for a client to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchboard test smtp")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(host))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@dataclass(frozen=True)
class CapturedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    body: str
    message: EmailMessage
    time: float
    #: The user the session logged in as ("" without AUTH) and whether it was under TLS.
    login: str = ""
    tls: bool = False

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
            login=_login_name(session),
            tls=session.ssl is not None,
        )
        self._owner._add(mail)
        return "250 Message accepted for delivery"


def _login_name(session: Session) -> str:
    data = session.auth_data
    if isinstance(data, LoginPassword):
        return data.login.decode(errors="replace")
    return ""


class _Authenticator:
    def __init__(self, owner: SmtpCapture, user: str, password: str) -> None:
        self._owner = owner
        self._user = user.encode()
        self._password = password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        accepted = data.login == self._user and data.password == self._password
        self._owner._login(data.login.decode(errors="replace"), accepted)
        return AuthResult(success=accepted, handled=False, auth_data=data if accepted else None)


class SmtpCapture:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.auth = auth
        self.tls_context = tls_context
        self.messages: list[CapturedMail] = []
        #: Every AUTH attempt: (user, accepted).
        self.logins: list[tuple[str, bool]] = []
        # Addresses (lower case) answered 550 at RCPT (a permanent refusal).
        self.refused: set[str] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        if self._controller is None:
            options: dict[str, Any] = {}
            if self.auth is not None:
                options.update(
                    authenticator=_Authenticator(self, *self.auth),
                    auth_required=True,
                    auth_require_tls=self.tls_context is not None,
                )
            if self.tls_context is not None:
                options.update(tls_context=self.tls_context, require_starttls=True)
            controller = Controller(_Handler(self), hostname=self.host, port=self.port, **options)
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

    def _login(self, user: str, accepted: bool) -> None:
        with self._lock:
            self.logins.append((user, accepted))

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
