"""PNG plots of ramp results: deliveries/s and p99 latency against offered load, per server.

Needs matplotlib, a benchmark-only dependency (`pip install matplotlib`); benchmarks.report checks
for it before importing this module. Uses matplotlib's object API (no pyplot, no global figure
state, no display backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# NOTE: matplotlib is not a dependency of otszmq, so CI's mypy may not find it; where it is
# installed its own annotations are used and the ignore is unused (hence unused-ignore).
from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]
from matplotlib.ticker import (  # type: ignore[import-not-found, unused-ignore]
    FuncFormatter,
    LogLocator,
    NullFormatter,
)

MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@dataclass(frozen=True, slots=True)
class Point:
    offered: float
    deliveries_per_s: float | None
    p99_ms: float | None
    passed: bool


def ramp_plot(title: str, lines: dict[str, list[Point]], path: Path) -> Path:
    """Two panels side by side: deliveries/s and p99 (log scale) against offered events/s.

    Failed steps are drawn hollow, so the max sustainable rate is where the filled points end.
    """
    figure = Figure(figsize=(11, 4.2), dpi=110, layout="constrained")
    deliveries, latency = figure.subplots(1, 2)
    for number, (server, points) in enumerate(sorted(lines.items())):
        ordered = sorted(points, key=lambda point: point.offered)
        marker = MARKERS[number % len(MARKERS)]
        for axes, value in ((deliveries, "deliveries_per_s"), (latency, "p99_ms")):
            xs = [p.offered for p in ordered if getattr(p, value) is not None]
            ys = [getattr(p, value) for p in ordered if getattr(p, value) is not None]
            (line,) = axes.plot(xs, ys, marker=marker, label=server, linewidth=1.4)
            hollow = [(p.offered, getattr(p, value)) for p in ordered
                      if not p.passed and getattr(p, value) is not None]
            if hollow:
                axes.scatter(*zip(*hollow, strict=True), s=70, facecolors="white",
                             edgecolors=line.get_color(), zorder=3)
    deliveries.set_title("deliveries/s (all receivers)")
    deliveries.set_ylabel("deliveries/s")
    latency.set_title("p99 latency (hollow: step failed)")
    latency.set_ylabel("ms")
    latency.set_yscale("log")
    for axes in (deliveries, latency):
        axes.set_xlabel("offered events/s")
        axes.set_xscale("log")
    # Plain numbers, not 10^x; offered rates in k/M at 1-2-5 steps, or one tick per decade when
    # the peers stretch the axis over more than three decades (labels would overlap).
    offered = [p.offered for points in lines.values() for p in points if p.offered > 0]
    wide = bool(offered) and max(offered) / min(offered) > 1e3
    for axis in (deliveries.xaxis, latency.xaxis):
        axis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(_compact))
        axis.set_minor_formatter(NullFormatter())
    latency.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    latency.yaxis.set_minor_formatter(NullFormatter())
    for axes in (deliveries, latency):
        axes.yaxis.set_major_formatter(FuncFormatter(_plain))
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _plain(value: float, _position: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _compact(value: float, _position: float) -> str:
    """2, 500, 20k, 1.5M: short enough for the ticks of a log axis."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"
