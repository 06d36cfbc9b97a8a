"""booking: masters, working hours, days off, service options, bookings

Revision ID: 0005_booking
Revises: 0004_rooms
Create Date: 2026-11-23
"""

from server.migrate import run_sql

revision = "0005_booking"
down_revision = "0004_rooms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        -- The no-overlap exclusion constraint below needs GiST to compare master_id for
        -- equality next to the time range. btree_gist would give uuid a GiST operator class,
        -- but the embedded PostgreSQL build the tests and `make dev` run (the pgserver wheel)
        -- ships no contrib extensions. A range type over uuid needs no extension: the
        -- built-in GiST range operator class covers every range type, and the singleton
        -- ranges [a, a] and [b, b] overlap exactly when a = b.
        CREATE TYPE booking_uuid_range AS RANGE (subtype = uuid);

        CREATE TABLE booking_masters (
            id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id            uuid NOT NULL UNIQUE REFERENCES identity_users (id),
            display_name       text NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 100),
            -- The daily lunch break, minutes after local midnight: both or neither.
            lunch_start_minute integer CHECK (lunch_start_minute BETWEEN 0 AND 1439),
            lunch_end_minute   integer CHECK (lunch_end_minute BETWEEN 1 AND 1440),
            active             boolean NOT NULL DEFAULT true,
            -- The CreateMaster request_id: a retry finds the master it created.
            create_request_id  uuid UNIQUE,
            create_time        timestamptz NOT NULL DEFAULT now(),
            update_time        timestamptz NOT NULL DEFAULT now(),
            CHECK ((lunch_start_minute IS NULL) = (lunch_end_minute IS NULL)),
            CHECK (lunch_start_minute IS NULL OR lunch_start_minute < lunch_end_minute)
        );
        CREATE INDEX booking_masters_listing ON booking_masters (display_name, id);
        -- The "booking.master" role check: one index probe per call.
        CREATE INDEX booking_masters_active_user ON booking_masters (user_id) WHERE active;

        CREATE TABLE booking_working_hours (
            master_id    uuid NOT NULL REFERENCES booking_masters (id) ON DELETE CASCADE,
            iso_weekday  integer NOT NULL CHECK (iso_weekday BETWEEN 1 AND 7),
            start_minute integer NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
            end_minute   integer NOT NULL CHECK (end_minute BETWEEN 1 AND 1440),
            CHECK (start_minute < end_minute),
            PRIMARY KEY (master_id, iso_weekday)
        );

        CREATE TABLE booking_days_off (
            master_id uuid NOT NULL REFERENCES booking_masters (id) ON DELETE CASCADE,
            day       date NOT NULL,
            note      text NOT NULL DEFAULT '' CHECK (length(note) <= 200),
            PRIMARY KEY (master_id, day)
        );

        CREATE TABLE booking_services (
            id                text PRIMARY KEY CHECK (id ~ '^[a-z0-9_]{1,64}$'),
            name              text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
            duration_minutes  integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 720),
            price_minor_units bigint NOT NULL CHECK (price_minor_units >= 0),
            currency_code     text NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
            active            boolean NOT NULL DEFAULT true,
            position          integer NOT NULL DEFAULT 0
        );
        INSERT INTO booking_services
            (id, name, duration_minutes, price_minor_units, currency_code, position)
        VALUES
            ('haircut', 'Стрижка', 60, 150000, 'RUB', 1),
            ('beard', 'Борода', 60, 100000, 'RUB', 2),
            ('haircut_beard', 'Стрижка + борода', 90, 220000, 'RUB', 3);

        CREATE TABLE booking_bookings (
            id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            master_id         uuid NOT NULL REFERENCES booking_masters (id),
            service_id        text NOT NULL REFERENCES booking_services (id),
            start_time        timestamptz NOT NULL,
            end_time          timestamptz NOT NULL,
            status            text NOT NULL DEFAULT 'active'
                              CHECK (status IN ('active', 'cancelled', 'completed')),
            source            text NOT NULL CHECK (source IN ('client', 'manual')),
            client_user_id    uuid REFERENCES identity_users (id),
            client_name       text NOT NULL DEFAULT '' CHECK (length(client_name) <= 100),
            client_phone      text CHECK (length(client_phone) <= 32),
            price_minor_units bigint NOT NULL CHECK (price_minor_units >= 0),
            currency_code     text NOT NULL,
            -- Who made it (the client, or the master for a manual booking), and the caller's
            -- request_id: a retry finds the booking that request made.
            created_by        uuid NOT NULL REFERENCES identity_users (id),
            request_id        uuid,
            create_time       timestamptz NOT NULL DEFAULT now(),
            cancel_time       timestamptz,
            cancelled_by      text CHECK (cancelled_by IN ('client', 'master')),
            cancel_reason     text NOT NULL DEFAULT '' CHECK (length(cancel_reason) <= 500),
            CHECK (end_time > start_time),
            CHECK ((source = 'client') = (client_user_id IS NOT NULL)),
            CHECK ((source = 'manual') = (client_phone IS NOT NULL)),
            CHECK ((status = 'cancelled') = (cancel_time IS NOT NULL)),
            CHECK ((status = 'cancelled') = (cancelled_by IS NOT NULL)),
            CHECK (cancelled_by IS DISTINCT FROM 'master' OR length(btrim(cancel_reason)) > 0),
            UNIQUE (created_by, request_id),
            -- No two bookings of one master overlap, unless cancelled.
            CONSTRAINT booking_bookings_no_overlap EXCLUDE USING gist (
                booking_uuid_range(master_id, master_id, '[]') WITH &&,
                tstzrange(start_time, end_time, '[)') WITH &&
            ) WHERE (status <> 'cancelled')
        );
        -- At most one active booking per client (past ones are completed first, in the
        -- inserting transaction and by the periodic sweep).
        CREATE UNIQUE INDEX booking_bookings_one_active
            ON booking_bookings (client_user_id)
            WHERE status = 'active' AND client_user_id IS NOT NULL;
        CREATE INDEX booking_bookings_master_start ON booking_bookings (master_id, start_time, id);
        CREATE INDEX booking_bookings_client_start
            ON booking_bookings (client_user_id, start_time, id) WHERE client_user_id IS NOT NULL;
        -- The completion sweep: active bookings by end time.
        CREATE INDEX booking_bookings_active_end ON booking_bookings (end_time)
            WHERE status = 'active';
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP TABLE booking_bookings;
        DROP TABLE booking_services;
        DROP TABLE booking_days_off;
        DROP TABLE booking_working_hours;
        DROP TABLE booking_masters;
        DROP TYPE booking_uuid_range;
        """
    )
