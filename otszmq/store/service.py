"""The store stage: subscribe to the workers' records and have them written in batches.

Two processes. This one, the receiver, keeps routing's CPU priority: its main thread drains the
fan-out's record frames into a bounded :class:`RecordBuffer` (overflow: drop-and-count), reading
only each frame's header (~5 us a frame), so that a slow database never backs up into the
fan-out; it runs SHED's controller and publishes the counters. The writer process
(:mod:`otszmq.store.writer_process`) runs at ``writer_priority`` (:mod:`otszmq.store.priority`)
and owns the database connection: it pulls up to ``batch_size`` records at a time over a PAIR
link (:mod:`otszmq.store.handoff`: why a process, and the protocol), unpacks, checks and writes
them, prunes on a schedule and reports its counts back, which this process publishes as its own.

SHED (otszmq.wire): every tick the receiver works out the share of sheddable records it wants
from the workers (otszmq.store.shedding: what the writer writes, what the queue holds, what the
workers could send) and tells them when it changes; what people write by hand is always built
(sent as kept frames while the share is 0, which the buffer takes past its limit).

Shutdown: stop receiving, drain what the SUB socket already holds, then the writer writes
everything buffered and exits before this process does.

A writer that exits before it is told to has met a bug (bad input and database outages are
handled inside it), maybe one that a record of its batch sets off: that batch is counted lost
(``records_lost``; it may have been written in part) and another writer takes over the queue,
which is kept (``writer_restarts``). A writer that keeps failing (more than
WRITER_RESTART_LIMIT times in WRITER_RESTART_WINDOW seconds: it cannot start, say) ends the
store with a StoreError and the queued records counted lost, for its supervisor to restart it
with back-off.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import zmq

from otszmq.errors import StoreError
from otszmq.logthrottle import LogThrottle
from otszmq.metrics import Counters, publish_stats, rss_bytes
from otszmq.store.buffer import RecordBuffer
from otszmq.store.handoff import WriterFeed
from otszmq.store.records import count_records
from otszmq.store.shedding import TICK, KeepController, worth_announcing
from otszmq.store.write_loop import WRITER_COUNTERS
from otszmq.store.writer import Retention
from otszmq.store.writer_process import WriterProcess
from otszmq.wire import SHED_REPEAT, TOPIC_RECORD_KEPT, TOPIC_SHED, pack_shed

log = logging.getLogger(__name__)

DRAIN_BATCH: Final = 500  # SUB messages (record batches) per main-loop turn
LAST_WORDS_WAIT: Final = 1.0  # seconds an exited writer's last message may take to arrive
WRITER_RESTART_LIMIT: Final = 3
"""Writers that ended unasked within WRITER_RESTART_WINDOW and were replaced in place; the
next such end stops the store (see the module's docstring)."""
WRITER_RESTART_WINDOW: Final = 60.0

COUNTERS: Final = (
    "records_in", "records_dropped", "records_skipped", "shed_starts", "wire_errors",
    "writer_restarts",
    *(name for name in WRITER_COUNTERS if name != "wire_errors"),
)


@dataclass(frozen=True)
class StoreConfig:
    name: str
    store_raw_xml: bool
    batch_size: int
    flush_interval: float  # seconds a batch may wait to fill; 0: write what is there
    queue_limit: int
    retention: Retention
    prune_interval: float  # seconds between prune runs
    stats_interval: float
    work_slice: float = 0.0  # seconds of work between two pauses (otszmq.pacing); 0: none
    writer_priority: str = "normal"  # the writer process's; one of config.STORE_PRIORITIES


class StoreService:
    def __init__(
        self,
        config: StoreConfig,
        start_writer: Callable[[], WriterProcess],
        sub: zmq.Socket[bytes],
        stats_pub: zmq.Socket[bytes],
        wakeup_fd: int,
    ) -> None:
        """``start_writer`` starts a writer process (its link included), now and whenever one
        has to be replaced; the service ends them (:meth:`close` releases the last)."""
        self.config = config
        self._start_writer = start_writer
        self._sub = sub
        self._stats_pub = stats_pub
        self._wakeup_fd = wakeup_fd
        self.buffer = RecordBuffer(config.queue_limit)
        self.counters = Counters()
        self.counters.preset(*COUNTERS)
        self.counters.gauge("queue_depth", lambda: float(len(self.buffer)))
        # The writer process publishes nothing itself: its memory is shown here.
        self.counters.gauge("writer_rss_bytes", lambda: float(rss_bytes(self.writer.pid)))
        # Records handed to the writer and not yet written: a batch a slow transaction or a
        # database outage holds up (write_retries) shows here.
        self.counters.gauge("writer_held_records", lambda: float(self._feed.held))
        self._poller = zmq.Poller()
        for watched in (sub, wakeup_fd):
            self._poller.register(watched, zmq.POLLIN)
        self._reported: dict[str, int] = {}  # the writer's counts as last reported
        self._unasked_exits: list[float] = []  # when writers ended unasked (monotonic), lately
        self._stop = False
        # Under overload records are dropped, and SHED starts, every few seconds or more often:
        # a line per interval says so (otszmq.logthrottle).
        self._drop_log = LogThrottle()
        self._keeper = KeepController(config.queue_limit)
        self._announced = 1.0  # the keep ratio the workers were last told
        self._next_shed_repeat = 0.0
        self._shed_log = LogThrottle()
        self.counters.gauge("shedding", lambda: float(self._announced < 1.0))
        self.counters.gauge("keep_ratio", lambda: self._announced)
        self.counters.gauge("write_rate", lambda: round(self._keeper.write_rate, 1))
        self.counters.gauge("record_demand", lambda: round(self._keeper.demand, 1))
        # The most a tick of the keep controller was late since the counters were last
        # published: a receiver starved of CPU answers a flood late (BENCHMARKS.md, step 20).
        self._tick_late = 0.0
        self.counters.gauge("keep_tick_late_ms", lambda: round(1000 * self._tick_late, 1))
        self.writer, self._feed = self._new_writer()

    def _new_writer(self) -> tuple[WriterProcess, WriterFeed]:
        """Start a writer process and watch it; its counts start from zero."""
        writer = self._start_writer()
        feed = WriterFeed(
            writer.link, self.buffer, batch_size=self.config.batch_size,
            linger=self.config.flush_interval, on_counts=self._writer_counts,
        )
        if self.buffer.closed:
            feed.close()  # the store is stopping: the new writer is told so too
        self._reported.clear()
        for watched in (writer.link, writer.exit_fd):
            self._poller.register(watched, zmq.POLLIN)
        return writer, feed

    def close(self) -> None:
        """Release the writer process and its link (killed if it still runs: see
        :meth:`WriterProcess.close`)."""
        self.writer.close()

    def request_stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        poller = self._poller
        next_stats = next_tick = time.monotonic()
        self._update_keep(next_tick)  # SHED: counts from zero, before anything is drained
        next_tick += TICK
        linger_until: float | None = None
        log.info("%s started (writer process %d)", self.config.name, self.writer.pid)
        try:
            while not self._stop:
                wake_at = min(next_stats, next_tick, linger_until or next_tick)
                self._serve_turn(poller, wake_at - time.monotonic(), drain=True)
                now = time.monotonic()
                linger_until = self._feed.serve(now)
                if now >= next_tick:
                    self._tick_late = max(self._tick_late, now - next_tick)
                    self._update_keep(now)
                    next_tick = now + TICK
                next_stats = self._stats_when_due(next_stats)
            # Whatever reached this process before the stop is written, not lost.
            while self._drain(DRAIN_BATCH) == DRAIN_BATCH:
                pass
            self._feed.close()
            poller.unregister(self._sub)
            while not self._feed.done:
                self._serve_turn(poller, next_stats - time.monotonic(), drain=False)
                self._feed.serve(time.monotonic())
                next_stats = self._stats_when_due(next_stats)
            self.writer.wait()
        finally:
            self._publish_stats()
        log.info(
            "%s stopped: %d records written, %d dropped", self.config.name,
            self.counters.values["records_written"], self.counters.values["records_dropped"],
        )

    def _serve_turn(self, poller: zmq.Poller, timeout: float, *, drain: bool) -> None:
        """Wait up to ``timeout`` seconds and handle what came: records, the writer, a
        signal; a writer process that exited before it was told to is replaced, or ends the
        store with a StoreError (see the module's docstring)."""
        for watched, _ in poller.poll(max(0, math.ceil(timeout * 1000))):
            if watched == self._wakeup_fd:
                os.read(self._wakeup_fd, 512)
            elif watched == self.writer.exit_fd:
                if self.writer.exited() and self._writer_exited():
                    # NOTE: the rest of this poll's list may name the old writer's link and
                    # pipe, whose fd number the new writer's pipe may have taken.
                    return
            elif watched is self.writer.link:
                self._feed.receive()
            elif drain:
                self._drain(DRAIN_BATCH)

    def _writer_exited(self) -> bool:
        """The writer process has exited: as told (its DONE arrives: False), or not: replaced
        (True) unless writers keep failing (StoreError)."""
        writer, feed = self.writer, self._feed
        # Its last words may still be on their way through ZeroMQ's I/O thread.
        give_up_at = time.monotonic() + LAST_WORDS_WAIT
        while not feed.done:
            remaining = give_up_at - time.monotonic()
            if remaining <= 0 or not writer.link.poll(math.ceil(remaining * 1000)):
                break
            feed.receive()
        if feed.done:
            return False
        values = self.counters.values
        values["records_lost"] += feed.held
        now = time.monotonic()
        exits = [at for at in self._unasked_exits if at > now - WRITER_RESTART_WINDOW]
        self._unasked_exits = [*exits, now]
        ended = (
            f"{self.config.name}: the database writer (process {writer.pid}) ended with "
            f"{writer.exit_status()}"
        )
        if len(exits) >= WRITER_RESTART_LIMIT:
            queued = len(self.buffer)
            values["records_lost"] += queued
            raise StoreError(
                f"{ended}, and {len(exits)} writers before it within "
                f"{WRITER_RESTART_WINDOW:g} s; {feed.held + queued} records lost, {feed.held} "
                "of them in its hands (see the log)"
            )
        for watched in (writer.link, writer.exit_fd):
            self._poller.unregister(watched)
        writer.close()
        self.writer, self._feed = self._new_writer()
        values["writer_restarts"] += 1
        log.error(
            "%s (see the log above); the %d records in its hands are counted lost (some may "
            "have been written); writer process %d takes over the %d queued", ended, feed.held,
            self.writer.pid, len(self.buffer),
        )
        return True

    def _writer_counts(self, counts: Mapping[str, int]) -> None:
        """Add what the writer did since its last report to this process's counters."""
        values = self.counters.values
        reported = self._reported
        for name in WRITER_COUNTERS:
            count = counts.get(name, 0)
            values[name] += count - reported.get(name, 0)
            reported[name] = count

    def _drain(self, limit: int) -> int:
        """Move up to ``limit`` waiting messages into the buffer; returns how many were read."""
        values = self.counters.values
        for count in range(limit):
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return count
            try:
                if len(frames) != 2:
                    raise StoreError(f"expected [topic, records], got {len(frames)} frames")
                records, skipped = count_records(frames[1])
            except StoreError as exc:
                values["wire_errors"] += 1
                log.warning("dropping a malformed record message: %s", exc)
                continue
            values["records_in"] += records
            values["records_skipped"] += skipped
            if not self.buffer.put(frames[1], records, kept=frames[0] == TOPIC_RECORD_KEPT):
                values["records_dropped"] += records
                self._dropped(records)
        return limit

    def _update_keep(self, now: float) -> None:
        """SHED: work out the share of sheddable records to ask for; say it when it changes,
        and again every SHED_REPEAT while it is below 1 (the workers' word expires)."""
        values = self.counters.values
        keep = self._keeper.update(
            now, values["records_in"], values["records_skipped"], values["records_written"],
            len(self.buffer),
        )
        announced = self._announced
        if worth_announcing(keep, announced):
            if announced >= 1.0:
                values["shed_starts"] += 1
                if self._shed_log.allow(now=now):
                    log.warning(
                        "%s: the database writes %.0f records/s of the %.0f/s the workers could "
                        "send: they build %.0f%% of position reports and feeds' records now "
                        "(what people write, always), %d records queued (%d times so far)",
                        self.config.name, self._keeper.write_rate, self._keeper.demand,
                        100 * keep, len(self.buffer), values["shed_starts"],
                    )
            elif keep >= 1.0:
                log.debug("%s: the workers build every record again", self.config.name)
        elif not (keep < 1.0 and now >= self._next_shed_repeat):
            return
        self._announced = keep
        self._stats_pub.send_multipart((TOPIC_SHED, pack_shed(keep)))
        self._next_shed_repeat = now + SHED_REPEAT

    def _dropped(self, count: int) -> None:
        """Say that the database is falling behind: the first drop, then a tally now and then."""
        unlogged = self._drop_log.allow(count)
        if unlogged:
            log.warning(
                "%s: the database is not keeping up: %d records dropped (queue limit %d; "
                "%d dropped in all)", self.config.name, unlogged,
                self.buffer.limit, self.counters.values["records_dropped"],
            )

    def _stats_when_due(self, due: float) -> float:
        """Publish the counters if ``due`` (monotonic) has come; when they are due next."""
        if time.monotonic() < due:
            return due
        self._publish_stats()
        return time.monotonic() + self.config.stats_interval

    def _publish_stats(self) -> None:
        publish_stats(self._stats_pub, self.config.name, "store", self.counters)
        self._tick_late = 0.0
