"""A real TURN server (Debian's coturn) for one test: loopback only, child process, own files.

``deploy/scripts/install-system-deps.sh`` (run by ``make deps``) installs the package. Each
:class:`Coturn` gets a random shared secret (coturn's ``use-auth-secret`` scheme, the one
``GetIceServers`` answers with), free UDP/TCP ports on 127.0.0.1, a relay port range of its own,
a generated configuration file (mode 0600: the secret is not on the command line) and its log,
user database and pid file under the directory the test gives. Typical use::

    with Coturn(tmp_path) as turn:
        username, password = turn_credentials(turn.secret, "alice")
        ice = RTCIceServer(turn.url, username, password)

A test that records secrets (``Secrets.issued``) should add ``turn.secret`` to it: the log
scan at the end of the session then proves coturn's log does not leak it either.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from server.devstack._util import stop_child, tail

LOOPBACK = "127.0.0.1"
REALM = "switchboard.test"
_STUN_MAGIC = 0x2112A442
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101


class CoturnError(RuntimeError):
    """coturn is missing, or did not start."""


def turnserver_path() -> str:
    path = shutil.which("turnserver") or (
        "/usr/bin/turnserver" if os.access("/usr/bin/turnserver", os.X_OK) else None
    )
    if path is None:
        raise CoturnError(
            "turnserver (Debian package coturn) is not installed: run "
            "deploy/scripts/install-system-deps.sh (make deps does)"
        )
    return path


def turn_credentials(
    secret: str, user: str, ttl_seconds: int = 3600, *, now: float | None = None
) -> tuple[str, str]:
    """coturn's ``use-auth-secret`` (TURN REST API) credentials for ``user``.

    username ``<expiry unix time>:<user>``, password base64(HMAC-SHA1(secret, username)).
    """
    expiry = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def _udp_and_tcp_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def _free_listening_port() -> int:
    """A port free for both UDP and TCP on loopback (coturn listens on both)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if _udp_and_tcp_free(port):
            return port
    raise CoturnError("no free UDP+TCP port on loopback")


def _relay_range(size: int) -> tuple[int, int]:
    """A block of UDP ports below the usual ephemeral range, free right now."""
    rng = random.Random()  # port spreading, not security
    for _ in range(50):
        low = rng.randrange(20_000, 30_000 - size)
        if all(_udp_and_tcp_free(p) for p in range(low, low + size, max(1, size // 8))):
            return low, low + size - 1
    raise CoturnError("no free relay port range")


def stun_binding_ok(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when a STUN Binding request over UDP gets a success response."""
    txid = secrets.token_bytes(12)
    request = struct.pack("!HHI", _BINDING_REQUEST, 0, _STUN_MAGIC) + txid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    if len(data) < 20:
        return False
    kind, _length, magic = struct.unpack("!HHI", data[:8])
    return kind == _BINDING_SUCCESS and magic == _STUN_MAGIC and data[8:20] == txid


class Coturn:
    """``turnserver`` on 127.0.0.1 with time-limited credentials, relaying to loopback peers."""

    def __init__(
        self,
        workdir: Path,
        *,
        secret: str | None = None,
        realm: str = REALM,
        relay_ports: int = 200,
        verbose: bool = False,
    ) -> None:
        self.workdir = workdir
        self.secret = secret or secrets.token_urlsafe(24)
        self.realm = realm
        self.port = _free_listening_port()
        self.min_port, self.max_port = _relay_range(relay_ports)
        self.verbose = verbose
        self.log_path = workdir / "turnserver.log"
        self.config_path = workdir / "turnserver.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    # -- addresses --

    @property
    def url(self) -> str:
        """TURN over UDP (what aiortc uses)."""
        return f"turn:{LOOPBACK}:{self.port}?transport=udp"

    @property
    def tcp_url(self) -> str:
        return f"turn:{LOOPBACK}:{self.port}?transport=tcp"

    @property
    def stun_url(self) -> str:
        return f"stun:{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def credentials(self, user: str, ttl_seconds: int = 3600) -> tuple[str, str]:
        return turn_credentials(self.secret, user, ttl_seconds)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- lifecycle --

    def _config(self) -> str:
        lines = [
            f"listening-ip={LOOPBACK}",
            f"relay-ip={LOOPBACK}",
            f"listening-port={self.port}",
            f"min-port={self.min_port}",
            f"max-port={self.max_port}",
            f"realm={self.realm}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            "fingerprint",
            "allow-loopback-peers",
            "no-cli",
            "no-tls",
            "no-dtls",
            "no-rfc5780",
            "no-multicast-peers",
            "no-software-attribute",
            f"userdb={self.workdir / 'turndb'}",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            f"log-file={self.log_path}",
            "simple-log",
            "no-stdout-log",
        ]
        if self.verbose:
            lines.append("verbose")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> Self:
        binary = turnserver_path()
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self._config())
        self._out = (self.workdir / "turnserver-stdout.log").open("ab")
        self._proc = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._close_out()
                raise CoturnError(
                    f"turnserver exited with {self._proc.returncode}:\n{tail(self.log_path)}"
                )
            if stun_binding_ok(LOOPBACK, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise CoturnError(
            f"turnserver did not answer STUN in {timeout:g} s:\n{tail(self.log_path)}"
        )

    def stop(self) -> None:
        if self._proc is not None:
            stop_child(self._proc, signal.SIGTERM, 5.0)
        self._close_out()

    def _close_out(self) -> None:
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._out.close()
            self._out = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
