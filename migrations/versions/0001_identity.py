"""identity: users, sessions, Telegram login handshakes, security audit log

Revision ID: 0001_identity
Revises:
Create Date: 2026-11-23
"""

from server.migrate import run_sql

revision = "0001_identity"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE identity_users (
            id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            telegram_user_id bigint UNIQUE,
            display_name     text NOT NULL DEFAULT '',
            username         text NOT NULL DEFAULT '',
            email            text,
            role             text NOT NULL DEFAULT 'user'
                             CHECK (role IN ('user', 'admin', 'super_admin')),
            create_time      timestamptz NOT NULL DEFAULT now(),
            last_login_time  timestamptz,
            delete_time      timestamptz
        );
        CREATE UNIQUE INDEX identity_users_email_key ON identity_users (lower(email))
            WHERE email IS NOT NULL;
        CREATE INDEX identity_users_listing ON identity_users (create_time, id);

        CREATE TABLE identity_sessions (
            id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id     uuid NOT NULL REFERENCES identity_users (id),
            token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
            create_time timestamptz NOT NULL DEFAULT now(),
            expire_time timestamptz NOT NULL,
            revoke_time timestamptz,
            CHECK (expire_time > create_time)
        );
        CREATE INDEX identity_sessions_user ON identity_sessions (user_id);

        CREATE TABLE identity_login_handshakes (
            id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            code_hash            bytea NOT NULL UNIQUE CHECK (length(code_hash) = 32),
            handshake_token_hash bytea NOT NULL UNIQUE CHECK (length(handshake_token_hash) = 32),
            create_time          timestamptz NOT NULL DEFAULT now(),
            expire_time          timestamptz NOT NULL,
            user_id              uuid REFERENCES identity_users (id),
            confirm_time         timestamptz,
            claim_time           timestamptz,
            -- Confirmed means confirmed for someone; claimed only after confirmed.
            CHECK ((user_id IS NULL) = (confirm_time IS NULL)),
            CHECK (claim_time IS NULL OR confirm_time IS NOT NULL)
        );

        CREATE TABLE identity_audit_events (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            actor       text NOT NULL,
            action      text NOT NULL,
            target      text NOT NULL DEFAULT '',
            create_time timestamptz NOT NULL DEFAULT now(),
            request_id  text NOT NULL DEFAULT '',
            attributes  jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX identity_audit_events_listing ON identity_audit_events (id DESC);
        CREATE INDEX identity_audit_events_action ON identity_audit_events (action, id DESC);
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP TABLE identity_audit_events;
        DROP TABLE identity_login_handshakes;
        DROP TABLE identity_sessions;
        DROP TABLE identity_users;
        """
    )
