"""The worker pool's CREDIT and SHARE: a source is not read while its worker, or the source
itself, has too much in flight."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import pytest
import zmq

from otszmq.ingest.workerpool import WORKER_TIMEOUT, WorkerPool
from otszmq.metrics import Counters
from otszmq.wire import DONE, HELLO, SourceHeader, SourceKind, pack_done, unpack_work

LIMIT = 100
SOURCE_LIMIT = LIMIT  # the CREDIT tests: one source alone is over its share when over LIMIT
SHARE = 20  # the SHARE tests' source limit, a fifth of LIMIT
PENDING_LIMIT = 10
INJECT = 0  # a source the throttle cannot pause, like ingest's inject pseudo source
RECV_TIMEOUT_MS = 2000


class Throttle:
    """Records what the pool paused and resumed; every source but INJECT can be paused."""

    def __init__(self) -> None:
        self.paused: set[int] = set()
        self.resumed: list[int] = []

    def pause(self, conn_id: int) -> bool:
        if conn_id == INJECT:
            return False
        self.paused.add(conn_id)
        return True

    def resume(self, conn_ids: Iterable[int]) -> None:
        for conn_id in conn_ids:
            self.paused.discard(conn_id)
            self.resumed.append(conn_id)


class Rig:
    def __init__(
        self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str, source_limit: int
    ) -> None:
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.bind(endpoint)
        self.worker = context.socket(zmq.DEALER)
        self.worker.connect(endpoint)
        self.counters = Counters()
        self.throttle = Throttle()
        self.flushes_due = 0
        self.pool = WorkerPool(
            self.router, self.counters, PENDING_LIMIT, LIMIT, source_limit, self.throttle,
            self._flush_due,
        )

    def _flush_due(self) -> None:
        self.flushes_due += 1

    def tell(self, kind: bytes, body: bytes) -> None:
        """The worker says something; the pool takes it in."""
        self.worker.send_multipart((kind, body))
        assert self.router.poll(RECV_TIMEOUT_MS, zmq.POLLIN), "the worker's message never came"
        self.pool.receive()

    def join(self) -> None:
        self.tell(HELLO, b"worker-t")
        assert self.pool.alive == 1

    def dispatch(self, conn_id: int, count: int, tag: str = "e") -> None:
        header = SourceHeader(SourceKind.EVENT, "ingest-t", conn_id, "peer", "", ())
        self.pool.dispatch(conn_id, header, [f"{tag}-{conn_id}-{n}".encode() for n in range(count)])

    def work(self) -> list[tuple[int, list[bytes]]]:
        """The work messages the worker got so far: (sent, every event in order)."""
        got = []
        while self.worker.poll(0 if got else RECV_TIMEOUT_MS, zmq.POLLIN):
            sent, items = unpack_work(self.worker.recv())
            got.append((sent, [event for _, events in items for event in events]))
        return got

    def close(self) -> None:
        self.router.close(linger=0)
        self.worker.close(linger=0)


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made = Rig(context, f"inproc://{request.node.name}", getattr(request, "param", SOURCE_LIMIT))
    yield made
    made.close()
    context.term()


def test_a_source_over_its_workers_credit_pauses_until_half_is_done(rig: Rig) -> None:
    rig.join()
    rig.dispatch(1, 60)
    rig.pool.flush()
    assert rig.throttle.paused == set()
    rig.dispatch(1, 60)  # 120 in flight: over the limit
    rig.dispatch(2, 1)  # another source of the same worker, dispatching while it is over
    assert rig.throttle.paused == {1, 2}
    assert rig.counters.values["reads_paused"] == 2
    rig.pool.flush()
    assert [sent for sent, _ in rig.work()] == [60, 121]  # running totals, nothing dropped

    rig.tell(DONE, pack_done(60))  # 61 in flight: still over half the limit
    assert rig.throttle.paused == {1, 2}
    rig.tell(DONE, pack_done(121))
    assert rig.throttle.paused == set()
    assert sorted(rig.throttle.resumed) == [1, 2]
    assert rig.counters.snapshot()["gauges"]["inflight_events"] == 0


def test_a_done_beyond_what_was_sent_counts_only_what_was_sent(rig: Rig) -> None:
    rig.join()
    rig.tell(DONE, pack_done(5000))  # from before this worker was lost and came back
    rig.dispatch(1, LIMIT + 1)
    assert rig.throttle.paused == {1}


@pytest.mark.parametrize(
    ("rig", "count"), [(SOURCE_LIMIT, LIMIT + 1), (SHARE, SHARE + 1)], indirect=["rig"],
    ids=["credit", "share"],
)
def test_a_lost_worker_resumes_its_paused_sources(rig: Rig, count: int) -> None:
    rig.join()
    rig.dispatch(1, count)
    rig.pool.flush()
    assert rig.throttle.paused == {1}
    rig.pool.sweep(time.monotonic() + WORKER_TIMEOUT + 1)
    assert rig.pool.alive == 0
    assert rig.throttle.paused == set()
    rig.join()  # back: the source starts from nothing in flight
    rig.dispatch(1, SHARE)
    assert rig.throttle.paused == set()


def test_a_source_that_cannot_pause_is_still_sent_everything(rig: Rig) -> None:
    rig.join()
    rig.dispatch(INJECT, LIMIT * 3)
    rig.dispatch(INJECT, 5)
    rig.pool.flush()
    assert rig.throttle.paused == set()
    assert [len(events) for _, events in rig.work()] == [LIMIT * 3 + 5]
    assert rig.counters.values["worker_backlog_drops"] == 0


def test_without_workers_clients_wait_paused_and_others_are_dropped(rig: Rig) -> None:
    rig.dispatch(1, 8)
    rig.dispatch(1, 8, tag="late")  # past pending_limit: paused, and still held
    rig.dispatch(INJECT, 5)  # cannot be paused: dropped and counted
    assert rig.throttle.paused == {1}
    assert rig.counters.values["no_worker_drops"] == 5

    rig.join()  # held events go to the new worker in order; the source reads again
    assert rig.throttle.paused == set()
    rig.pool.flush()
    (sent, events), = rig.work()
    assert sent == 16
    assert events == [f"e-1-{n}".encode() for n in range(8)] + [
        f"late-1-{n}".encode() for n in range(8)
    ]


def test_a_released_source_is_not_resumed(rig: Rig) -> None:
    rig.join()
    rig.dispatch(1, LIMIT + 1)
    rig.pool.flush()
    rig.pool.release(1)  # the client went away while paused
    rig.tell(DONE, pack_done(LIMIT + 1))
    assert rig.throttle.resumed == []


def test_malformed_and_unknown_worker_messages_are_counted_or_ignored(rig: Rig) -> None:
    rig.tell(DONE, pack_done(1))  # from a worker not joined (yet): ignored
    assert rig.pool.alive == 0
    rig.join()
    rig.tell(DONE, b"\xc1")
    rig.tell(b"WHAT", b"")
    assert rig.counters.values["worker_bad_messages"] == 2
    assert rig.pool.alive == 1



@pytest.mark.parametrize("rig", [SHARE], indirect=True)
def test_a_flooding_source_is_paused_alone_until_half_its_events_are_done(rig: Rig) -> None:
    rig.join()
    rig.dispatch(1, 15)
    rig.dispatch(2, 1)
    rig.pool.flush()
    rig.dispatch(1, 10)  # 25 of source 1 in flight: over its share, the worker far from LIMIT
    rig.dispatch(2, 1)
    assert rig.throttle.paused == {1}
    assert rig.counters.values["reads_paused_share"] == 1
    assert rig.counters.values["reads_paused"] == 0
    rig.pool.flush()
    assert [sent for sent, _ in rig.work()] == [16, 27]

    rig.tell(DONE, pack_done(16))  # source 1 has 10 left, its share's half
    assert rig.throttle.paused == set()
    assert rig.throttle.resumed == [1]
    assert rig.counters.snapshot()["gauges"]["paused_sources"] == 0


@pytest.mark.parametrize("rig", [SHARE], indirect=True)
def test_a_source_stays_paused_while_either_rule_holds_it(rig: Rig) -> None:
    rig.join()
    rig.dispatch(INJECT, LIMIT - 10)  # not pausable: fills the worker
    rig.dispatch(1, SHARE + 15)  # over its share, and its worker over LIMIT
    assert rig.throttle.paused == {1}
    assert rig.counters.values["reads_paused"] == rig.counters.values["reads_paused_share"] == 1
    assert rig.counters.snapshot()["gauges"]["paused_sources"] == 1
    rig.pool.flush()
    rig.tell(DONE, pack_done(LIMIT - 10))  # the worker is down to half, not source 1
    assert rig.throttle.paused == {1}
    assert rig.throttle.resumed == []
    rig.tell(DONE, pack_done(LIMIT + SHARE + 5))  # (a dispatch retires whole)
    assert rig.throttle.paused == set()
    assert rig.throttle.resumed == [1]


@pytest.mark.parametrize("rig", [SHARE], indirect=True)
def test_a_released_source_over_its_share_is_not_resumed(rig: Rig) -> None:
    rig.join()
    rig.dispatch(1, SHARE + 1)
    rig.dispatch(3, 2)
    rig.pool.flush()
    rig.pool.release(1)
    rig.tell(DONE, pack_done(SHARE + 3))
    assert rig.throttle.resumed == []
    assert rig.counters.snapshot()["gauges"]["paused_sources"] == 0
