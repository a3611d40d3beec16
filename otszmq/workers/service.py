"""The worker stage: parse each event once, decide its route, publish it.

A worker holds one DEALER per ingest process (a DEALER round-robins its sends
across peers, and every ingest must hear this worker's heartbeats), one PUB
into the fan-out and, with a store, one SUB for the store's SHED word
(otszmq.wire). It needs no event loop: a blocking ``zmq.Poller`` over its
sockets plus a signal wake-up fd.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass

import zmq

from otszmq.errors import CotParseError, WireError
from otszmq.logthrottle import LogThrottle
from otszmq.metrics import Counters, publish_stats
from otszmq.store.records import RecordPacker, build_record, record_kind, sheddable
from otszmq.wire import (
    DONE,
    HEARTBEAT_INTERVAL,
    HELLO,
    SHED_EXPIRY,
    TOPIC_EVENT,
    TOPIC_RECORD,
    TOPIC_RECORD_KEPT,
    RoutedEntry,
    RouteFlag,
    RouteMode,
    SourceHeader,
    SourceKind,
    pack_done,
    pack_routed_batch,
    source_header,
    unpack_shed,
    unpack_work,
)
from otszmq.workers.budget import SourceBudget
from otszmq.workers.cot import BATCH_MAX_EVENTS, CotEvent, CotParser
from otszmq.workers.router import Decision, route

log = logging.getLogger(__name__)

DRAIN_EVENTS = 1000
"""Events handled per drain round before the loop looks at its heartbeat.

NOTE: counted in events, not messages: one message from ingest holds every source's batch of
a loop turn, and under overload 500 of them took a worker seconds, long enough for ingest to
miss three heartbeats and drop it (workers_lost, then no_worker_drops)."""
PUBLISH_EVENTS = 200
"""A drain round publishes its routed events as soon as it holds this many, not at its end.

NOTE: the first event of a batch waits for every event parsed after it. A worker that has
fallen behind drains DRAIN_EVENTS at ~20-40 µs each: published once per round, its first
events waited 20-40 ms more; this bound caps that wait at a few ms."""
RECORD_LINGER = 0.05
"""STORE: seconds a worker may hold the records it built before it sends them as one frame.

