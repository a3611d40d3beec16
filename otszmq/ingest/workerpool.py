"""Ingest's side of the parser pool: sticky, per-source dispatch over a ROUTER socket.

Workers connect DEALER sockets to this ROUTER and say HELLO every second. Each
source (client connection) is assigned to one live worker on its first event and
stays there, which keeps its events in order through the pipeline. A new source
goes to the worker with the fewest sources, so a worker that joins late takes
its share of new clients.

PERF: dispatch only queues; ``flush`` (scheduled once per event-loop turn through
``on_queued``) sends each worker one message holding every source's batch of that
turn, in one frame (wire.py: ``work``). With many
clients each read completes one or two events, and a ZeroMQ message per read cost
the worker a wake-up and a receive per event.

CREDIT (wire.py): the events in flight to a worker (dispatched, not yet reported DONE) are
bounded by ``inflight_limit``. A source that dispatches to a worker over it has its reading
paused (``SourceThrottle``): its client's bytes wait in the kernel's socket buffers, and then in
the client, so a worker that falls behind slows its senders down instead of queueing without
bound in ZeroMQ. Its sources read again when the worker is down to half the limit, or when it
is lost (they move to the others). Server-made events (inject) cannot be paused; they count.

SHARE: one source may not have more than ``source_limit`` events in flight either: past it, that
source alone is paused, until it is down to half. Why: a worker's queue is one FIFO, so without
it a single client flooding (a replay tool, a bug) filled its worker up to ``inflight_limit``
and every other client of that worker waited behind it, and was paused with it. Each dispatch
leaves a mark on its worker (where its events end in the worker's running total), and a DONE
retires the marks it has passed: the source's count falls as its events are routed.

When a worker goes away (its socket disconnects: ROUTER_MANDATORY makes the send
fail at once; or it misses three heartbeats), its sources move to the others.
Events it had already received but not routed are lost with it; the ones after
are not. While no worker is alive, events wait in a queue (``pending_limit``); past it a
source that can be paused is, and its events still wait; the others' are dropped and counted.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, cast

import zmq

from otszmq.errors import WireError
from otszmq.metrics import Counters
from otszmq.wire import DONE, HEARTBEAT_INTERVAL, HELLO, SourceHeader, pack_work, unpack_done

log = logging.getLogger(__name__)

WORKER_TIMEOUT = 3 * HEARTBEAT_INTERVAL


class SourceThrottle(Protocol):
    """Stops and restarts reading a source (ingest: its client's transport)."""

    def pause(self, conn_id: int) -> bool:
        """Stop reading ``conn_id``; False if it cannot be paused (not a live client)."""

    def resume(self, conn_ids: Iterable[int]) -> None:
        """Read these again (those still open)."""


@dataclass(slots=True)
class WorkerInfo:
    identity: bytes
    name: str
    last_seen: float
    sources: int = 0
    sent: int = 0  # events sent to it, running total (what work messages carry)
    done: int = 0  # the running total its last DONE echoed
    queued: int = 0  # events dispatched to it since the last flush
    paused: set[int] = field(default_factory=set)  # its sources paused for it (CREDIT)
    # SHARE: (position, source, events) of each dispatch, oldest first; position: the running
    # total of events sent to this worker once that dispatch's events are in.
    marks: deque[tuple[int, int, int]] = field(default_factory=deque)

    @property
    def in_flight(self) -> int:
        return self.sent - self.done + self.queued


@dataclass(slots=True)
class Outgoing:
    """What one worker gets at the next flush: (source, header, events) in dispatch order."""

    batches: list[tuple[int, SourceHeader, list[bytes]]] = field(default_factory=list)


class WorkerPool:
    def __init__(
        self,
        router: zmq.Socket[bytes],
        counters: Counters,
        pending_limit: int,
        inflight_limit: int,
        source_limit: int,
        throttle: SourceThrottle,
        on_queued: Callable[[], object],
    ) -> None:
        """``on_queued`` is called when the first batch waits for a flush: it must arrange
        for :meth:`flush` to run soon (ingest: ``loop.call_soon``). ``source_limit``: SHARE."""
        self._router = router
        self._on_queued = on_queued
        self._outgoing: dict[bytes, Outgoing] = {}
        self._counters = counters
        self._pending_limit = pending_limit
        self._inflight_limit = inflight_limit
        self._source_limit = source_limit
        self._source_inflight: dict[int, int] = {}  # SHARE: events in flight per source
        self._over_share: set[int] = set()  # SHARE: sources paused for their own count
        self._throttle = throttle
        self._workers: dict[bytes, WorkerInfo] = {}
        self._assigned: dict[int, WorkerInfo] = {}
        self._pending: deque[tuple[int, SourceHeader, list[bytes]]] = deque()
        self._pending_events = 0
        self._pending_paused: set[int] = set()  # sources paused while no worker is alive
        counters.preset(
            "worker_sends", "worker_backlog_drops", "no_worker_drops", "workers_lost",
            "reads_paused", "reads_paused_share",
        )
        counters.gauge("workers_alive", lambda: len(self._workers))
        counters.gauge("pending_events", lambda: self._pending_events)
        counters.gauge("inflight_events", lambda: sum(
            info.in_flight for info in self._workers.values()
        ))
        counters.gauge("paused_sources", lambda: len(self._pending_paused.union(
            self._over_share, *(info.paused for info in self._workers.values())
        )))

    @property
    def alive(self) -> int:
        return len(self._workers)

    def worker_names(self) -> list[str]:
        return sorted(info.name for info in self._workers.values())

    def receive(self) -> None:
        """Drain heartbeats and DONEs (call when the ROUTER is readable, and periodically)."""
        router = self._router
        while True:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 3 or frames[1] not in (HELLO, DONE):
                self._counters.inc("worker_bad_messages")
                continue
            identity = frames[0]
            info = self._workers.get(identity)
            if frames[1] == DONE:
                if info is not None:  # else: lost, and its HELLO will make it new again
                    self._done(info, frames[2])
                continue
            if info is None:
                name = frames[2].decode("utf-8", "replace")
                self._workers[identity] = WorkerInfo(identity, name, time.monotonic())
                log.info("worker %s joined (%d alive)", name, len(self._workers))
            else:
                info.last_seen = time.monotonic()
        if self._pending and self._workers:
            self._flush_pending()

    def dispatch(self, conn_id: int, header: SourceHeader, events: list[bytes]) -> None:
        """Queue a batch of events of source ``conn_id`` (in order) for its worker."""
        info = self._assigned.get(conn_id)
        if info is None:
            info = self._assign(conn_id)
            if info is None:
                self._hold(conn_id, header, events)
                return
        if not self._outgoing:
            self._on_queued()
        outgoing = self._outgoing.get(info.identity)
        if outgoing is None:
            outgoing = self._outgoing[info.identity] = Outgoing()
        outgoing.batches.append((conn_id, header, events))
        count = len(events)
        info.queued += count
        values = self._counters.values
        if (
            info.in_flight > self._inflight_limit
            and conn_id not in info.paused
            and self._pause(conn_id, info.paused)
        ):
            values["reads_paused"] += 1
        info.marks.append((info.sent + info.queued, conn_id, count))
        in_flight = self._source_inflight.get(conn_id, 0) + count
        self._source_inflight[conn_id] = in_flight
        if (
            in_flight > self._source_limit
            and conn_id not in self._over_share
            and self._pause(conn_id, self._over_share)
        ):
            values["reads_paused_share"] += 1

    def flush(self) -> None:
        """Send every worker what was dispatched to it since the last flush, one message each."""
        outgoing, self._outgoing = self._outgoing, {}
        for identity, queued in outgoing.items():
            batches = queued.batches
            info = self._workers.get(identity)
            if info is None:
                # Lost since the dispatch (silent): its sources move; these batches go with them.
                self._dispatch_again(batches)
                continue
            # NOTE: counted from the batches, not info.queued: a worker lost and back between
            # dispatch and flush is a new WorkerInfo that did not see these dispatches.
            count = sum(len(events) for _, _, events in batches)
            info.queued = 0
            work = pack_work(info.sent + count, [(header, events) for _, header, events in batches])
            try:
                self._router.send_multipart((identity, work), zmq.NOBLOCK)
            except zmq.Again:
                # Its queue is at the high-water mark: CREDIT should make this unreachable.
                self._counters.values["worker_backlog_drops"] += count
                # SHARE: their marks are the ones past what was sent; their events are gone.
                marks = info.marks
                while marks and marks[-1][0] > info.sent:
                    _, conn_id, dropped = marks.pop()
                    self._retire(conn_id, dropped)
                continue
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self._lose(identity, "disconnected")
                self._dispatch_again(batches)
                continue
            info.sent += count
            self._counters.values["worker_sends"] += 1
        # NOTE: the ROUTER's fd is edge-triggered and a send may take in what arrived (DONEs)
        # without a new edge: without this check a paused source could wait for the next sweep.
        if cast(int, self._router.get(zmq.EVENTS)) & zmq.POLLIN:
            self.receive()

    def release(self, conn_id: int) -> None:
        """The source is gone (after its last event was dispatched)."""
        info = self._assigned.pop(conn_id, None)
        if info is not None:
            info.sources -= 1
            info.paused.discard(conn_id)
        self._pending_paused.discard(conn_id)
        self._source_inflight.pop(conn_id, None)  # its marks are skipped as they retire
        self._over_share.discard(conn_id)

    def sweep(self, now: float) -> None:
        """Forget workers that stopped sending heartbeats."""
        for info in list(self._workers.values()):
            if now - info.last_seen > WORKER_TIMEOUT:
                self._lose(info.identity, f"silent for {now - info.last_seen:.1f} s")

    def _done(self, info: WorkerInfo, data: bytes) -> None:
        try:
            done = unpack_done(data)
        except WireError as exc:
            self._counters.inc("worker_bad_messages")
            log.warning("ignoring a malformed DONE from worker %s: %s", info.name, exc)
            return
        info.last_seen = time.monotonic()
        # At most what was sent: a DONE for work sent before this worker was lost and
        # rejoined counts what was sent to it since, no more.
        info.done = min(done, info.sent)
        marks = info.marks
        while marks and marks[0][0] <= info.done:
            _, conn_id, count = marks.popleft()
            self._retire(conn_id, count)
        if info.paused and info.in_flight <= self._inflight_limit // 2:
            paused, info.paused = info.paused, set()
            self._resume(paused)

    def _retire(self, conn_id: int, count: int) -> None:
        """SHARE: ``count`` events of ``conn_id`` are no longer in flight."""
        in_flight = self._source_inflight.get(conn_id)
        if in_flight is None:
            return  # released
        in_flight -= count
        self._source_inflight[conn_id] = in_flight
        if conn_id in self._over_share and in_flight <= self._source_limit // 2:
            self._over_share.discard(conn_id)
            self._resume((conn_id,))

    def _pause(self, conn_id: int, paused: set[int]) -> bool:
        """Stop reading ``conn_id``, held by ``paused`` (one of the rules' sets); False if it
        cannot be paused."""
        if not self._throttle.pause(conn_id):
            return False
        paused.add(conn_id)
        return True

    def _resume(self, conn_ids: Iterable[int]) -> None:
        """Read these again, except the ones another rule still holds (the caller has taken
        them out of its own set)."""
        free = [conn_id for conn_id in conn_ids if not self._held(conn_id)]
        if free:
            self._throttle.resume(free)

    def _held(self, conn_id: int) -> bool:
        if conn_id in self._over_share or conn_id in self._pending_paused:
            return True
        info = self._assigned.get(conn_id)
        return info is not None and conn_id in info.paused

    def _assign(self, conn_id: int) -> WorkerInfo | None:
        if not self._workers:
            return None
        info = min(self._workers.values(), key=lambda w: w.sources)
        info.sources += 1
        self._assigned[conn_id] = info
        return info

    def _lose(self, identity: bytes, why: str) -> None:
        info = self._workers.pop(identity, None)
        if info is None:
            return
        moved = [conn for conn, owner in self._assigned.items() if owner is info]
        over_share = self._over_share.intersection(moved)
        for conn in moved:
            del self._assigned[conn]
            # SHARE: all its events in flight were with that worker.
            if conn in self._source_inflight:
                self._source_inflight[conn] = 0
        self._over_share -= over_share
        self._counters.inc("workers_lost")
        log.warning(
            "worker %s lost (%s); %d sources move to %d remaining workers",
            info.name, why, len(moved), len(self._workers),
        )
        paused, info.paused = info.paused, set()
        self._resume(paused | over_share)

    def _dispatch_again(self, batches: list[tuple[int, SourceHeader, list[bytes]]]) -> None:
        for conn_id, header, events in batches:
            self.dispatch(conn_id, header, events)

    def _hold(self, conn_id: int, header: SourceHeader, events: list[bytes]) -> None:
        if self._pending_events + len(events) > self._pending_limit:
            if conn_id not in self._pending_paused and self._pause(conn_id, self._pending_paused):
                self._counters.values["reads_paused"] += 1
            if conn_id not in self._pending_paused:  # cannot wait: not a client
                self._counters.inc("no_worker_drops", len(events))
                return
        self._pending.append((conn_id, header, events))
        self._pending_events += len(events)

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, deque()
        self._pending_events = 0
        paused, self._pending_paused = self._pending_paused, set()
        # Resumed first: a source that the dispatch finds over a worker's credit pauses again.
        self._resume(paused)
        self._dispatch_again(list(pending))
