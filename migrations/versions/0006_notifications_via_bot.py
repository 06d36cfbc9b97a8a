"""notifications: a user recipient may name a bot; scheduled notices are first due later

A ``ToUserViaBot`` notice stores user_id with the bot name and a default language: at lease
time it resolves to the user's private chat with that bot (their Telegram user id), else to
their confirmed channel like a plain user recipient. A plain user recipient keeps neither.

A notice may be scheduled (``not_before``, booking reminders up to a day ahead): ``due_time``
is when it is first due (the enqueue time, or the later ``not_before``). The lease queue is
ordered and bounded by it, so rows not yet due are never scanned, and the delivery delay is
measured from it. ``withdraw_prefix`` finds pending rows by a dedup key prefix.

Revision ID: 0006_notifications_via_bot
Revises: 0005_booking
Create Date: 2026-11-23
"""

from server.migrate import run_sql

revision = "0006_notifications_via_bot"
down_revision = "0005_booking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        -- Were: (chat_id IS NULL) = (bot IS NULL) and (user_id IS NULL) = (language IS NOT NULL).
        ALTER TABLE notifications_outbox
            DROP CONSTRAINT notifications_outbox_check1,
            DROP CONSTRAINT notifications_outbox_check4,
            -- A chat always names its bot; a bot without a chat only for a user recipient.
            ADD CONSTRAINT notifications_outbox_chat_bot
                CHECK (chat_id IS NULL OR bot IS NOT NULL),
            ADD CONSTRAINT notifications_outbox_bot_recipient
                CHECK (bot IS NULL OR chat_id IS NOT NULL
                       OR (user_id IS NOT NULL AND channel = 'telegram')),
            -- A chat or an address carries its language; a user recipient has one (the
            -- default) exactly when it names a bot, else the user's language is read at lease.
            ADD CONSTRAINT notifications_outbox_language
                CHECK (CASE WHEN user_id IS NULL THEN language IS NOT NULL
                            ELSE (language IS NULL) = (bot IS NULL) END);

        -- When the notification is first due: its enqueue time, or a later not_before (a
        -- revived dead letter: the revival). Never earlier than create_time.
        ALTER TABLE notifications_outbox ADD COLUMN due_time timestamptz;
        UPDATE notifications_outbox SET due_time = create_time;
        ALTER TABLE notifications_outbox
            ALTER COLUMN due_time SET DEFAULT now(),
            ALTER COLUMN due_time SET NOT NULL,
            ADD CONSTRAINT notifications_outbox_due_after_create CHECK (due_time >= create_time);

        -- Leasing takes due rows in due order (FIFO: a row that waits for its chat or a
        -- retry keeps its place) and bounds the index range by due_time <= now, so scheduled
        -- rows (not yet due) are never visited. Replaces the queue index on create_time.
        DROP INDEX notifications_outbox_queue;
        CREATE INDEX notifications_outbox_queue ON notifications_outbox (due_time, id)
            WHERE status IN ('pending', 'leased');

        -- withdraw_prefix: pending rows by a dedup key prefix (byte-wise range, any collation).
        CREATE INDEX notifications_outbox_pending_keys
            ON notifications_outbox (dedup_key text_pattern_ops)
            WHERE status = 'pending';
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP INDEX notifications_outbox_pending_keys;
        DROP INDEX notifications_outbox_queue;
        CREATE INDEX notifications_outbox_queue ON notifications_outbox (create_time, id)
            WHERE status IN ('pending', 'leased');
        ALTER TABLE notifications_outbox
            DROP CONSTRAINT notifications_outbox_due_after_create,
            DROP COLUMN due_time;
        DELETE FROM notifications_outbox WHERE user_id IS NOT NULL AND bot IS NOT NULL;
        ALTER TABLE notifications_outbox
            DROP CONSTRAINT notifications_outbox_chat_bot,
            DROP CONSTRAINT notifications_outbox_bot_recipient,
            DROP CONSTRAINT notifications_outbox_language,
            ADD CONSTRAINT notifications_outbox_check1 CHECK ((chat_id IS NULL) = (bot IS NULL)),
            ADD CONSTRAINT notifications_outbox_check4
                CHECK ((user_id IS NULL) = (language IS NOT NULL));
        """
    )