NOTE: one frame per drain round meant ~1,800 frames/s of ~9 records at 16,000 events/s with 10
clients: each woke the store's receiver (~40 us a wake-up, 7 % of a core at normal priority)
and cost the worker and the fan-out a message. The store lingers 0.1 s to fill a transaction
anyway (store_flush_interval), so records lose nothing by waiting a little here."""
RECORD_FRAME_RECORDS = 500
"""STORE: a worker sends its records at once when it holds this many (~0.5 MB packed)."""
SKIP_REPORT_INTERVAL = 0.1
"""SHED: seconds between two record frames that only say how many records were skipped."""
SOURCE_CACHE_LIMIT = 10_000
"""Checked source headers kept (one per live connection and identity); cleared when full."""
BAD_INPUT_LOG_BURST = 20
"""Lines about malformed input per 10 s (each names its error); the rest are counted only."""


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    worker_id: str
    stats_interval: float
    records: bool = True  # publish store records (off when the node runs no store)
    record_linger: float = RECORD_LINGER  # seconds records may wait to share a frame; 0: none


def routed_entry(source: SourceHeader, decision: Decision, event: CotEvent) -> RoutedEntry:
    """What a routed batch carries for one event: the RoutedHeader fields, then its bytes."""
    return (
        source.ingest, source.conn, decision.mode, decision.flags, source.groups_in,
        decision.dest_uids, decision.dest_callsigns, decision.missions, event.uid, event.type,
        event.callsign or "", event.stale_epoch, decision.evict_uid, source.origin,
        source.sender_uid, event.raw,
    )


class WorkerService:
    def __init__(
        self,
        config: WorkerConfig,
        dealers: list[zmq.Socket[bytes]],
        pub: zmq.Socket[bytes],
        wakeup_fd: int,
        shed_sub: zmq.Socket[bytes] | None = None,
    ) -> None:
        """``shed_sub`` receives the store's ``[TOPIC_SHED, shed]`` (None: no store)."""
        self.config = config
        self._dealers = dealers
        self._pub = pub
        self._wakeup_fd = wakeup_fd
        self._next_seq = 1  # the sequence number of the next routed event (wire.SequenceGaps)
        # Source fields as received -> checked SourceHeader: a connection sends the same fields
        # until its identity changes, so each is checked once.
        self._sources: dict[tuple[object, ...], SourceHeader] = {}
        # (ingest, conn) of the sources that have sent a malformed event: parsed on their own.
        self._suspects: set[tuple[str, int]] = set()
        self._bad_input = LogThrottle(burst=BAD_INPUT_LOG_BURST)
        # One parser for the life of the process: building one costs ~20% of a parse.
        self._parser = CotParser()
        self.counters = Counters()
        self.counters.preset(
            "events_in", "events_routed", "parse_errors", "wire_errors", "dropped_ping",
            "dropped_protocol_negotiation", "probes", "records_out", "events_not_stored",
            "parse_batch_fallbacks", "kept_over_budget",
        )
        # STORE: records for the store stage not sent yet (see _send_records_when_due).
        self._records = RecordPacker()
        self._records_due: float | None = None  # when they go at the latest (monotonic)
        self._records_all_kept = True  # SHED: every one of them built while keep was 0
        self._skipped = 0  # SHED: sheddable records not built since the last record frame
        # Its monotonic time; -inf: the first report goes at once (monotonic counts from boot).
        self._last_record_frame = -math.inf
        self._shed_sub = shed_sub
        self._keep = 1.0  # SHED: the share of sheddable records to build, as the store said
        self._keep_until = 0.0  # SHED: ... until this (monotonic) time; 0: build them all
        # SHED: which sheddable records to build is drawn at random, so that every source is
        # thinned alike (a counter would pick the same source each time in a periodic stream).
        self._draw = random.Random().random
        # SHED: what each source may still have recorded while the store sheds (budget.py).
        self._kept_budget = SourceBudget(SOURCE_CACHE_LIMIT)
        self._over_budget_log = LogThrottle()
        self._stop = False

    def request_stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        poller = zmq.Poller()
        for dealer in self._dealers:
            poller.register(dealer, zmq.POLLIN)
        poller.register(self._wakeup_fd, zmq.POLLIN)
        if self._shed_sub is not None:
            poller.register(self._shed_sub, zmq.POLLIN)
        self._hello()
        next_hello = time.monotonic() + HEARTBEAT_INTERVAL
        next_stats = time.monotonic()
        log.info("%s started, %d ingest endpoints", self.config.name, len(self._dealers))
        while not self._stop:
            due = self._records_due
            wake_at = min(next_hello, next_stats, next_hello if due is None else due)
            timeout_ms = max(0, math.ceil((wake_at - time.monotonic()) * 1000))
            for sock, _ in poller.poll(timeout_ms):
                if sock == self._wakeup_fd:
                    os.read(self._wakeup_fd, 512)
                elif sock is self._shed_sub:
                    self.read_shed()
                else:
                    self._drain(sock)
            now = time.monotonic()
            self._send_records_when_due(now)
            if now >= next_hello:
                self._hello()
                next_hello = now + HEARTBEAT_INTERVAL
            if now >= next_stats:
                # Batches the parser parsed again event by event (malformed input in them).
                self.counters.values["parse_batch_fallbacks"] = self._parser.batch_fallbacks
                publish_stats(self._pub, self.config.name, "worker", self.counters)
                next_stats = now + self.config.stats_interval
        self._send_records()  # what is built is stored: the PUB's linger delivers it on close
        log.info("%s stopping", self.config.name)

    def read_shed(self) -> None:
        """Take in what the store said about its queue (SHED in otszmq.wire); the last word wins."""
        sub = self._shed_sub
        while sub is not None:
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 2:
                    raise WireError(f"expected [topic, shed], got {len(frames)} frames")
                keep = unpack_shed(frames[1])
            except WireError as exc:
                self.counters.values["wire_errors"] += 1
                self._bad_input.warning(log, "ignoring a malformed word from the store: %s", exc)
                continue
            self._keep = keep
            self._keep_until = time.monotonic() + SHED_EXPIRY if keep < 1.0 else 0.0

    def _hello(self) -> None:
        name = self.config.name.encode()
        for dealer in self._dealers:
            # Again: that ingest is not connected (yet); the next heartbeat retries.
            with contextlib.suppress(zmq.Again):
                dealer.send_multipart((HELLO, name), zmq.NOBLOCK)

    def _drain(self, dealer: zmq.Socket[bytes]) -> None:
        """Handle what is queued now (bounded), publishing every PUBLISH_EVENTS routed events;
        then tell that ingest how far this worker has got (DONE)."""
        out: list[RoutedEntry] = []
        handled = 0
        done: int | None = None
        while handled < DRAIN_EVENTS:
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            events, sent = self.handle(frames, out)
            handled += events
            if sent is not None:
                done = sent
            if len(out) >= PUBLISH_EVENTS:
                self._publish(out)
                out = []
        if out:
            self._publish(out)
        # STORE HOOK: records go out after the routed events they came with, in messages of
        # their own, so routing never waits on them (wire.py: [TOPIC_RECORD, records]).
        self._send_records_when_due(time.monotonic())
        # CREDIT: once per round, after its events are published (wire.py). Again: that
        # ingest is gone or not yet connected; the next round's DONE says the same and more.
        if done is not None:
            with contextlib.suppress(zmq.Again):
                dealer.send_multipart((DONE, pack_done(done)), zmq.NOBLOCK)

    def _send_records_when_due(self, now: float) -> None:
        """Send the records built so far as one frame if they have waited ``record_linger``
        (counted from the end of the round that built the first of them) or fill a frame.

        SHED: what was skipped goes with them, or on its own now and then when none were
        built (the store must see what it could have had to ask for more).
        """
        if self._records.count:
            if self._records_due is None:
                self._records_due = now + self.config.record_linger
            if now >= self._records_due or self._records.count >= RECORD_FRAME_RECORDS:
                self._send_records()
        elif self._skipped and now >= self._last_record_frame + SKIP_REPORT_INTERVAL:
            self._send_records()

    def _send_records(self) -> None:
        """Send the records built so far and the count of those skipped, if any, as a frame."""
        records = self._records
        if not records.count and not self._skipped:
            return
        self.counters.values["records_out"] += records.count
        topic = TOPIC_RECORD_KEPT if self._records_all_kept else TOPIC_RECORD
        self._pub.send_multipart((topic, records.frame(self._skipped)))
        self._records_due = None
        self._records_all_kept = True
        self._skipped = 0
        self._last_record_frame = time.monotonic()

    def _publish(self, out: list[RoutedEntry]) -> None:
        """Send routed events as one batch, numbered on from the last (wire.SequenceGaps)."""
        batch = pack_routed_batch(self.config.worker_id, self._next_seq, out)
        self._next_seq += len(out)
        self._pub.send_multipart((TOPIC_EVENT, batch))

    def handle(self, frames: list[bytes], out: list[RoutedEntry]) -> tuple[int, int | None]:
        """Parse and route one message from ingest, each source's batch in turn; append the
        routed events to ``out``. Returns the number of events the message held and its
        running total ``sent`` (None for a malformed message: counted as one event)."""
        try:
            if len(frames) != 1:
                raise WireError(f"expected one frame, got {len(frames)}")
            sent, items = unpack_work(frames[0])
        except WireError as exc:
            self.counters.values["wire_errors"] += 1
            self._bad_input.warning(log, "dropping a malformed message from ingest: %s", exc)
            return 1, None
        handled = 0
        sources: list[tuple[SourceHeader, tuple[bytes, ...]]] = []
        for fields, events in items:
            handled += len(events)
            source = self._sources.get(fields)
            if source is None:
                try:
                    source = source_header(fields)
                except WireError as exc:
                    self.counters.values["wire_errors"] += 1
                    self._bad_input.warning(log, "dropping a malformed batch from ingest: %s", exc)
                    continue
                if len(self._sources) >= SOURCE_CACHE_LIMIT:
                    self._sources.clear()
                self._sources[fields] = source
            sources.append((source, events))
        self._handle_sources(sources, out)
        return handled, sent

    def _handle_sources(
        self, sources: list[tuple[SourceHeader, tuple[bytes, ...]]], out: list[RoutedEntry]
    ) -> None:
        """Parse and route the sources of one message, in order; append to ``out``.

        PERF: consecutive sources' events parse together (CotParser.parse_batch): with many
        clients a source has only one or two events in a message, too few to batch on their
        own. But in groups of about one batch, each routed before the next is parsed: parsing
        a backlogged message's thousands of events first kept all their trees alive at once,
        and the cache misses cost more than batching saved (measured here: 29 against 22 us
        an event in messages of 2,000).
        """
        group: list[tuple[SourceHeader, tuple[bytes, ...]]] = []
        count = 0
        for source, events in sources:
            # A source with more than a batch is cut into batches (their order kept).
            for first in range(0, max(len(events), 1), BATCH_MAX_EVENTS):
                piece = events[first : first + BATCH_MAX_EVENTS]
                if group and count + len(piece) > BATCH_MAX_EVENTS:
                    self._handle_group(group, out)
                    group, count = [], 0
                group.append((source, piece))
                count += len(piece)
        if group:
            self._handle_group(group, out)

    def _handle_group(
        self, sources: list[tuple[SourceHeader, tuple[bytes, ...]]], out: list[RoutedEntry]
    ) -> None:
        """Parse these sources' events in one batch, then route each source's in turn.

        A batch that one malformed event breaks is parsed again event by event, so a source
        that has sent one is parsed on its own from then on (``_suspects``): its bad input
        costs its own events a second parse, not its neighbours'.
        """
        suspects = self._suspects
        payloads: list[bytes] = []
        # NOTE: decided once per source before routing any: routing adds suspects.
        together = [(source.ingest, source.conn) not in suspects for source, _ in sources]
        for (source, events), batched in zip(sources, together, strict=True):
            if batched and source.kind == SourceKind.EVENT:
                payloads.extend(events)
        parsed = self._parser.parse_batch(payloads)
        offset = 0
        for (source, events), batched in zip(sources, together, strict=True):
            if source.kind == SourceKind.PROBE:
                self.counters.values["probes"] += 1
                out.append(self._entry(source, RouteMode.PROBE))
                continue
            if batched:
                results = parsed[offset : offset + len(events)]
                offset += len(events)
            else:
                results = self._parser.parse_batch(events)
            if not self._route_source(source, results, out):
                if len(suspects) >= SOURCE_CACHE_LIMIT:
                    suspects.clear()
                suspects.add((source.ingest, source.conn))

    def _route_source(
        self,
        source: SourceHeader,
        results: list[CotEvent | CotParseError],
        out: list[RoutedEntry],
    ) -> bool:
        """Route one source's parsed events, in order; append them to ``out``. False if any
        of them was malformed (dropped, counted and logged here)."""
        counters = self.counters.values
        counters["events_in"] += len(results)
        records = self._records if self.config.records else None
        # SHED: the store asks for the share of sheddable records it can write; building the
        # rest would cost routing for nothing (otszmq.wire).
        # NOTE: _keep_until first, so a worker that is not shedding reads no clock per batch.
        now = time.monotonic() if self._keep_until > 0.0 else 0.0
        keep = self._keep if now < self._keep_until else 1.0
        if records is not None and keep > 0.0:
            self._records_all_kept = False
        draw = self._draw
        well_formed = True
        for event in results:
            if isinstance(event, CotParseError):
                well_formed = False
                counters["parse_errors"] += 1
                self._bad_input.warning(
                    log, "dropping a malformed event from %s: %s", source.peer, event
                )
                continue
            decision = route(event, source)
            if decision.drop_reason:
                self.counters.inc("dropped_" + decision.drop_reason)
                continue
            out.append(routed_entry(source, decision, event))
            counters["events_routed"] += 1
            # STORE HOOK: what the store keeps of this event, built from the parsed event (the
            # store never parses XML); None for what it does not keep.
            if records is not None:
                kind = record_kind(event)
                if kind is None:
                    continue
                if keep < 1.0:
                    if sheddable(kind, event):
                        if keep <= 0.0 or draw() >= keep:
                            self._skipped += 1
                            counters["events_not_stored"] += 1
                            continue
                    elif not self._kept_budget.allow((source.ingest, source.conn), now):
                        counters["kept_over_budget"] += 1
                        counters["events_not_stored"] += 1
                        self._over_budget_log.warning(
                            log, "%s sends more of what the store keeps while it sheds than "
                            "its budget (%d per %g s): the rest is routed, not recorded",
                            source.peer, self._kept_budget.limit, self._kept_budget.window,
                        )
                        continue
                records.add(build_record(kind, event, source.sender_uid, source.groups_in))
        return well_formed

    @staticmethod
    def _entry(source: SourceHeader, mode: int) -> RoutedEntry:
        return (
            source.ingest, source.conn, mode, RouteFlag.NONE, source.groups_in, (), (), (), "",
            "", "", 0.0, "", source.origin, source.sender_uid, b"",
        )
