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

When a worker goes away (its socket disconnects: ROUTER_MANDATORY makes the send
fail at once; or it misses three heartbeats), its sources move to the others.
Events it had already received but not routed are lost with it; the ones after
are not. While no worker is alive, events wait in a bounded queue
(``pending_limit``); past it they are dropped and counted.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from otszmq.metrics import Counters
from otszmq.wire import HEARTBEAT_INTERVAL, HELLO, SourceHeader, pack_work

log = logging.getLogger(__name__)

WORKER_TIMEOUT = 3 * HEARTBEAT_INTERVAL


@dataclass(slots=True)
class WorkerInfo:
    identity: bytes
    name: str
    last_seen: float
    sources: int = 0


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
        on_queued: Callable[[], object],
    ) -> None:
        """``on_queued`` is called when the first batch waits for a flush: it must arrange
        for :meth:`flush` to run soon (ingest: ``loop.call_soon``)."""
        self._router = router
        self._on_queued = on_queued
        self._outgoing: dict[bytes, Outgoing] = {}
        self._counters = counters
        self._pending_limit = pending_limit
        self._workers: dict[bytes, WorkerInfo] = {}
        self._assigned: dict[int, bytes] = {}
        self._pending: deque[tuple[int, SourceHeader, list[bytes]]] = deque()
        self._pending_events = 0
        counters.preset("worker_sends", "worker_backlog_drops", "no_worker_drops", "workers_lost")
        counters.gauge("workers_alive", lambda: len(self._workers))
        counters.gauge("pending_events", lambda: self._pending_events)

    @property
    def alive(self) -> int:
        return len(self._workers)

    def worker_names(self) -> list[str]:
        return sorted(info.name for info in self._workers.values())

    def receive(self) -> None:
        """Drain heartbeats (call when the ROUTER is readable, and periodically)."""
        router = self._router
        while True:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 3 or frames[1] != HELLO:
                self._counters.inc("worker_bad_messages")
                continue
            identity, name = frames[0], frames[2].decode("utf-8", "replace")
            info = self._workers.get(identity)
            if info is None:
                self._workers[identity] = WorkerInfo(identity, name, time.monotonic())
                log.info("worker %s joined (%d alive)", name, len(self._workers))
            else:
                info.last_seen = time.monotonic()
        if self._pending and self._workers:
            self._flush_pending()

    def dispatch(self, conn_id: int, header: SourceHeader, events: list[bytes]) -> None:
        """Queue a batch of events of source ``conn_id`` (in order) for its worker."""
        identity = self._assigned.get(conn_id)
        if identity is None:
            identity = self._assign(conn_id)
            if identity is None:
                self._hold(conn_id, header, events)
                return
        if not self._outgoing:
            self._on_queued()
        outgoing = self._outgoing.get(identity)
        if outgoing is None:
            outgoing = self._outgoing[identity] = Outgoing()
        outgoing.batches.append((conn_id, header, events))

    def flush(self) -> None:
        """Send every worker what was dispatched to it since the last flush, one message each."""
        outgoing, self._outgoing = self._outgoing, {}
        for identity, queued in outgoing.items():
            batches = queued.batches
            work = pack_work([(header, events) for _, header, events in batches])
            try:
                self._router.send_multipart((identity, work), zmq.NOBLOCK)
            except zmq.Again:
                # The worker's queue is at its high-water mark: it is far behind.
                self._counters.values["worker_backlog_drops"] += sum(
                    len(events) for _, _, events in batches
                )
                continue
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                # Gone since the dispatch: its sources move; these batches go with them.
                self._lose(identity, "disconnected")
                for conn_id, header, events in batches:
                    self.dispatch(conn_id, header, events)
                continue
            self._counters.values["worker_sends"] += 1

    def release(self, conn_id: int) -> None:
        """The source is gone (after its last event was dispatched)."""
        identity = self._assigned.pop(conn_id, None)
        if identity is not None and identity in self._workers:
            self._workers[identity].sources -= 1

    def sweep(self, now: float) -> None:
        """Forget workers that stopped sending heartbeats."""
        for info in list(self._workers.values()):
            if now - info.last_seen > WORKER_TIMEOUT:
                self._lose(info.identity, f"silent for {now - info.last_seen:.1f} s")

    def _assign(self, conn_id: int) -> bytes | None:
        if not self._workers:
            return None
        info = min(self._workers.values(), key=lambda w: w.sources)
        info.sources += 1
        self._assigned[conn_id] = info.identity
        return info.identity

    def _lose(self, identity: bytes, why: str) -> None:
        info = self._workers.pop(identity, None)
        if info is None:
            return
        moved = [conn for conn, ident in self._assigned.items() if ident == identity]
        for conn in moved:
            del self._assigned[conn]
        self._counters.inc("workers_lost")
        log.warning(
            "worker %s lost (%s); %d sources move to %d remaining workers",
            info.name, why, len(moved), len(self._workers),
        )

    def _hold(self, conn_id: int, header: SourceHeader, events: list[bytes]) -> None:
        if self._pending_events + len(events) > self._pending_limit:
            self._counters.inc("no_worker_drops", len(events))
            return
        self._pending.append((conn_id, header, events))
        self._pending_events += len(events)

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, deque()
        self._pending_events = 0
        for conn_id, header, events in pending:
            self.dispatch(conn_id, header, events)
