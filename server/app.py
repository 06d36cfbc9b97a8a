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
from redis.asyncio import Redis
from switchboard.identity.v1 import identity_pb2, identity_pb2_grpc

from server import migrate
from server.config import Settings
from server.identity.api import AdminApi, AuthApi
from server.identity.repository import IdentityRepository
from server.identity.service import IdentityConfig, IdentityService
from server.kernel import logs, metrics
from server.kernel.broadcast import Broadcast
from server.kernel.health import HealthMonitor
from server.kernel.methods import MethodRegistry, contract_services
from server.kernel.pipeline import Pipeline
from server.kernel.ratelimit import Bucket, RateLimiter

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
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    return pool, redis


async def serve(settings: Settings) -> None:
    access_log = logs.configure(settings.log_level, settings.secret_values())
    pool, redis = await _connect(settings)
    stopping = asyncio.Event()

    invalidations = Broadcast(redis, "sb:identity:invalidate")
    identity = IdentityService(
        IdentityRepository(pool),
        identity_config(settings),
        stopping=stopping,
        publish=invalidations.publish,
    )
    await identity.bootstrap()
    background = [asyncio.create_task(invalidations.listen(identity.apply_invalidation))]
    domains = [
        Domain(
            name="identity",
            register=[
                (identity_pb2_grpc.add_AuthServiceServicer_to_server, AuthApi(identity)),
                (identity_pb2_grpc.add_AdminServiceServicer_to_server, AdminApi(identity)),
            ],
            services=list(identity_pb2.DESCRIPTOR.services_by_name.values()),
        )
    ]
    enabled = [d for d in domains if d.name in settings.domains]

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
    await server.stop(settings.shutdown_grace_s)
    await redis.aclose()
    await pool.close()
    log.info("stopped")
