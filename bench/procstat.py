"""CPU time of processes (and their descendants) and of the whole machine, from Linux /proc.

Used to say where the CPU went during a measured window: a snapshot before, one after, and
the difference per named group of processes ("server", "postgres", ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TICK = float(os.sysconf("SC_CLK_TCK"))
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ..." and comm may contain spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def _cpu_seconds(fields: list[str]) -> float:
    # Fields 14 and 15 of proc(5) (utime, stime), counted from the state field (3): all threads.
    return (int(fields[11]) + int(fields[12])) / _TICK


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def tree(root: int, parents: Mapping[int, int]) -> set[int]:
    """`root` and every live descendant of it."""
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def machine_seconds() -> tuple[float, float, float]:
    """(busy, interrupts, total) CPU seconds of the whole machine since boot, CPUs summed.

    `interrupts` (irq + softirq) is kernel work charged to no process: on loopback that is much
    of the TCP stack, so it grows with the benchmark's own traffic.
    """
    values = [int(v) for v in (_PROC / "stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already counted in user)
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / _TICK, (values[5] + values[6]) / _TICK, total / _TICK


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all CPUs summed."""
    busy, _, total = machine_seconds()
    return busy, total


@dataclass(frozen=True)
class Snapshot:
    per_pid: dict[str, dict[int, float]]  # group -> pid -> CPU seconds
    busy: float
    interrupts: float
    total: float


class CpuMeter:
    """Groups of processes, each given by its root pid and whether its descendants count.

    PostgreSQL needs its descendants (one backend process per connection); the benchmark's own
    process must not have them (every server of the run is its descendant).
    """

    def __init__(self, groups: Mapping[str, tuple[int, bool]]) -> None:
        self.groups = dict(groups)

    def snapshot(self) -> Snapshot:
        parents = _parents()
        per_pid: dict[str, dict[int, float]] = {}
        for name, (root, descendants) in self.groups.items():
            times: dict[int, float] = {}
            for pid in tree(root, parents) if descendants else {root}:
                fields = _stat_fields(pid)
                if fields is not None:
                    times[pid] = _cpu_seconds(fields)
            per_pid[name] = times
        busy, interrupts, total = machine_seconds()
        return Snapshot(per_pid, busy, interrupts, total)


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds per group over a window, and the machine's utilisation (0..1) in it."""

    seconds: dict[str, float]
    machine_busy: float

    def per_request_ms(self, requests: int) -> dict[str, float]:
        return {k: 1000.0 * v / max(requests, 1) for k, v in self.seconds.items()}


def usage(before: Snapshot, after: Snapshot) -> CpuUsage:
    seconds: dict[str, float] = {}
    for name, times in after.per_pid.items():
        old = before.per_pid.get(name, {})
        # A process that appeared in the window counts from zero; one that ended is lost.
        seconds[name] = sum(max(0.0, t - old.get(pid, 0.0)) for pid, t in times.items())
    seconds["interrupts"] = max(0.0, after.interrupts - before.interrupts)
    # Everything else on the machine (other jobs sharing it, kernel threads): a noisy neighbour.
    seconds["other"] = max(0.0, (after.busy - before.busy) - sum(seconds.values()))
    total = after.total - before.total
    busy = (after.busy - before.busy) / total if total > 0 else 0.0
    return CpuUsage(seconds, busy)


def add(a: CpuUsage, b: CpuUsage, weight_a: float = 0.5) -> CpuUsage:
    """Sum of CPU seconds; machine utilisation averaged with weight `weight_a` on `a`."""
    keys = set(a.seconds) | set(b.seconds)
    seconds = {k: a.seconds.get(k, 0.0) + b.seconds.get(k, 0.0) for k in keys}
    return CpuUsage(seconds, weight_a * a.machine_busy + (1 - weight_a) * b.machine_busy)
