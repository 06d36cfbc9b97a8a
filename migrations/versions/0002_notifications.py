"""notifications: the transactional outbox and the send pacing state

Revision ID: 0002_notifications
Revises: 0001_identity
Create Date: 2026-11-23
"""

from server.migrate import run_sql

revision = "0002_notifications"
down_revision = "0001_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE notifications_outbox (
            id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            dedup_key         text NOT NULL UNIQUE
                              CHECK (length(dedup_key) BETWEEN 1 AND 200),
            channel           text NOT NULL CHECK (channel IN ('telegram', 'email')),
            -- Exactly one recipient: a user (resolved at lease time), a chat, or an address.
            user_id           uuid REFERENCES identity_users (id),
            chat_id           bigint,
            bot               text CHECK (bot <> ''),
            email             text CHECK (length(email) BETWEEN 3 AND 320),
            template          text NOT NULL CHECK (template <> ''),
            -- SecretBox-sealed JSON (purpose notifications:params); wiped once final.
            params            bytea,
            -- NULL for a user recipient: the user's language is read at lease time.
            language          text CHECK (language IN ('ru', 'en', 'fr')),
            status            text NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'leased', 'delivered', 'dead')),
            attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            -- When the row is next due; for a leased row, when its lease expires.
            next_attempt_time timestamptz NOT NULL DEFAULT now(),
            lease_id          uuid,
            lease_expire_time timestamptz,
            -- The pacing key of the chat the last lease sent to ('tg:<bot>:<chat_id>'), so a
            -- Telegram retry_after can hold back that chat; NULL for email.
            pace_key          text,
            last_error        text NOT NULL DEFAULT '' CHECK (length(last_error) <= 64),
            create_time       timestamptz NOT NULL DEFAULT now(),
            update_time       timestamptz NOT NULL DEFAULT now(),
            deliver_time      timestamptz,
            dead_time         timestamptz,
            CHECK (num_nonnulls(user_id, chat_id, email) = 1),
            CHECK ((chat_id IS NULL) = (bot IS NULL)),
            CHECK (chat_id IS NULL OR channel = 'telegram'),
            CHECK (email IS NULL OR channel = 'email'),
            CHECK ((user_id IS NULL) = (language IS NOT NULL)),
            CHECK ((status = 'leased') = (lease_id IS NOT NULL)),
            CHECK ((lease_id IS NULL) = (lease_expire_time IS NULL)),
            CHECK ((status = 'delivered') = (deliver_time IS NOT NULL)),
            CHECK ((status = 'dead') = (dead_time IS NOT NULL)),
            -- Parameters (may hold codes) never outlive the notification's delivery.
            CHECK (status IN ('pending', 'leased') OR params IS NULL)
        );
        -- Leasing takes due rows oldest first (FIFO: a row that waited for its chat or a
        -- retry keeps its place); the due index answers "when is the next row due".
        CREATE INDEX notifications_outbox_queue ON notifications_outbox (create_time, id)
            WHERE status IN ('pending', 'leased');
        CREATE INDEX notifications_outbox_due ON notifications_outbox (next_attempt_time)
            WHERE status IN ('pending', 'leased');
        -- Chats with a notification in a dispatcher's hands (one at a time per chat).
        CREATE INDEX notifications_outbox_leased_chats ON notifications_outbox (pace_key)
            WHERE status = 'leased';
        CREATE INDEX notifications_outbox_listing ON notifications_outbox (create_time, id);
        CREATE INDEX notifications_outbox_status_listing
            ON notifications_outbox (status, create_time, id);

        -- Send pacing shared by every server replica and dispatcher: key '*' is the global
        -- cursor (next free global slot), 'tg:<bot>:<chat_id>' the next allowed send to a chat.
        CREATE TABLE notifications_pacing (
            key       text PRIMARY KEY,
            next_time timestamptz NOT NULL
        );
        INSERT INTO notifications_pacing (key, next_time) VALUES ('*', 'epoch');
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP TABLE notifications_pacing;
        DROP TABLE notifications_outbox;
        """
    )
