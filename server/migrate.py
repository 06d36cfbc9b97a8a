"""Schema migrations: run them (`switchboard migrate`) and check the server's schema is at head."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class SchemaNotAtHead(Exception):
    pass


def run_sql(script: str) -> None:
    """Run a multi-statement SQL script inside the current migration's transaction.

    SQLAlchemy's asyncpg dialect prepares statements, and a prepared statement holds one
    command; asyncpg's own ``execute`` without arguments takes a whole script.
    """
    from alembic import op
    from sqlalchemy.util import await_only

    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    await_only(driver.execute(script))


def _sqlalchemy_url(dsn: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn[len(prefix) :]
    return dsn


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Percent signs in a DSN would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(dsn).replace("%", "%%"))
    return config


def upgrade(dsn: str) -> None:
    """Apply every pending migration under the advisory lock (see migrations/env.py)."""
    command.upgrade(alembic_config(dsn), "head")


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    head = script.get_current_head()
    if head is None:
        raise SchemaNotAtHead("no migrations found")
    return head


async def ensure_at_head(pool: asyncpg.Pool) -> None:
    head = head_revision()
    async with pool.acquire() as connection:
        exists = await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        current = (
            await connection.fetchval("SELECT version_num FROM alembic_version") if exists else None
        )
    if current != head:
        raise SchemaNotAtHead(
            f"database schema is at {current or 'nothing'}, code expects {head}: "
            "run `switchboard migrate` first"
        )
