"""Read what identity queued in the notifications outbox, as the dispatcher would see it.

The code a person receives by mail exists in plain text nowhere but in the sealed params of
its outbox row, so tests open those with the run's data key (the real path, minus sending).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from server.kernel.crypto import SecretBox

PARAMS_PURPOSE = b"notifications:params"


@dataclass(frozen=True)
class Queued:
    id: UUID
    dedup_key: str
    channel: str
    template: str
    email: str | None
    chat_id: int | None
    bot: str | None
    language: str | None
    status: str
    params: dict[str, str] | None


async def queued(
    dsn: str, data_key: str, *, email: str | None = None, chat_id: int | None = None
) -> list[Queued]:
    """Outbox rows for an address or a chat, oldest first, with their params opened."""
    box = SecretBox.from_text(data_key)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT id, dedup_key, channel, template, email, chat_id, bot, language, status,
                   params
            FROM notifications_outbox
            WHERE ($1::text IS NULL OR email = $1) AND ($2::bigint IS NULL OR chat_id = $2)
            ORDER BY create_time, id
            """,
            email,
            chat_id,
        )
    finally:
        await conn.close()
    out = []
    for row in rows:
        values: dict[str, Any] = dict(row)
        sealed = values.pop("params")
        params = json.loads(box.open(sealed, PARAMS_PURPOSE)) if sealed is not None else None
        out.append(Queued(**values, params=params))
    return out


async def latest_code(dsn: str, data_key: str, email: str) -> str:
    """The code of the newest identity.email_code mail queued for the address."""
    mails = [
        q
        for q in await queued(dsn, data_key, email=email.lower())
        if q.template == "identity.email_code"
    ]
    assert mails, f"no code mail queued for {email}"
    assert mails[-1].params is not None, "the code mail was already delivered (params wiped)"
    return mails[-1].params["code"]


async def execute(dsn: str, sql: str, *args: object) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        result: str = await conn.execute(sql, *args)
        return result
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
