"""Healthcheck of the server image: grpc.health.v1 Check, exit 0 only when SERVING.

    server_healthcheck.py [SERVICE]

SERVICE defaults to "" (the whole server: NOT_SERVING while PostgreSQL or Redis is down).
The address is SWITCHBOARD_GRPC_ADDR (a wildcard host is checked on loopback).
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def target(grpc_addr: str) -> str:
    host, _, port = grpc_addr.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a wildcard is checked on loopback
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main(argv: list[str]) -> int:
    service = argv[0] if argv else ""
    address = target(os.environ.get("SWITCHBOARD_GRPC_ADDR", "127.0.0.1:50051"))
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3.0)
        except grpc.RpcError as exc:
            print(f"unhealthy: {address}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{address} {service or '(all)'}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
