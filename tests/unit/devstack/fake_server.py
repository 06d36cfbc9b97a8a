"""A stand-in for `switchboard serve` in the devstack tests: grpc.health.v1 only.

SWITCHBOARD_GRPC_ADDR: where to listen. FAKE_DELAY: seconds before serving.
FAKE_IGNORE_TERM=1: ignore SIGTERM (to test the SIGKILL fallback).
Prints "graceful stop" on SIGTERM and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


async def main() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(os.environ["SWITCHBOARD_GRPC_ADDR"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if os.environ.get("FAKE_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.sleep(float(os.environ.get("FAKE_DELAY", "0")))
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print("serving", os.environ.get("SWITCHBOARD_PG_DSN", "-"), flush=True)
    await stop.wait()
    print("graceful stop", flush=True)
    await server.stop(5)


if __name__ == "__main__":
    asyncio.run(main())
