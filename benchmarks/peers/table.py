"""Markdown table of benchmarks.load JSON results, one row per file.

    python benchmarks/peers/table.py results/taky-*.json

Columns: offered and really sent rate, delivered ratio, deliveries/s, latency p50/p99, server CPU%
and RSS (sums over --server-pids), settle, errors, and, for results of load_peer.py --tree, each
tree's CPU% and PSS. Reads only the keys documented in benchmarks/README.md and load_peer.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEADER = (
    "| file | offered/s | sent/s | delivered ratio | deliveries/s | p50 ms | p99 ms "
    "| server CPU % | server RSS MiB | settle | errors | trees: CPU %, PSS MiB |"
)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def trees_text(result: dict[str, Any]) -> str:
    trees = (result.get("server_tree") or {}).get("trees") or {}
    parts = []
    for name, entry in trees.items():
        pss = entry.get("pss_kb")
        parts.append(
            f"{name} ({entry['processes']} procs): {fmt(entry['cpu_percent'])}, "
            f"{fmt(pss / 1024 if pss is not None else None)}"
        )
    return "; ".join(parts) or "—"


def row(path: Path) -> str:
    result = json.loads(path.read_text(encoding="utf-8"))
    send, delivery, lat = result["send"], result["delivery"], result["latency_ms"]
    server = result.get("server") or {}
    rss = server.get("rss_kb_total")
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
                fmt(server.get("cpu_percent_total")),
                fmt(rss / 1024 if rss is not None else None),
                settle_text,
                str(len(result["errors"])),
                trees_text(result),
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
