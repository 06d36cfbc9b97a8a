"""Best-effort messages to every replica over Redis pub/sub (cache invalidation and the like).

Publishing never fails the caller: if Redis is down the message is lost and whoever relies on
it must tolerate that (caches bound their staleness with a TTL). The listener reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Broadcast:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel

    async def publish(self, message: str) -> None:
        try:
            await self._redis.publish(self._channel, message)
        except (RedisError, OSError) as exc:
            log.warning(
                "broadcast lost", extra={"channel": self._channel, "error": type(exc).__name__}
            )

    async def listen(self, handle: Callable[[str], None], *, retry_s: float = 1.0) -> None:
        """Call ``handle`` for every message until cancelled, reconnecting after failures."""
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):
                            handle(data.decode())
            except (RedisError, OSError) as exc:
                log.warning("broadcast listener reconnecting", extra={"error": type(exc).__name__})
                await asyncio.sleep(retry_s)
