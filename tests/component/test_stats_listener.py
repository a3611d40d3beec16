"""StatsListener: the API's standing subscription to every process's counter snapshots.

A real PUB socket plays the node's processes, publishing on a thread at a fixed cadence as
the stages do; the listener under test runs its own thread and context as in an API worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from otszmq import stats
from otszmq.stats import NoStats, StatsListener
from otszmq.wire import TOPIC_STATS, pack_stats

INTERVAL = 0.04  # the listener's window is 2.5 of these


class Publishers:
    """Processes publishing a snapshot each every INTERVAL / 4, until told to stop one."""

    def __init__(self, endpoint: str, names: list[str]) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(endpoint)
        self.live = set(names)
        self.sent = 0
        self.extra: list[list[bytes]] = []  # raw messages to send once, before the next round
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(INTERVAL / 4):
            while self.extra:
                self.pub.send_multipart(self.extra.pop(0))
            self.sent += 1
            for name in sorted(self.live):
                snapshot = {"host": "h", "name": name, "role": name.split("-")[0],
                            "counters": {"rounds": self.sent}}
                self.pub.send_multipart((TOPIC_STATS, pack_stats(snapshot)))

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.pub.close()
        self.context.term()


@pytest.fixture
def endpoint(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/stats.ipc"


@pytest.fixture
def publishers(endpoint: str) -> Iterator[Publishers]:
    running = Publishers(endpoint, ["ingest-1", "worker-1"])
    yield running
    running.close()


def names(snapshots: list[dict[str, object]]) -> list[object]:
    return [snap["name"] for snap in snapshots]


def test_the_first_call_hears_every_process_and_later_ones_do_not_wait(
    endpoint: str, publishers: Publishers, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    real_sleep = time.sleep

    def recorded_sleep(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(stats.time, "sleep", recorded_sleep)
    listener = StatsListener(endpoint, INTERVAL)
    assert names(listener.snapshots()) == ["ingest-1", "worker-1"]  # sorted by role, name
    assert len(waits) == 1 and 0 < waits[0] <= stats.LISTEN_INTERVALS * INTERVAL
    first = {snap["name"]: snap["counters"]["rounds"] for snap in listener.snapshots()}
    # Later calls read what the thread has heard since: newer snapshots, no wait.
    deadline = time.monotonic() + 10
    while listener.snapshots()[0]["counters"]["rounds"] == first["ingest-1"]:
        assert time.monotonic() < deadline, "no newer snapshot heard"
    assert len(waits) == 1


def test_a_process_that_stops_publishing_drops_out_after_a_window(
    endpoint: str, publishers: Publishers
) -> None:
    listener = StatsListener(endpoint, INTERVAL)
    assert names(listener.snapshots()) == ["ingest-1", "worker-1"]
    publishers.live.discard("worker-1")
    deadline = time.monotonic() + 10
    while names(listener.snapshots()) != ["ingest-1"]:
        assert time.monotonic() < deadline, "a silent process was still listed"


def test_malformed_messages_on_the_bus_are_ignored(
    endpoint: str, publishers: Publishers
) -> None:
    listener = StatsListener(endpoint, INTERVAL)
    listener.snapshots()
    publishers.extra += [[TOPIC_STATS, b"\xc1 not msgpack"], [TOPIC_STATS, b"x", b"y"],
                         [TOPIC_STATS, pack_stats(["not", "a", "map"])]]  # type: ignore[arg-type]
    sent = publishers.sent
    deadline = time.monotonic() + 10
    while publishers.sent < sent + 3:  # the bad messages went out before these rounds
        assert time.monotonic() < deadline, "the publisher stopped"
    latest = listener.snapshots()
    assert names(latest) == ["ingest-1", "worker-1"]
    assert latest[0]["counters"]["rounds"] > sent


def test_nothing_heard_says_where_it_listened(endpoint: str) -> None:
    listener = StatsListener(endpoint, INTERVAL)
    with pytest.raises(NoStats, match=r"no stats heard on ipc://.*/stats\.ipc within 0\.1 s"):
        listener.snapshots()
