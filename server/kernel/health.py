"""grpc.health.v1 per domain service: NOT_SERVING while a dependency it needs is down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]


class HealthMonitor:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        probes: Mapping[str, Probe],
        needs: Mapping[str, Sequence[str]],  # service name -> dependency names
        *,
        interval_s: float = 2.0,
        timeout_s: float = 1.0,
    ) -> None:
        self._servicer = servicer
        self._probes = probes
        self._needs = needs
        self._interval = interval_s
        self._timeout = timeout_s
        self._down: set[str] = set()

    async def _probe(self, name: str, probe: Probe) -> bool:
        try:
            await asyncio.wait_for(probe(), timeout=self._timeout)
        except Exception as exc:
            if name not in self._down:
                log.warning(
                    "dependency down", extra={"dependency": name, "error": type(exc).__name__}
                )
            return False
        if name in self._down:
            log.info("dependency up", extra={"dependency": name})
        return True

    async def check_once(self) -> None:
        results = await asyncio.gather(*(self._probe(n, p) for n, p in self._probes.items()))
        self._down = {name for name, ok in zip(self._probes, results, strict=True) if not ok}
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        overall = serving
        for service, deps in self._needs.items():
            ok = not (set(deps) & self._down)
            await self._servicer.set(service, serving if ok else not_serving)
            if not ok:
                overall = not_serving
        await self._servicer.set("", overall)

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._interval)

    async def shutdown(self) -> None:
        """Tell load balancers to stop sending before the server stops accepting."""
        await self._servicer.enter_graceful_shutdown()
