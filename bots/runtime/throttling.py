"""Per-user throttling (seed 000, EPIC-009: abuse control on Telegram-facing command paths).

A fixed window per Telegram user: at most ``rate`` updates per ``window`` seconds are handled.
Updates beyond that are dropped before they cost a server call; the first dropped update of a
window gets one polite answer, later ones in the same window get none (a flood must not make the
bot flood back).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Decision", "Throttle"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: True for the first refused update of a window: answer it (once).
    notify: bool = False
    #: Seconds until the window ends (when refused).
    retry_after: float = 0.0

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after))


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0
    warned: bool = False


class Throttle:
    """Fixed-window counters by key (a Telegram user id)."""

    def __init__(
        self,
        rate: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be >= 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.rate = rate
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[int, _Window] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, key: int) -> Decision:
        now = self._clock()
        current = self._windows.get(key)
        if current is None or now - current.start >= self.window:
            if current is None and len(self._windows) >= self._max_keys:
                self._prune(now)
            current = _Window(now)
            self._windows[key] = current
        current.count += 1
        if current.count <= self.rate:
            return Decision(True)
        notify = not current.warned
        current.warned = True
        return Decision(False, notify, current.start + self.window - now)

    def _prune(self, now: float) -> None:
        """Forgets finished windows; if all are live, the oldest half (memory stays bounded)."""
        expired = [k for k, w in self._windows.items() if now - w.start >= self.window]
        for k in expired:
            del self._windows[k]
        if len(self._windows) >= self._max_keys:
            oldest = sorted(self._windows, key=lambda k: self._windows[k].start)
            for k in oldest[: len(oldest) // 2]:
                del self._windows[k]
