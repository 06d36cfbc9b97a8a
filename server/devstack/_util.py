"""Small process, port and file helpers shared by the devstack modules (private)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess  # nosec B404
import time
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """True if a listening socket could bind ``host:port`` now (SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def can_connect(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_host_port(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` -> ``("127.0.0.1", 8080)``; ``"[::1]:80"`` -> ``("::1", 80)``."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    if path is None:
        return ""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def pid_state(pid: int) -> str:
    """``"running"``, ``"zombie"`` (exited, not yet reaped) or ``"gone"``.

    Zombies matter: on machines whose PID 1 reaps lazily, a killed server's PID still answers
    ``kill(pid, 0)`` for a while, and PostgreSQL then believes its old postmaster is alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "running" if not Path("/proc/self").exists() else "gone"
    # The state follows the parenthesised command name, which may itself hold spaces.
    state = stat.rpartition(")")[2].split()[0] if ")" in stat else "?"
    return "zombie" if state in ("Z", "X") else "running"


def pid_cmdline(pid: int) -> str:
    """The command line of ``pid`` with NULs turned into spaces ('' if unknown)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def pid_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (with the pid, a unique process identity), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5)


def wait_pid_gone(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_state(pid) != "running":
            return True
        time.sleep(0.05)
    return pid_state(pid) != "running"


def stop_foreign_pid(pid: int, sig: signal.Signals, timeout: float) -> None:
    """Signal a process that is not our child, wait, and SIGKILL it if it does not exit."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not wait_pid_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_pid_gone(pid, 5.0)


def stop_child(
    proc: subprocess.Popen[bytes],
    sig: signal.Signals,
    timeout: float,
    *,
    escalate: tuple[signal.Signals, ...] = (signal.SIGKILL,),
) -> int:
    """Send ``sig`` to a child and wait; escalate on timeout. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        for next_sig in (*escalate, None):
            try:
                proc.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                if next_sig is None:
                    raise
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(next_sig)
                timeout = 5.0
    return proc.wait()


class DirLock:
    """An exclusive ``flock`` on a file: one owner process per data directory.

    The descriptor is close-on-exec, so servers we spawn do not inherit the lock and a crashed
    owner's lock is released by the kernel.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        if self._fh is not None:
            return
        fh = self.path.open("a+b")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RuntimeError(
                    f"{self.path.parent} is in use by another process (lock {self.path})"
                ) from exc
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n".encode())
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None
