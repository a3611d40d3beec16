"""The worker stage: parse each event once, decide its route, publish it.

A worker holds one DEALER per ingest process (a DEALER round-robins its sends
across peers, and every ingest must hear this worker's heartbeats) and one PUB
into the fan-out. It needs no event loop: a blocking ``zmq.Poller`` over its
sockets plus a signal wake-up fd.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from dataclasses import dataclass

import zmq

from otszmq.errors import CotParseError, WireError
from otszmq.metrics import Counters, publish_stats
from otszmq.store.records import record_from_event
from otszmq.wire import (
    HEARTBEAT_INTERVAL,
    HELLO,
    TOPIC_EVENT,
    TOPIC_RECORD,
    RoutedHeader,
    RouteFlag,
    RouteMode,
    SourceHeader,
    SourceKind,
    pack_routed,
    unpack_counts,
    unpack_source,
)
from otszmq.workers.cot import CotParser
from otszmq.workers.router import route

log = logging.getLogger(__name__)

DRAIN_FRAMES = 1000
"""Frames (about events) handled per drain round before the loop looks at its heartbeat.

NOTE: counted in frames, not messages: one message from ingest holds every source's batch of
a loop turn, and under overload 500 of them took a worker seconds, long enough for ingest to
miss three heartbeats and drop it (workers_lost, then no_worker_drops)."""
LOG_BURST = 20
LOG_WINDOW = 10.0


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    worker_id: str
    stats_interval: float
    records: bool = True  # publish store records (off when the node runs no store)


class RateLimitedLog:
    """Log each bad input once, but at most LOG_BURST lines per window, then a tally."""

    def __init__(self) -> None:
        self._window_start = 0.0
        self._logged = 0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_start > LOG_WINDOW:
            if self._suppressed:
                log.warning("%d more bad-input messages suppressed", self._suppressed)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged < LOG_BURST:
            self._logged += 1
            log.warning(message, *args)
        else:
            self._suppressed += 1


class WorkerService:
    def __init__(
        self,
        config: WorkerConfig,
        dealers: list[zmq.Socket[bytes]],
        pub: zmq.Socket[bytes],
        wakeup_fd: int,
    ) -> None:
        self.config = config
        self._dealers = dealers
        self._pub = pub
        self._wakeup_fd = wakeup_fd
        self._seq = itertools.count(1)
        self._bad_input = RateLimitedLog()
        # One parser for the life of the process: building one costs ~20% of a parse.
        self._parser = CotParser()
        self.counters = Counters()
        self.counters.preset(
            "events_in", "events_routed", "parse_errors", "wire_errors", "dropped_ping",
            "dropped_protocol_negotiation", "probes", "records_out",
        )
        # STORE: records of this drain round for the store stage (see _drain).
        self._records: list[bytes] = [TOPIC_RECORD]
        self._stop = False

    def request_stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        poller = zmq.Poller()
        for dealer in self._dealers:
            poller.register(dealer, zmq.POLLIN)
        poller.register(self._wakeup_fd, zmq.POLLIN)
        self._hello()
        next_hello = time.monotonic() + HEARTBEAT_INTERVAL
        next_stats = time.monotonic()
        log.info("%s started, %d ingest endpoints", self.config.name, len(self._dealers))
        while not self._stop:
            timeout_ms = max(0, int((min(next_hello, next_stats) - time.monotonic()) * 1000))
            for sock, _ in poller.poll(timeout_ms):
                if sock == self._wakeup_fd:
                    os.read(self._wakeup_fd, 512)
                else:
                    self._drain(sock)
            now = time.monotonic()
            if now >= next_hello:
                self._hello()
                next_hello = now + HEARTBEAT_INTERVAL
            if now >= next_stats:
                publish_stats(self._pub, self.config.name, "worker", self.counters)
                next_stats = now + self.config.stats_interval
        log.info("%s stopping", self.config.name)

    def _hello(self) -> None:
        name = self.config.name.encode()
        for dealer in self._dealers:
            # Again: that ingest is not connected (yet); the next heartbeat retries.
            with contextlib.suppress(zmq.Again):
                dealer.send_multipart((HELLO, name), zmq.NOBLOCK)

    def _drain(self, dealer: zmq.Socket[bytes]) -> None:
        """Handle what is queued now (bounded), then publish it as one batch."""
        out: list[bytes] = [TOPIC_EVENT]
        handled = 0
        while handled < DRAIN_FRAMES:
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            handled += len(frames)
            self.handle(frames, out)
        if len(out) > 1:
            self._pub.send_multipart(out)
        # STORE HOOK: the round's store records go out after its routed events, in a message
        # of their own, so routing never waits on them (wire.py: [TOPIC_RECORD, record, ...]).
        if len(self._records) > 1:
            self.counters.values["records_out"] += len(self._records) - 1
            self._pub.send_multipart(self._records)
            self._records = [TOPIC_RECORD]

    def handle(self, frames: list[bytes], out: list[bytes]) -> None:
        """Parse and route one message from ingest: each source's batch in turn."""
        try:
            if not frames:
                raise WireError("empty message")
            counts = unpack_counts(frames[0], len(frames) - 1)
        except WireError as exc:
            self.counters.values["wire_errors"] += 1
            self._bad_input.warning("dropping a malformed message from ingest: %s", exc)
            return
        start = 1
        for count in counts:
            self._handle_source(frames, start, start + 1 + count, out)
            start += 1 + count

    def _handle_source(self, frames: list[bytes], first: int, end: int, out: list[bytes]) -> None:
        """Parse and route one source's batch, ``frames[first]`` its header and the events up
        to ``end``; append [header, event] pairs to ``out``."""
        counters = self.counters.values
        try:
            source = unpack_source(frames[first])
        except WireError as exc:
            counters["wire_errors"] += 1
            self._bad_input.warning("dropping a malformed batch from ingest: %s", exc)
            return
        if source.kind == SourceKind.PROBE:
            counters["probes"] += 1
            out += (self._header(source, RouteMode.PROBE), b"")
            return
        counters["events_in"] += end - first - 1
        parse = self._parser.parse
        for payload in frames[first + 1:end]:
            try:
                event = parse(payload)
            except CotParseError as exc:
                counters["parse_errors"] += 1
                self._bad_input.warning("dropping a malformed event from %s: %s", source.peer, exc)
                continue
            decision = route(event, source)
            if decision.drop_reason:
                self.counters.inc("dropped_" + decision.drop_reason)
                continue
            header = RoutedHeader(
                self.config.worker_id, next(self._seq), source.ingest, source.conn,
                decision.mode, decision.flags, source.groups_in, decision.dest_uids,
                decision.dest_callsigns, decision.missions, event.uid, event.type,
                event.callsign or "", event.stale_epoch, decision.evict_uid, source.origin,
                source.sender_uid,
            )
            out += (pack_routed(header), payload)
            counters["events_routed"] += 1
            # STORE HOOK: what the store keeps of this event, built from the parsed event (the
            # store never parses XML); None for what it does not keep.
            if self.config.records:
                record = record_from_event(event, source.sender_uid, source.groups_in)
                if record is not None:
                    self._records.append(record)

    def _header(self, source: SourceHeader, mode: int) -> bytes:
        return pack_routed(RoutedHeader(
            self.config.worker_id, next(self._seq), source.ingest, source.conn, mode,
            RouteFlag.NONE, source.groups_in, (), (), (), "", "", "", 0.0, "", source.origin,
            source.sender_uid,
        ))
