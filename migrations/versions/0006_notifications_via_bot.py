"""notifications: a user recipient may name the bot to reach them through

A ``ToUserViaBot`` notice stores user_id with the bot name and a default language: at lease
time it resolves to the user's private chat with that bot (their Telegram user id), else to
their confirmed channel like a plain user recipient. A plain user recipient keeps neither.

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
        """
    )


def downgrade() -> None:
    run_sql(
        """
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
