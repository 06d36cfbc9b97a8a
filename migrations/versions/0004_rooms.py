"""rooms: rooms, members, messages, calls

Revision ID: 0004_rooms
Revises: 0003_identity_channels
Create Date: 2026-11-23
"""

from server.migrate import run_sql

revision = "0004_rooms"
down_revision = "0003_identity_channels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE rooms (
            id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
            description       text NOT NULL DEFAULT '',
            kind              text NOT NULL CHECK (kind IN ('text', 'voice', 'text_and_voice')),
            max_members       integer NOT NULL CHECK (max_members > 0),
            -- Kept in the same transaction as room_members: the cap is a constraint.
            member_count      integer NOT NULL DEFAULT 0
                              CHECK (member_count >= 0 AND member_count <= max_members),
            -- The per-room sequence: allocated by UPDATE .. SET last_seq = last_seq + 1
            -- RETURNING in the transaction that stores the event (gapless, serialised per room).
            last_seq          bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
            creator_id        uuid NOT NULL REFERENCES identity_users (id),
            create_request_id uuid,
            create_time       timestamptz NOT NULL DEFAULT now(),
            UNIQUE (creator_id, create_request_id)
        );
        CREATE INDEX rooms_listing ON rooms (create_time, id);

        CREATE TABLE room_members (
            room_id   uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
            user_id   uuid NOT NULL REFERENCES identity_users (id),
            join_time timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (room_id, user_id)
        );
        CREATE INDEX room_members_listing ON room_members (room_id, join_time, user_id);
        CREATE INDEX room_members_user ON room_members (user_id);

        CREATE TABLE room_messages (
            id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            room_id         uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
            seq             bigint NOT NULL CHECK (seq > 0),
            sender_id       uuid NOT NULL REFERENCES identity_users (id),
            idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 128),
            body            text NOT NULL CHECK (length(body) > 0),
            create_time     timestamptz NOT NULL DEFAULT now(),
            UNIQUE (room_id, seq),
            UNIQUE (room_id, sender_id, idempotency_key)
        );
        CREATE INDEX room_messages_retention ON room_messages (create_time);

        -- Stored non-message events (membership, calls, signals), replayed on resume.
        -- payload: the event body as JSON (server.rooms.model.body_to_json).
        CREATE TABLE room_events (
            room_id      uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
            seq          bigint NOT NULL CHECK (seq > 0),
            kind         text NOT NULL,
            recipient_id uuid,
            payload      jsonb NOT NULL,
            create_time  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (room_id, seq)
        );
        CREATE INDEX room_events_retention ON room_events (create_time);

        CREATE TABLE room_calls (
            id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            room_id           uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
            max_participants  integer NOT NULL CHECK (max_participants > 0),
            participant_count integer NOT NULL DEFAULT 0
                              CHECK (participant_count >= 0
                                     AND participant_count <= max_participants),
            start_time        timestamptz NOT NULL DEFAULT now(),
            end_time          timestamptz,
            CHECK (end_time IS NULL OR end_time >= start_time)
        );
        -- At most one active call per room.
        CREATE UNIQUE INDEX room_calls_active ON room_calls (room_id) WHERE end_time IS NULL;

        CREATE TABLE room_call_participants (
            call_id      uuid NOT NULL REFERENCES room_calls (id) ON DELETE CASCADE,
            user_id      uuid NOT NULL REFERENCES identity_users (id),
            join_time    timestamptz NOT NULL DEFAULT now(),
            leave_time   timestamptz,
            leave_reason text CHECK (leave_reason IN ('left', 'timeout')),
            CHECK ((leave_time IS NULL) = (leave_reason IS NULL))
        );
        CREATE UNIQUE INDEX room_call_participants_active
            ON room_call_participants (call_id, user_id) WHERE leave_time IS NULL;

        -- SendCallSignal request_ids: a retry finds the first signal's sequence here. The row
        -- is inserted (ON CONFLICT DO NOTHING) in the transaction that stores the signal.
        CREATE TABLE room_call_signal_requests (
            call_id     uuid NOT NULL REFERENCES room_calls (id) ON DELETE CASCADE,
            sender_id   uuid NOT NULL REFERENCES identity_users (id),
            request_id  uuid NOT NULL,
            seq         bigint NOT NULL CHECK (seq > 0),
            create_time timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (call_id, sender_id, request_id)
        );
        CREATE INDEX room_call_signal_requests_retention
            ON room_call_signal_requests (create_time);

        -- ReportCallOutcome request_ids: only the first report of a request_id is counted.
        CREATE TABLE room_call_reports (
            room_id     uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
            call_id     uuid NOT NULL,
            user_id     uuid NOT NULL REFERENCES identity_users (id),
            request_id  uuid NOT NULL,
            outcome     text NOT NULL,
            create_time timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (call_id, user_id, request_id)
        );
        CREATE INDEX room_call_reports_retention ON room_call_reports (create_time);
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP TABLE room_call_reports;
        DROP TABLE room_call_signal_requests;
        DROP TABLE room_call_participants;
        DROP TABLE room_calls;
        DROP TABLE room_events;
        DROP TABLE room_messages;
        DROP TABLE room_members;
        DROP TABLE rooms;
        """
    )
