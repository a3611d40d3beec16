"""Per-process counters and gauges, published on the pipeline bus.

Every stage owns one :class:`Counters`, bumps it on its hot path (a dict update,
nothing more), and hands a snapshot to :func:`publish_stats` once a second. The
snapshots travel through the fan-out proxy under ``TOPIC_STATS``, so anything
that can subscribe to the bus (``otszmq stats``, later the API's ``/metrics``)
sees every process of every host without a side channel.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import zmq

from otszmq.wire import TOPIC_STATS, pack_stats


class Counters:
    """Monotonic counters plus gauges read at snapshot time."""

    __slots__ = ("_gauges", "values")

    def __init__(self) -> None:
        # PERF: a plain dict that hot paths may bump directly (`values[k] += 1`
        # after `preset`) to avoid a method call per event.
        self.values: dict[str, int] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def preset(self, *names: str) -> None:
        """Create counters at zero so that snapshots always list them."""
        for name in names:
            self.values.setdefault(name, 0)

    def inc(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def snapshot(self) -> dict[str, Any]:
        return {
            "counters": dict(self.values),
            "gauges": {name: read() for name, read in self._gauges.items()},
        }


def process_snapshot(name: str, role: str, counters: Counters) -> dict[str, Any]:
    """The snapshot one process publishes: who it is plus its numbers."""
    snapshot = counters.snapshot()
    snapshot.update(
        name=name, role=role, pid=os.getpid(), host=socket.gethostname(), time=time.time(),
        rss_bytes=rss_bytes(),
    )
    return snapshot


def publish_stats(pub: zmq.Socket[bytes], name: str, role: str, counters: Counters) -> None:
    """Send one snapshot; never blocks (a stats message is worth less than an event)."""
    try:
        pub.send_multipart(
            [TOPIC_STATS, pack_stats(process_snapshot(name, role, counters))], zmq.NOBLOCK
        )
    except zmq.Again:
        counters.inc("stats_dropped")


def rss_bytes(pid: int | None = None) -> int:
    """The resident memory of process ``pid`` (default: this one); 0 where unknown."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
