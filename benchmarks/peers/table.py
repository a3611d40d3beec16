"""Markdown table of benchmarks.load JSON results, one row per file.

    python benchmarks/peers/table.py results/taky-*.json

Columns: offered and really sent rate, delivered ratio, deliveries/s, latency p50/p99, server
processes, CPU%, RSS and PSS (sums over --server-pids, and their descendants with --server-tree),
settle, errors. Reads only the keys documented in benchmarks/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEADER = (
    "| file | offered/s | sent/s | delivered ratio | deliveries/s | p50 ms | p99 ms "
    "| server processes | server CPU % | server RSS MiB | server PSS MiB | settle | errors |"
)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def mib(kb: int | None) -> str:
    return fmt(kb / 1024 if kb is not None else None)


def row(path: Path) -> str:
    result = json.loads(path.read_text(encoding="utf-8"))
    send, delivery, lat = result["send"], result["delivery"], result["latency_ms"]
    server = result.get("server") or {}
    settle = result["settle"]
    settle_text = "ok" if settle["complete"] else f"missing {settle['missing_announcements']}"
    return (
        "| "
        + " | ".join(
            [
                path.stem,
                fmt(send["offered_rate"], 0),
                fmt(send["sent_rate"]),
                fmt(delivery["delivery_ratio"], 4),
                fmt(delivery["deliveries_per_s"]),
                fmt(lat.get("p50"), 2),
                fmt(lat.get("p99"), 2),
                fmt(server.get("processes")),
                fmt(server.get("cpu_percent_total")),
                mib(server.get("rss_kb_total")),
                mib(server.get("pss_kb_total")),
                settle_text,
                str(len(result["errors"])),
            ]
        )
        + " |"
    )


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for name in argv:
        print(row(Path(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
