"""What a half-rate p99 follows: how long the server's processes waited for a core.

Every half-rate window of a ramp records its p99 and the run-queue wait of the server's
processes, summed over them (benchmarks.procstat: ``server_runqueue_wait_ms_per_s``). On a
2-core machine shared with the generator, otszmq's pipeline keeps several processes runnable on
the clients' path, and the p99 of a window follows that wait more closely than how busy the
machine was (BENCHMARKS.md: correlation 0.87 against 0.57 over 36 windows). Grouping a run's
windows by their wait shows it in every suite run. It reads how loaded the cores were; it is not
a lever by itself: one worker instead of two halved the wait over 16 paired rounds and left the
p99 where it was, its events waiting in the one worker's queue instead (BENCHMARKS.md).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Any

from benchmarks.rounds import result_of

Json = dict[str, Any]

WAIT_EDGES_MS = (1000.0, 1100.0, 1200.0)
"""Bounds of the groups of windows, in ms waited per second (1000: one process always waiting)."""


@dataclass(frozen=True, slots=True)
class HalfWindow:
    """One window of a ramp's half-rate step."""

    server: str
    p99_ms: float
    wait_ms_per_s: float
    busy_percent: float


def half_windows(records: list[Json]) -> list[HalfWindow]:
    """Every half-rate window of these ramp records that says how long the server waited (suite
    JSON from before the waits were measured has none)."""
    found = []
    for run in records:
        at_half = (result_of(run) or {}).get("at_half") or {}
        for row in at_half.get("repeats") or ():
            p99, wait = row.get("p99_ms"), row.get("server_runqueue_wait_ms_per_s")
            busy = row.get("system_busy_percent")
            if p99 is not None and wait is not None and busy is not None:
                found.append(HalfWindow(run["server"], float(p99), float(wait), float(busy)))
    return found


def correlation(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's correlation, None when it is not defined (fewer than 3 points, a constant)."""
    if len(xs) < 3:
        return None
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return None


def wait_lines(records: list[Json], servers: set[str], target_ms: float) -> list[str]:
    """Markdown: the half-rate windows of ``servers`` grouped by the server's wait (with how
    many met a p99 of ``target_ms``), the two correlations, and the other servers' windows in
    one line each; [] without waits."""
    every = half_windows(records)
    windows = [window for window in every if window.server in servers]
    if not windows:
        return []
    p99s = [window.p99_ms for window in windows]
    by_wait = correlation([window.wait_ms_per_s for window in windows], p99s)
    by_busy = correlation([window.busy_percent for window in windows], p99s)
    names = " and ".join(sorted(servers))
    lines = [
        f"The {len(windows)} half-rate windows of the {names} ramps, by how long the server's "
        "processes waited for a core, summed over them (ms per second of the window). The p99 "
        f"correlates {_number(by_wait)} with that wait and {_number(by_busy)} with how busy "
        "the machine was.",
        "",
        "| waiting for a core, ms/s | windows | p99 (lower) median | p99 range "
        f"| p99 ≤ {target_ms:g} ms |",
        "|---|---|---|---|---|",
    ]
    for low, high in itertools.pairwise((0.0, *WAIT_EDGES_MS, math.inf)):
        group = sorted(window.p99_ms for window in windows if low <= window.wait_ms_per_s < high)
        if group:
            met = sum(p99 <= target_ms for p99 in group)
            median = statistics.median_low(group)
            lines.append(f"| {_bucket(low, high)} | {len(group)} | {median:.1f} ms | "
                         f"{group[0]:.1f} to {group[-1]:.1f} | {met} |")
    lines.append("")
    for server in sorted({window.server for window in every} - servers):
        others = [window for window in every if window.server == server]
        waits = [window.wait_ms_per_s for window in others]
        p99 = [window.p99_ms for window in others]
        lines.append(f"- {server}: {len(others)} windows, its processes waiting "
                     f"{min(waits):.0f} to {max(waits):.0f} ms/s, p99 {min(p99):.1f} to "
                     f"{max(p99):.1f} ms")
    return [*lines, ""]


def _bucket(low: float, high: float) -> str:
    if low == 0.0:
        return f"under {high:,.0f}"
    if high == math.inf:
        return f"{low:,.0f} and more"
    return f"{low:,.0f} to {high:,.0f}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
