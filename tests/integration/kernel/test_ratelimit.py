"""The Redis token bucket with local leases, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from server.kernel.errors import ResourceExhausted
from server.kernel.ratelimit import Bucket, RateLimiter
from tests.support.stack import Infra


@pytest.fixture
async def redis(stack_infra: Infra) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack_infra.redis.url)
    yield client
    await client.aclose()


def _limiter(redis: Redis, prefix: str, rate: float = 0.01, burst: int = 30) -> RateLimiter:
    return RateLimiter(redis, {"read": Bucket(rate=rate, burst=burst)}, prefix=prefix)


async def _outcomes(limiter: RateLimiter, n: int, subject: str = "user:1") -> list[bool]:
    async def one() -> bool:
        try:
            await limiter.take("read", subject)
        except ResourceExhausted:
            return False
        return True

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_concurrent_callers_get_exactly_the_burst(redis: Redis) -> None:
    limiter = _limiter(redis, f"t-{uuid.uuid4()}")
    assert sum(await _outcomes(limiter, 45)) == 30


async def test_replicas_share_one_bucket(redis: Redis) -> None:
    prefix = f"t-{uuid.uuid4()}"
    a, b = _limiter(redis, prefix), _limiter(redis, prefix)
    got = await asyncio.gather(_outcomes(a, 25), _outcomes(b, 25))
    assert sum(got[0]) + sum(got[1]) == 30
    # Subjects and classes have their own buckets.
    assert sum(await _outcomes(a, 5, subject="user:2")) == 5


async def test_a_refusal_is_remembered_locally(redis: Redis) -> None:
    limiter = _limiter(redis, f"t-{uuid.uuid4()}", rate=1, burst=10)
    calls = 0
    script = limiter._script

    async def counting(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await script(**kwargs)

    limiter._script = counting  # type: ignore[assignment]
    assert sum(await _outcomes(limiter, 10)) == 10
    before = calls
    with pytest.raises(ResourceExhausted) as caught:
        await limiter.take("read", "user:1")
    assert 0 < caught.value.retry_after_s <= 1.0
    for _ in range(20):
        with pytest.raises(ResourceExhausted):
            await limiter.take("read", "user:1")
    assert calls == before + 1, "refusals until the retry time must not call Redis"
    await asyncio.sleep(caught.value.retry_after_s + 0.05)
    await limiter.take("read", "user:1")


async def test_unreachable_redis_lets_calls_through() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        assert await _outcomes(_limiter(dead, "t-dead", burst=1), 3) == [True, True, True]
    finally:
        await dead.aclose()
