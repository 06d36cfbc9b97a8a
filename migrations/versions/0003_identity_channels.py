"""identity: Telegram chat bindings, email verification codes, user language

Revision ID: 0003_identity_channels
Revises: 0002_notifications
Create Date: 2026-11-23
"""

from server.migrate import run_sql

revision = "0003_identity_channels"
down_revision = "0002_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        -- The language the user chose (SetLanguage, or at email sign-up); NULL: never chose
        -- (notifications then use en, the bots the Telegram client's language).
        ALTER TABLE identity_users
            ADD COLUMN language text CHECK (language IN ('ru', 'en', 'fr')),
            ADD COLUMN email_verify_time timestamptz;
        -- A verified email is an email.
        ALTER TABLE identity_users
            ADD CONSTRAINT identity_users_verified_email
            CHECK (email_verify_time IS NULL OR email IS NOT NULL);

        -- A Telegram chat the platform may write to for a user, through a named bot.
        CREATE TABLE identity_telegram_channels (
            id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id      uuid NOT NULL REFERENCES identity_users (id),
            chat_id      bigint NOT NULL,
            bot          text NOT NULL CHECK (bot ~ '^[a-z][a-z0-9_-]{0,31}$'),
            create_time  timestamptz NOT NULL DEFAULT now(),
            -- Nothing is sent to a chat before it is confirmed (the bot saw the deep link).
            confirm_time timestamptz,
            delete_time  timestamptz,
            CHECK (confirm_time IS NULL OR confirm_time >= create_time),
            CHECK (delete_time IS NULL OR delete_time >= create_time)
        );
        -- A chat belongs to at most one live user per bot.
        CREATE UNIQUE INDEX identity_telegram_channels_chat
            ON identity_telegram_channels (bot, chat_id) WHERE delete_time IS NULL;
        CREATE INDEX identity_telegram_channels_user
            ON identity_telegram_channels (user_id, create_time, id) WHERE delete_time IS NULL;

        -- One-time codes of /start bind_<code> deep links (SHA-256 of the code only).
        CREATE TABLE identity_telegram_binding_codes (
            id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            code_hash   bytea NOT NULL UNIQUE CHECK (length(code_hash) = 32),
            user_id     uuid NOT NULL REFERENCES identity_users (id),
            create_time timestamptz NOT NULL DEFAULT now(),
            expire_time timestamptz NOT NULL,
            use_time    timestamptz,
            channel_id  uuid REFERENCES identity_telegram_channels (id),
            CHECK (expire_time > create_time),
            CHECK ((use_time IS NULL) = (channel_id IS NULL))
        );

        -- Email one-time codes: for logging in, or for verifying an address of a user.
        -- Only an HMAC of the code is stored (see docs/identity.md).
        CREATE TABLE identity_email_codes (
            id           uuid PRIMARY KEY,
            email        text NOT NULL
                         CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 320),
            purpose      text NOT NULL CHECK (purpose IN ('login', 'verify')),
            user_id      uuid REFERENCES identity_users (id),
            code_hash    bytea NOT NULL CHECK (length(code_hash) = 32),
            attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            max_attempts integer NOT NULL CHECK (max_attempts >= 1),
            -- The language the requester chose (RequestEmailCode), given to the user a first
            -- login creates; NULL: none chosen.
            language     text CHECK (language IN ('ru', 'en', 'fr')),
            create_time  timestamptz NOT NULL DEFAULT now(),
            expire_time  timestamptz NOT NULL,
            consume_time timestamptz,
            lock_time    timestamptz,
            -- A verification code belongs to the user who asked; a login code to nobody yet.
            CHECK ((purpose = 'verify') = (user_id IS NOT NULL)),
            CHECK (expire_time > create_time),
            CHECK (attempts <= max_attempts),
            CHECK ((lock_time IS NOT NULL) = (attempts >= max_attempts)),
            CHECK (consume_time IS NULL OR lock_time IS NULL)
        );
        -- The per-address rate limit and "the newest code of an address" read this.
        CREATE INDEX identity_email_codes_email
            ON identity_email_codes (email, create_time DESC);
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP TABLE identity_email_codes;
        DROP TABLE identity_telegram_binding_codes;
        DROP TABLE identity_telegram_channels;
        ALTER TABLE identity_users DROP CONSTRAINT identity_users_verified_email;
        ALTER TABLE identity_users DROP COLUMN email_verify_time, DROP COLUMN language;
        """
    )
