"""Token buckets in Redis, one per (method class, principal or client address).

The bucket lives in Redis so every replica shares it. To keep Redis off the hot path a
replica *leases* a few tokens at a time (a tenth of the burst, at most 100) with one atomic
Lua call and spends them locally; leased tokens not spent within a second are dropped, so a
replica cannot hoard them. A refusal is remembered locally until its retry time, so a caller
hammering past its limit costs no Redis call either. If Redis cannot be reached the call is
let through (availability over strictness) and a warning is logged: the limiter protects the
service, it must not take it down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.kernel.errors import ResourceExhausted

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate (tokens/s), burst, now (ms), wanted.
# Returns {granted, retry_after_ms}: granted in 1..wanted, or 0 with the wait for one token.
_LEASE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + (math.max(0, now - ts) / 1000.0) * rate)
local granted = math.min(math.floor(tokens), wanted)
local retry_ms = 0
if granted >= 1 then
  tokens = tokens - granted
else
  granted = 0
  retry_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, retry_ms}
"""

LEASE_TTL_S = 1.0
MAX_LEASE = 100


@dataclass(frozen=True, slots=True)
class Bucket:
    rate: float  # tokens per second
    burst: int

    @property
    def lease(self) -> int:
        return max(1, min(MAX_LEASE, self.burst // 10))


@dataclass(slots=True)
class _Local:
    tokens: int = 0
    expires: float = 0.0  # leased tokens are void after this (monotonic)
    blocked_until: float = 0.0  # refused until this (monotonic)
    # One lease in flight per bucket: concurrent callers wait for it, then spend its tokens.
    leasing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def spend(self, now: float, rate_class: str) -> bool:
        """Take a local token (True), refuse while blocked (raises), or say a lease is needed."""
        if self.tokens > 0 and now < self.expires:
            self.tokens -= 1
            return True
        if now < self.blocked_until:
            raise _refusal(rate_class, self.blocked_until - now)
        return False


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        buckets: dict[str, Bucket],
        *,
        prefix: str = "sb:rl",
        max_keys: int = 50_000,
    ) -> None:
        self._redis = redis
        self._buckets = buckets
        self._prefix = prefix
        self._max_keys = max_keys
        self._script = redis.register_script(_LEASE)
        self._local: dict[str, _Local] = {}

    async def take(self, rate_class: str, subject: str) -> None:
        bucket = self._buckets.get(rate_class)
        if bucket is None:
            return
        key = f"{self._prefix}:{rate_class}:{subject}"
        local = self._local.get(key)
        if local is None:
            if len(self._local) >= self._max_keys:
                self._local.clear()  # bounded memory; at worst a few extra Redis calls
            local = self._local[key] = _Local()
        if local.spend(time.monotonic(), rate_class):
            return
        async with local.leasing:
            if local.spend(time.monotonic(), rate_class):
                return  # a concurrent caller's lease left a token
            try:
                granted, retry_ms = await self._script(
                    keys=[key],
                    args=[bucket.rate, bucket.burst, int(time.time() * 1000), bucket.lease],
                )
            except (RedisError, OSError) as exc:
                log.warning(
                    "rate limiter unavailable, letting the call through: %s", type(exc).__name__
                )
                return
            now = time.monotonic()
            if int(granted) >= 1:
                local.tokens, local.expires = int(granted) - 1, now + LEASE_TTL_S
                return
            retry = max(int(retry_ms), 1) / 1000.0
            local.tokens, local.blocked_until = 0, now + retry
            raise _refusal(rate_class, retry)


def _refusal(rate_class: str, retry_s: float) -> ResourceExhausted:
    return ResourceExhausted(
        "RATE_LIMITED",
        f"too many requests; retry after {retry_s:.3f}s",
        retry_after_s=retry_s,
        metadata={"rate_class": rate_class},
    )
