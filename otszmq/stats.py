"""``otszmq stats``: a live snapshot of every process of a running node.

Every stage publishes its counters on the pipeline bus; this command subscribes
to the fan-out for a little longer than one stats interval and prints the latest
snapshot of each process it heard.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Final, TextIO

import zmq

from otszmq.errors import OtszmqError, WireError
from otszmq.wire import TOPIC_STATS, unpack_stats

LISTEN_INTERVALS: Final = 2.5
"""How many stats intervals to listen for to hear every process: a snapshot is due once an
interval, but a fresh subscription must first travel through the fan-out to each publisher,
and a busy process publishes late."""


class NoStats(OtszmqError):
    """Nothing answered on the bus."""


def collect(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, wait: float
) -> list[dict[str, Any]]:
    """Snapshots heard on ``endpoint`` within ``wait`` seconds, one per process."""
    sub = _subscribe(context, endpoint)
    latest: dict[str, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            if not sub.poll(int(remaining * 1000) + 1):
                continue
            snapshot = _snapshot(sub.recv_multipart())
            if snapshot is not None:
                latest[_key(snapshot)] = snapshot
    finally:
        sub.close()
    return _per_process(list(latest.values()), endpoint, wait)


def _subscribe(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC_STATS)
    try:
        sub.connect(endpoint)
    except zmq.ZMQError:
        sub.close()  # a socket left open would hang the context's term()
        raise
    return sub


def _snapshot(frames: list[bytes]) -> dict[str, Any] | None:
    """The snapshot a bus message carries, or None for one that is not ``[topic, stats]``."""
    if len(frames) != 2:
        return None
    try:
        return unpack_stats(frames[1])
    except WireError:
        return None


def _key(snapshot: dict[str, Any]) -> str:
    return f"{snapshot.get('host')}/{snapshot.get('name')}"


def _per_process(
    snapshots: list[dict[str, Any]], endpoint: str, wait: float
) -> list[dict[str, Any]]:
    """``snapshots`` by role and name; :class:`NoStats` if there are none."""
    if not snapshots:
        raise NoStats(f"no stats heard on {endpoint} within {wait:g} s: is a node running?")
    return sorted(snapshots, key=lambda s: (s.get("role", ""), s.get("name", "")))


class StatsListener:
    """The latest snapshot of every live process, heard by a thread that stays subscribed.

    For a process that serves many requests (the API's ``/metrics`` and status routes). Why
    not :func:`collect` per request: a subscription made per request hears a process only if
    the process's next snapshot comes within the window, after the subscription has reached
    it through the fan-out; on a loaded node a scrape now and then missed a process, which a
    dashboard shows as a gap. Subscribed for good, a request reads what is already here.

    The thread starts on the first call, in the process that makes it: a gunicorn arbiter
    that builds the app before forking its workers never owns one a worker would inherit.
    """

    def __init__(self, endpoint: str, interval: float) -> None:
        self._endpoint = endpoint
        self._window = LISTEN_INTERVALS * interval
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[float, dict[str, Any]]] = {}  # key -> (heard, snapshot)
        self._started: float | None = None  # monotonic time the thread started
        self._pid = 0  # the process the thread runs in

    def snapshots(self) -> list[dict[str, Any]]:
        """Each process's snapshot heard within the last window (the first call waits one
        window to hear them); :class:`NoStats` if none."""
        with self._lock:
            if self._started is None or self._pid != os.getpid():
                self._start()
            assert self._started is not None
            started = self._started
        if (wait := started + self._window - time.monotonic()) > 0:
            time.sleep(wait)  # the first window: every process publishes once in it
        oldest = time.monotonic() - self._window
        with self._lock:
            live = [snap for heard, snap in self._latest.values() if heard >= oldest]
        return _per_process(live, self._endpoint, self._window)

    def _start(self) -> None:
        self._latest = {}
        self._started = time.monotonic()
        self._pid = os.getpid()
        threading.Thread(target=self._listen, name="stats-listener", daemon=True).start()

    def _listen(self) -> None:
        # The thread's own context: a context is not inherited across fork, nor shared.
        sub = _subscribe(zmq.Context(), self._endpoint)
        while True:
            snapshot = _snapshot(sub.recv_multipart())
            if snapshot is None:
                continue
            with self._lock:
                self._latest[_key(snapshot)] = (time.monotonic(), snapshot)


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
