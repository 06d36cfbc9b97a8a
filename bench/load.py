"""Load shapes and statistics: a closed loop at fixed concurrency, and sequential batches."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Call = Callable[[], Awaitable[Any]]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class WindowOptions:
    """Closed-loop windows of each target, interleaved: calls in flight, warm-up seconds per
    target, seconds per target per round, rounds."""

    concurrency: int
    warmup: float
    window: float
    rounds: int

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, *, warmup: float, note: str = "") -> None:
        """--concurrency, --warmup, --window and --rounds (``note`` ends their help)."""
        parser.add_argument("--concurrency", type=int, default=32)
        parser.add_argument(
            "--warmup", type=float, default=warmup, help=f"seconds per target{note}"
        )
        parser.add_argument(
            "--window", type=float, default=5.0, help=f"seconds per target per round{note}"
        )
        parser.add_argument("--rounds", type=int, default=3, help=f"rounds{note}")

    @staticmethod
    def from_args(args: argparse.Namespace) -> dict[str, Any]:
        """The parsed arguments of :meth:`add_arguments`, as this class's fields."""
        return {
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "window": args.window,
            "rounds": args.rounds,
        }


@dataclass
class Window:
    """Calls completed in one or more measured windows (latencies in seconds)."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""
    rates: list[float] = field(default_factory=list)  # req/s of each window, for the spread

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return 1000.0 * percentile(sorted(self.latencies), q)

    def merge(self, other: Window) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies.extend(other.latencies)
        self.first_error = self.first_error or other.first_error
        self.rates.extend(other.rates)

    def summary(self) -> dict[str, float | int | list[float]]:
        values = sorted(self.latencies)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "req_per_s": round(self.rate, 1),
            "window_req_per_s": [round(r, 1) for r in self.rates],
            "p50_ms": round(1000 * percentile(values, 50), 3),
            "p95_ms": round(1000 * percentile(values, 95), 3),
            "p99_ms": round(1000 * percentile(values, 99), 3),
            "mean_ms": round(1000 * sum(values) / len(values), 3) if values else math.nan,
        }


async def closed_loop(call: Call, concurrency: int, seconds: float) -> Window:
    """`concurrency` tasks, each calling back to back until `seconds` have passed.

    Throughput is completed calls over the time until the last in-flight call returned.
    """
    clock = time.perf_counter
    window = Window()
    latencies = window.latencies
    start = clock()
    deadline = start + seconds

    async def worker() -> None:
        while True:
            t0 = clock()
            if t0 >= deadline:
                return
            try:
                await call()
            except Exception as exc:
                window.errors += 1
                window.first_error = window.first_error or repr(exc)[:300]
                continue
            latencies.append(clock() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    window.seconds = clock() - start
    window.requests = len(latencies)
    window.rates.append(window.rate)
    return window


async def sequential(call: Call, count: int) -> Window:
    """`count` calls one after the other."""
    clock = time.perf_counter
    window = Window()
    start = clock()
    for _ in range(count):
        t0 = clock()
        try:
            await call()
        except Exception as exc:
            window.errors += 1
            window.first_error = window.first_error or repr(exc)[:300]
            continue
        window.latencies.append(clock() - t0)
    window.seconds = clock() - start
    window.requests = len(window.latencies)
    window.rates.append(window.rate)
    return window
