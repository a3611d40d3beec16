"""``otszmq stats``: a live snapshot of every process of a running node.

Every stage publishes its counters on the pipeline bus; this command subscribes
to the fan-out for a little longer than one stats interval and prints the latest
snapshot of each process it heard.
"""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

import zmq

from otszmq.errors import OtszmqError, WireError
from otszmq.wire import TOPIC_STATS, unpack_stats


class NoStats(OtszmqError):
    """Nothing answered on the bus."""


def collect(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, wait: float
) -> list[dict[str, Any]]:
    """Snapshots heard on ``endpoint`` within ``wait`` seconds, one per process."""
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC_STATS)
    latest: dict[str, dict[str, Any]] = {}
    try:
        sub.connect(endpoint)
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            if not sub.poll(int(remaining * 1000) + 1):
                continue
            frames = sub.recv_multipart()
            if len(frames) != 2:
                continue
            try:
                snapshot = unpack_stats(frames[1])
            except WireError:
                continue
            latest[f"{snapshot.get('host')}/{snapshot.get('name')}"] = snapshot
    finally:
        sub.close()
    if not latest:
        raise NoStats(f"no stats heard on {endpoint} within {wait:g} s: is a node running?")
    return sorted(latest.values(), key=lambda s: (s.get("role", ""), s.get("name", "")))


def render(snapshots: list[dict[str, Any]], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        json.dump({"processes": snapshots}, out, indent=2, sort_keys=True)
        out.write("\n")
        return
    for snap in snapshots:
        out.write(
            f"{snap.get('name')} ({snap.get('role')}, pid {snap.get('pid')}, "
            f"rss {int(snap.get('rss_bytes', 0)) // 1024} KiB)\n"
        )
        numbers = {**snap.get("counters", {}), **snap.get("gauges", {})}
        for key in sorted(numbers):
            out.write(f"    {key:<28} {numbers[key]}\n")
