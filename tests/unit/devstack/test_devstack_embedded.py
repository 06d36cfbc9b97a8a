"""Embedded PostgreSQL and Redis: real servers in a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from server.devstack._util import can_connect, port_is_free
from server.devstack.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis, free_port


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def _scalar(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert port_is_free("127.0.0.1", port)


async def test_postgres_keeps_data_across_restart(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", database="app", fsync=False)
    t0 = time.monotonic()
    with pg:
        first_start = time.monotonic() - t0
        assert pg.dsn == f"postgresql://postgres@127.0.0.1:{pg.port}/app"
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('hello')")
            assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        finally:
            await conn.close()
    assert not pg.is_running()
    assert first_start < 15, f"first start took {first_start:.1f}s"

    t0 = time.monotonic()
    with pg:
        assert time.monotonic() - t0 < 10
        assert await _scalar(pg.dsn, "SELECT v FROM kept") == "hello"

        # A fresh database per test run, and a second one (e.g. for a migration test).
        fresh = pg.create_database("run_1")
        assert fresh == pg.dsn_for("run_1")
        assert await _scalar(fresh, "SELECT current_database()") == "run_1"
        assert await _scalar(fresh, "SELECT count(*) FROM pg_tables WHERE tablename = 'kept'") == 0
        with pytest.raises(EmbeddedError, match="already exists"):
            pg.create_database("run_1")
        assert pg.create_database("run_1", exist_ok=True) == fresh
        conn = await asyncpg.connect(fresh)  # an open session does not block the drop (FORCE)
        try:
            pg.drop_database("run_1")
        finally:
            await conn.close()
        assert not pg.database_exists("run_1")
        with pytest.raises(ValueError, match="unsupported"):
            pg.create_database("bad'name")


def test_postgres_data_dir_is_locked_while_running(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg", fsync=False):
        other = EmbeddedPostgres(tmp_path / "pg", fsync=False)
        with pytest.raises(RuntimeError, match="in use by another process"):
            other.start()


def test_postgres_fixed_port_in_use(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "a", fsync=False) as a:
        b = EmbeddedPostgres(tmp_path / "b", port=a.port, fsync=False)
        with pytest.raises(EmbeddedError, match="already in use"):
            b.start()


async def test_postgres_recovers_from_crash_leftovers(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", fsync=False)
    with pg:
        await _scalar(pg.dsn, "CREATE TABLE t AS SELECT 1 AS x")

    # 1) A stale postmaster.pid whose process is gone (a crash, a reboot).
    pidfile = pg.pgdata / "postmaster.pid"
    pidfile.write_text(f"{_dead_pid()}\n{pg.pgdata}\n0\n1\n\n127.0.0.1\n  0  0\nready   \n")
    with pg:
        assert await _scalar(pg.dsn, "SELECT x FROM t") == 1

    # 2) The owner died (kill -9) and left its postmaster running: the next owner stops the
    #    orphan and starts its own server on the same data.
    crashed = EmbeddedPostgres(tmp_path / "pg", fsync=False).start()
    orphan = crashed._proc
    assert orphan is not None
    crashed._lock.release()  # what the kernel does when the owner dies
    if crashed._finalizer is not None:
        crashed._finalizer.detach()
    try:
        with EmbeddedPostgres(tmp_path / "pg", fsync=False) as successor:
            assert orphan.wait(timeout=10) is not None
            assert await _scalar(successor.dsn, "SELECT x FROM t") == 1
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()


async def test_redis_keeps_data_across_restart_and_kill(tmp_path: Path) -> None:
    r = EmbeddedRedis(tmp_path / "redis")
    t0 = time.monotonic()
    with r:
        assert time.monotonic() - t0 < 10
        assert r.url == f"redis://127.0.0.1:{r.port}/0"
        client = aioredis.from_url(r.url)
        try:
            await client.set("kept", "1")
            assert (await client.config_get("bind"))["bind"] == "127.0.0.1"
        finally:
            await client.aclose()
        port = r.port
    assert not r.is_running()
    assert not can_connect("127.0.0.1", port)

    r.start()
    client = aioredis.from_url(r.url)
    try:
        assert await client.get("kept") == b"1"
        await client.set("after-restart", "2")
    finally:
        await client.aclose()
    # Crash: SIGKILL leaves a stale pid file; the next start still finds the data (AOF).
    assert r.pid is not None
    os.kill(r.pid, signal.SIGKILL)
    assert r._proc is not None
    r._proc.wait()
    assert (r.data_dir / "redis.pid").exists()
    r.stop()
    with EmbeddedRedis(tmp_path / "redis") as again:
        client = aioredis.from_url(again.url)
        try:
            assert await client.get("after-restart") == b"2"
        finally:
            await client.aclose()
