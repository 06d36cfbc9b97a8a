"""Token buckets in Redis, one per (method class, principal or client address).

One Lua script refills and takes a token atomically, so every replica shares the same
bucket. If Redis cannot be reached the call is let through (availability over strictness)
and a warning is logged: the limiter protects the service, it must not take it down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.kernel.errors import ResourceExhausted

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate (tokens/s), burst, now (ms). Returns {allowed, retry_after_ms}.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + (math.max(0, now - ts) / 1000.0) * rate)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, retry_ms}
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    rate: float  # tokens per second
    burst: int


class RateLimiter:
    def __init__(self, redis: Redis, buckets: dict[str, Bucket], *, prefix: str = "sb:rl") -> None:
        self._redis = redis
        self._buckets = buckets
        self._prefix = prefix
        self._script = redis.register_script(_TAKE)

    async def take(self, rate_class: str, subject: str) -> None:
        bucket = self._buckets.get(rate_class)
        if bucket is None:
            return
        key = f"{self._prefix}:{rate_class}:{subject}"
        try:
            allowed, retry_ms = await self._script(
                keys=[key], args=[bucket.rate, bucket.burst, int(time.time() * 1000)]
            )
        except (RedisError, OSError) as exc:
            log.warning(
                "rate limiter unavailable, letting the call through: %s", type(exc).__name__
            )
            return
        if not int(allowed):
            retry = max(int(retry_ms), 1) / 1000.0
            raise ResourceExhausted(
                "RATE_LIMITED",
                f"too many requests; retry after {retry:.3f}s",
                retry_after_s=retry,
                metadata={"rate_class": rate_class},
            )
