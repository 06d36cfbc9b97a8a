"""Prometheus metrics with go-grpc-prometheus names, served on the metrics port."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

STARTED = Counter(
    "grpc_server_started_total",
    "Total number of RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
HANDLED = Counter(
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level "
    "handled by the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def serve_metrics(host: str, port: int) -> None:
    """Start the scrape endpoint in a background thread (prometheus-client's own server)."""
    start_http_server(port, addr=host)


class MethodMetrics:
    """One RPC's metric children, resolved once (label lookups are costly on the hot path)."""

    def __init__(self, grpc_type: str, service: str, method: str) -> None:
        self._labels = (grpc_type, service, method)
        self.started = STARTED.labels(*self._labels)
        self.seconds = HANDLING_SECONDS.labels(*self._labels)
        self._handled: dict[str, Counter] = {}

    def handled(self, code: str) -> Counter:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = HANDLED.labels(*self._labels, code)
        return child
