"""The composition root: the one place that wires config, pools, domains and the server."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import BlockingConnectionPool, Redis
from switchboard.booking.v1 import booking_pb2, booking_pb2_grpc
from switchboard.identity.v1 import channels_pb2, channels_pb2_grpc, identity_pb2, identity_pb2_grpc
from switchboard.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from switchboard.rooms.v1 import calls_pb2, calls_pb2_grpc, rooms_pb2, rooms_pb2_grpc

from server import migrate
from server.booking.api import BookingAdminApi, BookingApi, MasterApi
from server.booking.repository import BookingRepository
from server.booking.service import BookingConfig, BookingService
from server.config import Settings
from server.identity.api import AdminApi, AuthApi, ChannelApi
from server.identity.model import email_code_key
from server.identity.repository import IdentityRepository
from server.identity.service import IdentityConfig, IdentityService
from server.kernel import logs, metrics
from server.kernel.broadcast import Broadcast
from server.kernel.crypto import SecretBox, decode_key
from server.kernel.fanout import Fanout
from server.kernel.health import HealthMonitor
from server.kernel.methods import MethodRegistry, contract_services
from server.kernel.pipeline import Pipeline
from server.kernel.ratelimit import Bucket, RateLimiter
from server.notifications import repository as notifications_repository
from server.notifications.api import NotificationAdminApi, NotificationApi
from server.notifications.model import Notice
from server.notifications.repository import NotificationsRepository
from server.notifications.service import NotificationsConfig, NotificationsService
from server.rooms.api import CallApi, RoomApi
from server.rooms.repository import PresenceRepository, RoomsRepository
from server.rooms.service import RoomsConfig, RoomsService, RoomStreams, room_stream

log = logging.getLogger("switchboard.server")


class StartupError(Exception):
    """The server cannot start; the message says why in one line."""


@dataclass
class Domain:
    """What one enabled domain contributes: servicers, their contract, what they need."""

    name: str
    register: list[tuple[object, object]] = field(default_factory=list)  # (add_fn, servicer)
    services: list[ServiceDescriptor] = field(default_factory=list)
    needs: tuple[str, ...] = ("postgres", "redis")


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def identity_config(settings: Settings) -> IdentityConfig:
    return IdentityConfig(
        env=settings.env,
        login_bot_token=settings.login_bot_token,
        login_bot_username=settings.login_bot_username,
        telegram_auth_max_age=timedelta(seconds=settings.telegram_auth_max_age_s),
        session_ttl_s=settings.session_ttl_s,
        handshake_ttl_s=settings.handshake_ttl_s,
        handshake_heartbeat_s=settings.handshake_heartbeat_s,
        super_admin_telegram_ids=frozenset(settings.super_admin_telegram_ids),
        super_admin_emails=frozenset(e.lower() for e in settings.super_admin_emails),
        dev_login_enabled=settings.dev_login_enabled,
        service_principals={
            name: frozenset(p.scopes) for name, p in settings.service_principals.items()
        },
        service_tokens=settings.service_tokens(),
        session_cache_ttl_s=settings.session_cache_ttl_s,
        email_code_key=email_code_key(decode_key(settings.data_key.get_secret_value())),
        email_code_ttl_s=settings.email_code_ttl_s,
        email_code_max_attempts=settings.email_code_max_attempts,
        email_code_min_interval_s=settings.email_code_min_interval_s,
        email_code_max_per_hour=settings.email_code_max_per_hour,
        channel_binding_ttl_s=settings.channel_binding_ttl_s,
    )


def notifications_config(settings: Settings) -> NotificationsConfig:
    return NotificationsConfig(
        global_rate=settings.notifications_global_rate,
        per_chat_interval_s=settings.notifications_per_chat_interval_s,
        max_attempts=settings.notifications_max_attempts,
        backoff_base_s=settings.notifications_backoff_base_s,
        backoff_cap_s=settings.notifications_backoff_cap_s,
        lease_s=settings.notifications_lease_s,
        lease_ahead_s=settings.notifications_lease_ahead_s,
    )


def rooms_config(settings: Settings) -> RoomsConfig:
    return RoomsConfig(
        max_members=settings.rooms_max_members,
        max_message_length=settings.rooms_max_message_length,
        call_max_participants=settings.rooms_call_max_participants,
        retention_days=settings.rooms_retention_days,
        retention_interval_s=settings.rooms_retention_interval_s,
        presence_ttl_s=settings.rooms_presence_ttl_s,
        stun_urls=tuple(settings.stun_urls),
        turn_urls=tuple(settings.turn_urls),
        turn_credential_ttl_s=settings.turn_credential_ttl_s,
        turn_secret=settings.turn_secret,
    )


def booking_config(settings: Settings) -> BookingConfig:
    return BookingConfig(
        time_zone=settings.booking_time_zone,
        slot_minutes=settings.booking_slot_minutes,
        reminder_offsets_minutes=tuple(settings.booking_reminder_offsets_minutes),
        max_range_days=settings.booking_max_range_days,
        completion_interval_s=settings.booking_completion_interval_s,
    )


async def _connect(settings: Settings) -> tuple[asyncpg.Pool, Redis]:
    try:
        pool = await asyncpg.create_pool(
            settings.pg_dsn,
            min_size=settings.pg_pool_min,
            max_size=settings.pg_pool_max,
            timeout=10,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(f"cannot connect to PostgreSQL (SWITCHBOARD_PG_DSN): {exc}") from None
    try:
        await migrate.ensure_at_head(pool)
    except migrate.SchemaNotAtHead as exc:
        await pool.close()
        raise StartupError(str(exc)) from None
    # A blocking pool: a burst (say 200 streams subscribing at once) waits for a connection
    # rather than failing with MaxConnectionsError and losing a publish.
    redis = Redis.from_pool(
        BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_pool_max,
            timeout=2,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
    )
    return pool, redis


async def serve(settings: Settings) -> None:
    access_log = logs.configure(settings.log_level, settings.secret_values())
    pool, redis = await _connect(settings)
    stopping = asyncio.Event()

    invalidations = Broadcast(redis, "sb:identity:invalidate")
    data_box = SecretBox.from_text(settings.data_key.get_secret_value())

    async def identity_outbox(connection: asyncpg.Connection, notice: Notice) -> bool:
        # Identity's notices go into the outbox inside identity's own transaction.
        return await notifications_repository.enqueue(connection, data_box, notice)

    identity = IdentityService(
        IdentityRepository(pool),
        identity_config(settings),
        stopping=stopping,
        publish=invalidations.publish,
        outbox=identity_outbox,
    )
    await identity.bootstrap()
    background = [asyncio.create_task(invalidations.listen(identity.apply_invalidation))]
    domains = [
        Domain(
            name="identity",
            register=[
                (identity_pb2_grpc.add_AuthServiceServicer_to_server, AuthApi(identity)),
                (identity_pb2_grpc.add_AdminServiceServicer_to_server, AdminApi(identity)),
                (channels_pb2_grpc.add_ChannelServiceServicer_to_server, ChannelApi(identity)),
            ],
            services=[
                *identity_pb2.DESCRIPTOR.services_by_name.values(),
                *channels_pb2.DESCRIPTOR.services_by_name.values(),
            ],
        )
    ]
    notifications = NotificationsService(
        NotificationsRepository(pool), data_box, notifications_config(settings)
    )
    domains.append(
        Domain(
            name="notifications",
            register=[
                (
                    notifications_pb2_grpc.add_NotificationServiceServicer_to_server,
                    NotificationApi(notifications),
                ),
                (
                    notifications_pb2_grpc.add_NotificationAdminServiceServicer_to_server,
                    NotificationAdminApi(notifications),
                ),
            ],
            services=list(notifications_pb2.DESCRIPTOR.services_by_name.values()),
        )
    )
    rooms_repo = RoomsRepository(pool)
    rooms_live: RoomStreams = Fanout(
        redis,
        room_stream(rooms_repo),
        buffer_size=settings.rooms_live_buffer_size,
        tick_s=settings.rooms_heartbeat_s,
    )
    room_messages = Bucket(settings.rooms_message_rate_per_s, settings.rooms_message_burst)
    rooms = RoomsService(
        rooms_repo,
        rooms_live,
        PresenceRepository(redis, settings.rooms_presence_ttl_s),
        rooms_config(settings),
        stopping=stopping,
        limiter=(
            RateLimiter(redis, {"message": room_messages}, prefix="sb:rl:rooms")
            if settings.rate_limit_enabled
            else None
        ),
    )
    domains.append(
        Domain(
            name="rooms",
            register=[
                (rooms_pb2_grpc.add_RoomServiceServicer_to_server, RoomApi(rooms)),
                (calls_pb2_grpc.add_CallServiceServicer_to_server, CallApi(rooms)),
            ],
            services=[
                *rooms_pb2.DESCRIPTOR.services_by_name.values(),
                *calls_pb2.DESCRIPTOR.services_by_name.values(),
            ],
        )
    )
    booking = BookingService(
        BookingRepository(pool),
        booking_config(settings),
        outbox=identity_outbox,  # the same transactional outbox, in booking's transactions
        withdraw_prefix=notifications_repository.withdraw_prefix,
    )
    domains.append(
        Domain(
            name="booking",
            register=[
                (booking_pb2_grpc.add_BookingServiceServicer_to_server, BookingApi(booking)),
                (booking_pb2_grpc.add_MasterServiceServicer_to_server, MasterApi(booking)),
                (
                    booking_pb2_grpc.add_BookingAdminServiceServicer_to_server,
                    BookingAdminApi(booking),
                ),
            ],
            services=list(booking_pb2.DESCRIPTOR.services_by_name.values()),
        )
    )
    enabled = [d for d in domains if d.name in settings.domains]
    if "rooms" in settings.domains:
        background.append(asyncio.create_task(rooms_live.run(on_tick=rooms.sweep_presence)))
        background.append(asyncio.create_task(rooms.run_retention()))
    if "notifications" in settings.domains:
        background.append(asyncio.create_task(notifications.maintain()))
    if "booking" in settings.domains:
        background.append(asyncio.create_task(booking.run_completion()))

    limiter = (
        RateLimiter(
            redis, {name: Bucket(b.rate, b.burst) for name, b in settings.rate_limits.items()}
        )
        if settings.rate_limit_enabled
        else None
    )
    server = grpc.aio.server(
        interceptors=[
            Pipeline(
                MethodRegistry(contract_services()),
                authenticator=identity,
                audit=identity,
                limiter=limiter,
                trusted_proxies=settings.trusted_proxies,
                access_log=access_log,
                domain_roles={"booking.master": booking.is_master},
            )
        ],
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    for domain in enabled:
        for add, servicer in domain.register:
            add(servicer, server)  # type: ignore[operator]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = [s.full_name for d in enabled for s in d.services]
    reflection.enable_server_reflection(
        [*service_names, "grpc.health.v1.Health", reflection.SERVICE_NAME], server
    )

    async def postgres_probe() -> None:
        await pool.fetchval("SELECT 1")

    async def redis_probe() -> None:
        await redis.ping()

    monitor = HealthMonitor(
        health_servicer,
        {"postgres": postgres_probe, "redis": redis_probe},
        {s.full_name: d.needs for d in enabled for s in d.services},
    )
    await monitor.check_once()

    host, port = _split_addr(settings.grpc_addr)
    bound = server.add_insecure_port(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    if bound == 0:
        raise StartupError(f"cannot listen on {settings.grpc_addr} (SWITCHBOARD_GRPC_ADDR)")
    metrics_host, metrics_port = _split_addr(settings.metrics_addr)
    try:
        metrics.serve_metrics(metrics_host, metrics_port)
    except OSError as exc:
        raise StartupError(f"cannot serve metrics on {settings.metrics_addr}: {exc}") from None
    await server.start()
    background.append(asyncio.create_task(monitor.run()))
    log.info(
        "serving",
        extra={
            "grpc_addr": settings.grpc_addr,
            "metrics_addr": settings.metrics_addr,
            "domains": [d.name for d in enabled],
            "env": settings.env,
        },
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    await monitor.shutdown()
    for task in background:
        task.cancel()
    stopping.set()  # streams end promptly; unary calls in flight get the grace period
    rooms_live.close()
    await server.stop(settings.shutdown_grace_s)
    await redis.aclose()
    await pool.close()
    log.info("stopped")
