"""The real platform for integration and end-to-end tests.

One embedded PostgreSQL and Redis per test run (each test module may ask for a fresh
database), the server as a child process, and Envoy in front of it. Secrets are random per
run and recorded, so a test can prove that none of them reached the logs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from server.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from server.devstack.processes import ServerProcess, run_migrate
from server.kernel.crypto import generate_key

ROOT = Path(__file__).resolve().parents[2]
SUPER_ADMIN_TELEGRAM_ID = 900_000_001


@dataclass
class Secrets:
    login_bot_token: str = field(
        default_factory=lambda: f"{secrets.randbelow(10**9)}:" + secrets.token_urlsafe(30)
    )
    login_bot_service_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # The booking bot (bots/booking): its Telegram token and its principal's service token.
    booking_bot_token: str = field(
        default_factory=lambda: f"{secrets.randbelow(10**9)}:" + secrets.token_urlsafe(30)
    )
    booking_bot_service_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    plain_worker_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    dispatcher_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    data_key: str = field(default_factory=generate_key)
    # coturn static-auth-secret (rooms: GetIceServers TURN credentials).
    turn_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Session tokens handed out during the run (tests append what they receive).
    issued: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [
            self.login_bot_token,
            self.login_bot_service_token,
            self.booking_bot_token,
            self.booking_bot_service_token,
            self.plain_worker_token,
            self.dispatcher_token,
            self.data_key,
            self.turn_secret,
            *self.issued,
        ]


@dataclass
class Infra:
    workdir: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis

    def fresh_database(self, name: str) -> str:
        self.postgres.drop_database(name)
        return self.postgres.create_database(name)


@contextmanager
def infra(workdir: Path) -> Iterator[Infra]:
    postgres = EmbeddedPostgres(workdir / "postgres", fsync=False)
    redis = EmbeddedRedis(workdir / "redis")
    postgres.start()
    try:
        redis.start()
        try:
            yield Infra(workdir, postgres, redis)
        finally:
            redis.stop()
    finally:
        postgres.stop()


def server_env(
    pg_dsn: str,
    redis_url: str,
    secrets_: Secrets,
    *,
    env: str = "test",
    metrics_port: int | None = None,
) -> dict[str, str]:
    return {
        "SWITCHBOARD_ENV": env,
        "SWITCHBOARD_PG_DSN": pg_dsn,
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_METRICS_ADDR": f"127.0.0.1:{metrics_port or free_port()}",
        "SWITCHBOARD_LOGIN_BOT_TOKEN": secrets_.login_bot_token,
        "SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT": secrets_.login_bot_service_token,
        "SWITCHBOARD_SERVICE_TOKEN_BOOKING_BOT": secrets_.booking_bot_service_token,
        "SWITCHBOARD_SERVICE_TOKEN_PLAIN_WORKER": secrets_.plain_worker_token,
        "SWITCHBOARD_SERVICE_TOKEN_DISPATCHER": secrets_.dispatcher_token,
        "SWITCHBOARD_DATA_KEY": secrets_.data_key,
        "SWITCHBOARD_TURN_SECRET": secrets_.turn_secret,
        "SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS": str(SUPER_ADMIN_TELEGRAM_ID),
        "SWITCHBOARD_CONFIG_DIR": str(ROOT / "configs"),
    }


def migrate(pg_dsn: str, log_path: Path) -> None:
    run_migrate({"SWITCHBOARD_PG_DSN": pg_dsn}, log_path=log_path, cwd=ROOT)


def start_server(env: dict[str, str], log_path: Path, *, wait: bool = True) -> ServerProcess:
    server = ServerProcess(env, grpc_addr=f"127.0.0.1:{free_port()}", log_path=log_path, cwd=ROOT)
    return server.start(wait=wait)
