"""Identity's SQL, explicit, over asyncpg."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from server.identity.model import (
    AuditEvent,
    BindingCode,
    CodePurpose,
    EmailCode,
    Handshake,
    SessionRecord,
    TelegramChannel,
    User,
)
from server.kernel.audit import insert_audit_event
from server.kernel.principal import Role

_USER_COLUMNS = (
    "id, telegram_user_id, display_name, username, email, role, create_time, "
    "last_login_time, delete_time, language, email_verify_time"
)
_EMAIL_CODE_COLUMNS = (
    "id, email, purpose, user_id, code_hash, attempts, max_attempts, create_time, expire_time, "
    "consume_time, lock_time, language"
)
_CHANNEL_COLUMNS = "id, user_id, chat_id, bot, create_time, confirm_time, delete_time"

# A connection inside an open transaction (see IdentityRepository.transaction).
Tx: TypeAlias = asyncpg.Connection


def _user(row: asyncpg.Record, prefix: str = "") -> User:
    return User(
        id=row[f"{prefix}id"],
        telegram_user_id=row[f"{prefix}telegram_user_id"],
        display_name=row[f"{prefix}display_name"],
        username=row[f"{prefix}username"],
        email=row[f"{prefix}email"],
        role=Role(row[f"{prefix}role"]),
        create_time=row[f"{prefix}create_time"],
        last_login_time=row[f"{prefix}last_login_time"],
        delete_time=row[f"{prefix}delete_time"],
        language=row[f"{prefix}language"],
        email_verify_time=row[f"{prefix}email_verify_time"],
    )


def _email_code(row: asyncpg.Record) -> EmailCode:
    values = dict(row)
    values["purpose"] = CodePurpose(values["purpose"])
    return EmailCode(**values)


def _channel(row: asyncpg.Record) -> TelegramChannel:
    return TelegramChannel(**dict(row))


class IdentityRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- users ---------------------------------------------------------------------------

    async def upsert_telegram_user(
        self,
        telegram_user_id: int,
        display_name: str,
        username: str,
        *,
        super_admin: bool,
        login_time: datetime | None,
    ) -> User:
        """Create the user on first sight, refresh the profile otherwise (one statement)."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO identity_users AS u
                (telegram_user_id, display_name, username, role, last_login_time)
            VALUES ($1, $2, $3, CASE WHEN $4 THEN 'super_admin' ELSE 'user' END, $5)
            ON CONFLICT (telegram_user_id) DO UPDATE SET
                display_name = CASE WHEN EXCLUDED.display_name <> ''
                                    THEN EXCLUDED.display_name ELSE u.display_name END,
                username = CASE WHEN EXCLUDED.username <> ''
                                THEN EXCLUDED.username ELSE u.username END,
                role = CASE WHEN $4 THEN 'super_admin' ELSE u.role END,
                last_login_time = COALESCE(EXCLUDED.last_login_time, u.last_login_time)
            RETURNING {_USER_COLUMNS}
            """,
            telegram_user_id,
            display_name,
            username,
            super_admin,
            login_time,
        )
        assert row is not None
        return _user(row)

    async def find_telegram_user(self, telegram_user_id: int) -> User | None:
        row = await self._pool.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM identity_users WHERE telegram_user_id = $1",
            telegram_user_id,
        )
        return _user(row) if row is not None else None

    async def update_profile(self, user_id: UUID, display_name: str, username: str) -> User | None:
        """Refresh the Telegram profile fields that are given (empty means unknown)."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE identity_users SET
                display_name = CASE WHEN $2 <> '' THEN $2 ELSE display_name END,
                username = CASE WHEN $3 <> '' THEN $3 ELSE username END
            WHERE id = $1 AND delete_time IS NULL
            RETURNING {_USER_COLUMNS}
            """,
            user_id,
            display_name,
            username,
        )
        return _user(row) if row is not None else None

    async def get_user(self, user_id: UUID, tx: Tx | None = None) -> User | None:
        """The user (deleted ones too); inside ``tx`` when given, else on the pool."""
        row = await (tx if tx is not None else self._pool).fetchrow(
            f"SELECT {_USER_COLUMNS} FROM identity_users WHERE id = $1", user_id
        )
        return _user(row) if row is not None else None

    async def list_users(self, after: tuple[datetime, UUID] | None, limit: int) -> list[User]:
        rows = await self._pool.fetch(
            f"""
            SELECT {_USER_COLUMNS} FROM identity_users
            WHERE delete_time IS NULL
              AND ($1::timestamptz IS NULL OR (create_time, id) > ($1, $2::uuid))
            ORDER BY create_time, id
            LIMIT $3
            """,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [_user(r) for r in rows]

    async def set_role(self, user_id: UUID, role: Role, *, only_from: Role) -> User | None:
        """Change the role only from the given one; returns the user either way (None if gone)."""
        row = await self._pool.fetchrow(
            f"""
            WITH changed AS (
                UPDATE identity_users SET role = $2
                WHERE id = $1 AND role = $3 AND delete_time IS NULL
                RETURNING {_USER_COLUMNS}
            )
            SELECT {_USER_COLUMNS} FROM changed
            UNION ALL
            SELECT {_USER_COLUMNS} FROM identity_users
            WHERE id = $1 AND delete_time IS NULL AND NOT EXISTS (SELECT 1 FROM changed)
            """,
            user_id,
            role.value,
            only_from.value,
        )
        return _user(row) if row is not None else None

    async def grant_super_admin(
        self, telegram_user_ids: list[int], emails: list[str]
    ) -> list[UUID]:
        """Make the configured users super admins; returns the ids whose role changed."""
        rows = await self._pool.fetch(
            """
            UPDATE identity_users SET role = 'super_admin'
            WHERE role <> 'super_admin' AND delete_time IS NULL
              AND (telegram_user_id = ANY($1::bigint[]) OR lower(email) = ANY($2::text[]))
            RETURNING id
            """,
            telegram_user_ids,
            [e.lower() for e in emails],
        )
        return [r["id"] for r in rows]

    async def soft_delete_user(self, user_id: UUID) -> bool:
        """Soft-delete and revoke every session; True also when already deleted (retry-safe)."""
        async with self._pool.acquire() as connection, connection.transaction():
            deleted = await connection.fetchval(
                """
                UPDATE identity_users SET delete_time = COALESCE(delete_time, now())
                WHERE id = $1 RETURNING id
                """,
                user_id,
            )
            if deleted is None:
                return False
            await connection.execute(
                """
                UPDATE identity_sessions SET revoke_time = now()
                WHERE user_id = $1 AND revoke_time IS NULL
                """,
                user_id,
            )
            return True

    # --- sessions ------------------------------------------------------------------------

    async def create_session(
        self, user_id: UUID, token_hash: bytes, expire_time: datetime, tx: Tx | None = None
    ) -> UUID:
        session_id: UUID = await (tx or self._pool).fetchval(
            """
            INSERT INTO identity_sessions (user_id, token_hash, expire_time)
            VALUES ($1, $2, $3) RETURNING id
            """,
            user_id,
            token_hash,
            expire_time,
        )
        return session_id

    async def find_session(self, token_hash: bytes) -> SessionRecord | None:
        row = await self._pool.fetchrow(
            """
            SELECT s.id AS session_id, s.expire_time AS session_expire_time,
                   s.revoke_time AS session_revoke_time,
                   u.id, u.telegram_user_id, u.display_name, u.username, u.email, u.role,
                   u.create_time, u.last_login_time, u.delete_time, u.language,
                   u.email_verify_time
            FROM identity_sessions s JOIN identity_users u ON u.id = s.user_id
            WHERE s.token_hash = $1
            """,
            token_hash,
        )
        if row is None:
            return None
        return SessionRecord(
            id=row["session_id"],
            user=_user(row),
            expire_time=row["session_expire_time"],
            revoke_time=row["session_revoke_time"],
        )

    async def revoke_session(self, session_id: UUID) -> None:
        await self._pool.execute(
            "UPDATE identity_sessions SET revoke_time = now() WHERE id = $1 AND revoke_time IS NULL",
            session_id,
        )

    # --- bot login handshakes ------------------------------------------------------------

    async def create_handshake(
        self, code_hash: bytes, handshake_token_hash: bytes, expire_time: datetime
    ) -> None:
        await self._pool.execute(
            """
            INSERT INTO identity_login_handshakes (code_hash, handshake_token_hash, expire_time)
            VALUES ($1, $2, $3)
            """,
            code_hash,
            handshake_token_hash,
            expire_time,
        )

    async def confirm_handshake(self, code_hash: bytes, user_id: UUID) -> bool:
        """Bind an unexpired, unclaimed handshake to a user; False if there is none.

        Confirming again for the same user succeeds without change, so a bot may retry.
        """
        confirmed = await self._pool.fetchval(
            """
            UPDATE identity_login_handshakes
            SET user_id = $2, confirm_time = COALESCE(confirm_time, now())
            WHERE code_hash = $1 AND expire_time > now() AND claim_time IS NULL
              AND (confirm_time IS NULL OR user_id = $2)
            RETURNING id
            """,
            code_hash,
            user_id,
        )
        return confirmed is not None

    async def find_handshake(self, handshake_token_hash: bytes) -> Handshake | None:
        row = await self._pool.fetchrow(
            """
            SELECT id, expire_time, user_id, confirm_time, claim_time
            FROM identity_login_handshakes WHERE handshake_token_hash = $1
            """,
            handshake_token_hash,
        )
        if row is None:
            return None
        return Handshake(**dict(row))

    async def claim_handshake(
        self, handshake_id: UUID, token_hash: bytes, expire_time: datetime
    ) -> tuple[User, UUID] | None:
        """Hand out the session of a confirmed handshake exactly once (one transaction)."""
        async with self._pool.acquire() as connection, connection.transaction():
            user_id = await connection.fetchval(
                """
                UPDATE identity_login_handshakes SET claim_time = now()
                WHERE id = $1 AND confirm_time IS NOT NULL AND claim_time IS NULL
                RETURNING user_id
                """,
                handshake_id,
            )
            if user_id is None:
                return None
            row = await connection.fetchrow(
                f"""
                UPDATE identity_users SET last_login_time = now()
                WHERE id = $1 AND delete_time IS NULL RETURNING {_USER_COLUMNS}
                """,
                user_id,
            )
            if row is None:
                return None
            session_id = await connection.fetchval(
                """
                INSERT INTO identity_sessions (user_id, token_hash, expire_time)
                VALUES ($1, $2, $3) RETURNING id
                """,
                user_id,
                token_hash,
                expire_time,
            )
            return _user(row), session_id

    # --- transactions --------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One connection in one transaction: commits when the block ends, rolls back on error."""
        async with self._pool.acquire() as connection, connection.transaction():
            yield connection

    # --- language, email ----------------------------------------------------------------

    async def set_language(self, user_id: UUID, language: str) -> User | None:
        row = await self._pool.fetchrow(
            f"""
            UPDATE identity_users SET language = $2
            WHERE id = $1 AND delete_time IS NULL RETURNING {_USER_COLUMNS}
            """,
            user_id,
            language,
        )
        return _user(row) if row is not None else None

    async def find_email_user(self, tx: Tx, email: str) -> User | None:
        row = await tx.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM identity_users WHERE lower(email) = $1", email
        )
        return _user(row) if row is not None else None

    async def email_login_user(
        self,
        tx: Tx,
        email: str,
        *,
        display_name: str,
        language: str | None,
        super_admin: bool,
        now: datetime,
    ) -> User:
        """The user of a proven address: created on first login, else marked verified and seen."""  # fmt: skip
        row = await tx.fetchrow(
            f"""
            INSERT INTO identity_users AS u
                (email, email_verify_time, display_name, role, last_login_time, language)
            VALUES ($1, $5, $2, CASE WHEN $4 THEN 'super_admin' ELSE 'user' END, $5, $3)
            ON CONFLICT ((lower(email))) WHERE email IS NOT NULL DO UPDATE SET
                email_verify_time = COALESCE(u.email_verify_time, EXCLUDED.email_verify_time),
                last_login_time = EXCLUDED.last_login_time,
                role = CASE WHEN $4 THEN 'super_admin' ELSE u.role END
            RETURNING {_USER_COLUMNS}
            """,
            email,
            display_name,
            language,
            super_admin,
            now,
        )
        assert row is not None
        return _user(row)

    async def set_verified_email(
        self, tx: Tx, user_id: UUID, email: str, *, super_admin: bool, now: datetime
    ) -> User | None:
        """Make ``email`` the user's verified address (asyncpg.UniqueViolationError if taken)."""
        row = await tx.fetchrow(
            f"""
            UPDATE identity_users SET email = $2, email_verify_time = $3,
                role = CASE WHEN $4 THEN 'super_admin' ELSE role END
            WHERE id = $1 AND delete_time IS NULL RETURNING {_USER_COLUMNS}
            """,
            user_id,
            email,
            now,
            super_admin,
        )
        return _user(row) if row is not None else None

    # --- email codes ---------------------------------------------------------------------

    async def lock_email_address(self, tx: Tx, email: str) -> None:
        """Serialize code requests for one address until the transaction ends."""
        await tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('identity.email_code:' || $1, 0))",
            email,
        )

    async def email_code_times(self, tx: Tx, email: str, since: datetime) -> list[datetime]:
        rows = await tx.fetch(
            """
            SELECT create_time FROM identity_email_codes
            WHERE email = $1 AND create_time > $2 ORDER BY create_time DESC
            """,
            email,
            since,
        )
        return [r["create_time"] for r in rows]

    async def insert_email_code(self, tx: Tx, code: EmailCode) -> None:
        await tx.execute(
            """
            INSERT INTO identity_email_codes
                (id, email, purpose, user_id, code_hash, attempts, max_attempts, create_time,
                 expire_time, language)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            """,
            code.id,
            code.email,
            code.purpose.value,
            code.user_id,
            code.code_hash,
            code.attempts,
            code.max_attempts,
            code.create_time,
            code.expire_time,
            code.language,
        )

    async def newest_email_code(
        self, tx: Tx, email: str, purpose: CodePurpose, user_id: UUID | None
    ) -> EmailCode | None:
        """The newest code of the address for the purpose (and user), locked for this transaction."""
        row = await tx.fetchrow(
            f"""
            SELECT {_EMAIL_CODE_COLUMNS} FROM identity_email_codes
            WHERE email = $1 AND purpose = $2 AND user_id IS NOT DISTINCT FROM $3
            ORDER BY create_time DESC, id
            LIMIT 1
            FOR UPDATE
            """,
            email,
            purpose.value,
            user_id,
        )
        return _email_code(row) if row is not None else None

    async def count_email_code_failure(
        self, tx: Tx, code_id: UUID, *, lock: bool, now: datetime
    ) -> None:
        await tx.execute(
            """
            UPDATE identity_email_codes
            SET attempts = attempts + 1, lock_time = CASE WHEN $2 THEN $3 ELSE lock_time END
            WHERE id = $1
            """,
            code_id,
            lock,
            now,
        )

    async def consume_email_code(self, tx: Tx, code_id: UUID, now: datetime) -> None:
        await tx.execute(
            "UPDATE identity_email_codes SET consume_time = $2 WHERE id = $1", code_id, now
        )

    # --- Telegram channels ---------------------------------------------------------------

    async def create_binding_code(
        self, user_id: UUID, code_hash: bytes, now: datetime, expire_time: datetime
    ) -> None:
        await self._pool.execute(
            """
            INSERT INTO identity_telegram_binding_codes
                (code_hash, user_id, create_time, expire_time)
            VALUES ($1, $2, $3, $4)
            """,
            code_hash,
            user_id,
            now,
            expire_time,
        )

    async def binding_code_for_update(self, tx: Tx, code_hash: bytes) -> BindingCode | None:
        row = await tx.fetchrow(
            """
            SELECT id, user_id, expire_time, use_time, channel_id
            FROM identity_telegram_binding_codes WHERE code_hash = $1 FOR UPDATE
            """,
            code_hash,
        )
        return BindingCode(**dict(row)) if row is not None else None

    async def live_channel_of_chat(self, tx: Tx, bot: str, chat_id: int) -> TelegramChannel | None:
        row = await tx.fetchrow(
            f"""
            SELECT {_CHANNEL_COLUMNS} FROM identity_telegram_channels
            WHERE bot = $1 AND chat_id = $2 AND delete_time IS NULL
            """,
            bot,
            chat_id,
        )
        return _channel(row) if row is not None else None

    async def get_channel(self, tx: Tx, channel_id: UUID) -> TelegramChannel | None:
        row = await tx.fetchrow(
            f"SELECT {_CHANNEL_COLUMNS} FROM identity_telegram_channels WHERE id = $1",
            channel_id,
        )
        return _channel(row) if row is not None else None

    async def insert_confirmed_channel(
        self, tx: Tx, user_id: UUID, chat_id: int, bot: str, now: datetime
    ) -> TelegramChannel:
        """asyncpg.UniqueViolationError when the chat is bound to a live user already."""
        row = await tx.fetchrow(
            f"""
            INSERT INTO identity_telegram_channels
                (user_id, chat_id, bot, create_time, confirm_time)
            VALUES ($1, $2, $3, $4, $4) RETURNING {_CHANNEL_COLUMNS}
            """,
            user_id,
            chat_id,
            bot,
            now,
        )
        assert row is not None
        return _channel(row)

    async def use_binding_code(
        self, tx: Tx, code_id: UUID, channel_id: UUID, now: datetime
    ) -> None:
        await tx.execute(
            """
            UPDATE identity_telegram_binding_codes SET use_time = $3, channel_id = $2
            WHERE id = $1 AND use_time IS NULL
            """,
            code_id,
            channel_id,
            now,
        )

    async def list_channels(
        self, user_id: UUID, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[TelegramChannel]:
        rows = await self._pool.fetch(
            f"""
            SELECT {_CHANNEL_COLUMNS} FROM identity_telegram_channels
            WHERE user_id = $1 AND delete_time IS NULL AND confirm_time IS NOT NULL
              AND ($2::timestamptz IS NULL OR (create_time, id) > ($2, $3::uuid))
            ORDER BY create_time, id
            LIMIT $4
            """,
            user_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [_channel(r) for r in rows]

    async def delete_channel(self, user_id: UUID, channel_id: UUID) -> TelegramChannel | None:
        """Soft-delete the user's channel; returns it (also when already deleted), else None."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE identity_telegram_channels
            SET delete_time = COALESCE(delete_time, now())
            WHERE id = $1 AND user_id = $2 RETURNING {_CHANNEL_COLUMNS}
            """,
            channel_id,
            user_id,
        )
        return _channel(row) if row is not None else None

    # --- audit ---------------------------------------------------------------------------

    async def add_audit_event(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        request_id: str,
        attributes: dict[str, str] | None = None,
    ) -> None:
        await insert_audit_event(
            self._pool,
            actor=actor,
            action=action,
            target=target,
            request_id=request_id,
            attributes=attributes,
        )

    async def list_audit_events(
        self, before_id: int | None, action: str | None, limit: int
    ) -> list[AuditEvent]:
        rows = await self._pool.fetch(
            """
            SELECT id, actor, action, target, create_time, request_id, attributes::text
            FROM identity_audit_events
            WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR action = $2)
            ORDER BY id DESC
            LIMIT $3
            """,
            before_id,
            action,
            limit,
        )
        return [_audit(r) for r in rows]


def _audit(row: asyncpg.Record) -> AuditEvent:
    attributes: dict[str, Any] = json.loads(row["attributes"])
    return AuditEvent(
        id=row["id"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        create_time=row["create_time"],
        request_id=row["request_id"],
        attributes={k: str(v) for k, v in attributes.items()},
    )
