"""The audit trail's one writer: a row of ``identity_audit_events``.

Every domain audits into the same table (identity owns it; ListAuditEvents reads it). Pass
the transaction's connection to commit the event with the change it records, or the pool for
an event on its own (a refusal, when nothing else is committed).
"""

from __future__ import annotations

import json

import asyncpg

_INSERT = (
    "INSERT INTO identity_audit_events (actor, action, target, request_id, attributes)"
    " VALUES ($1, $2, $3, $4, $5::jsonb)"
)


async def insert_audit_event(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    actor: str,
    action: str,
    target: str,
    request_id: str,
    attributes: dict[str, str] | None = None,
) -> None:
    """Record ``actor`` did ``action`` to ``target`` (attributes: small, never secrets)."""
    await conn.execute(_INSERT, actor, action, target, request_id, json.dumps(attributes or {}))
