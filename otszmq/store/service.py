"""The store stage: subscribe to the workers' records and write them in batches.

Two threads. The main thread owns the ZeroMQ sockets: it drains the SUB into a bounded
:class:`RecordBuffer` (overflow: drop-and-count) and publishes the counters, so that a slow
database never backs up into the fan-out. It reads only each frame's header (~5 us a frame) and
keeps the process's CPU priority: it must keep draining when routing takes every core. The
writer thread owns the database connection and runs at ``writer_priority``
(:mod:`otszmq.store.priority`): it takes up to ``batch_size`` records at a time (whatever has
arrived; optionally lingering for a fuller batch), unpacks, checks and writes them in one
transaction, and prunes old rows on a schedule, leaving the core for a moment after each
``work_slice`` of work (:mod:`otszmq.pacing`: why).

SHED (otszmq.wire): every tick the main thread works out the share of sheddable records it
wants from the workers (otszmq.store.shedding: what the writer writes, what the queue holds,
what the workers could send) and tells them when it changes; what people write by hand is
always built (sent as kept frames while the share is 0, which the buffer takes past its
limit).

Shutdown: stop receiving, drain what the SUB socket already holds, then the writer writes
everything buffered before the process exits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import zmq

from otszmq.errors import StoreError
from otszmq.logthrottle import LogThrottle
from otszmq.metrics import Counters, publish_stats
from otszmq.store.buffer import Frame, RecordBuffer
from otszmq.store.priority import lower_priority
from otszmq.store.records import Record, count_records, decode_record, unpack_records
from otszmq.store.shedding import TICK, KeepController, worth_announcing
from otszmq.store.writer import DatabaseUnavailable, RecordWriter, Retention
from otszmq.wire import SHED_REPEAT, TOPIC_RECORD_KEPT, TOPIC_SHED, pack_shed

log = logging.getLogger(__name__)

DRAIN_BATCH: Final = 500  # SUB messages (record batches) per main-loop turn
RETRY_FIRST: Final = 0.5  # seconds: back-off while the database is unavailable
RETRY_MAX: Final = 10.0
STOP_RETRY_WINDOW: Final = 10.0  # at shutdown, keep retrying an unavailable database this long

COUNTERS: Final = (
    "records_in", "records_dropped", "records_written", "records_malformed", "records_failed",
    "records_lost", "batches_written", "write_retries", "pruned_points", "pruned_cot",
    "pruned_chat", "wire_errors", "shed_starts", "records_skipped",
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
    writer_priority: str = "normal"  # the writer thread's; one of config.STORE_PRIORITIES


class StoreService:
    def __init__(
        self,
        config: StoreConfig,
        writer: RecordWriter,
        sub: zmq.Socket[bytes],
        stats_pub: zmq.Socket[bytes],
        wakeup_fd: int,
    ) -> None:
        """The writer thread paces with ``writer.pace``."""
        self.config = config
        self._writer = writer
        self._sub = sub
        self._stats_pub = stats_pub
        self._wakeup_fd = wakeup_fd
        self._write_pace = writer.pace
        self.buffer = RecordBuffer(config.queue_limit)
        self.counters = Counters()
        self.counters.preset(*COUNTERS)
        self.counters.gauge("queue_depth", lambda: float(len(self.buffer)))
        self._stop = False
        self._writer_failed = False
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

    def request_stop(self) -> None:
        self._stop = True

    # -- main thread: receive and report -------------------------------------------------------

    def run(self) -> None:
        writer = threading.Thread(target=self._write_loop, name="store-writer")
        writer.start()
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._wakeup_fd, zmq.POLLIN)
        next_stats = next_tick = time.monotonic()
        self._update_keep(next_tick)  # SHED: counts from zero, before anything is drained
        next_tick += TICK
        log.info("%s started", self.config.name)
        try:
            while not self._stop and writer.is_alive():
                timeout = min(next_stats, next_tick) - time.monotonic()
                for sock, _ in poller.poll(max(0, int(timeout * 1000))):
                    if sock == self._wakeup_fd:
                        os.read(self._wakeup_fd, 512)
                    else:
                        self._drain(DRAIN_BATCH)
                now = time.monotonic()
                if now >= next_tick:
                    self._update_keep(now)
                    next_tick = now + TICK
                if time.monotonic() >= next_stats:
                    self._publish_stats()
                    next_stats = time.monotonic() + self.config.stats_interval
            # Whatever reached this process before the stop is written, not lost.
            while self._drain(DRAIN_BATCH) == DRAIN_BATCH:
                pass
        finally:
            self.buffer.close()
            writer.join()
            self._publish_stats()
        if self._writer_failed:
            raise StoreError(f"{self.config.name}: the database writer failed (see the log)")
        log.info(
            "%s stopped: %d records written, %d dropped", self.config.name,
            self.counters.values["records_written"], self.counters.values["records_dropped"],
        )

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

    def _publish_stats(self) -> None:
        publish_stats(self._stats_pub, self.config.name, "store", self.counters)

    # -- writer thread: the database -------------------------------------------------------------

    def _write_loop(self) -> None:
        config = self.config
        next_prune = time.monotonic()  # once at start-up, then every prune_interval
        take = self.buffer.take
        try:
            lower_priority(config.writer_priority)  # this thread's only
            while True:
                # Bounded wait: pruning runs on schedule even when nothing arrives.
                timeout = max(0.0, next_prune - time.monotonic())
                frames = take(config.batch_size, config.flush_interval, timeout)
                self._write_pace.rest()
                if frames is None:
                    break
                records = self._decode(frames)
                # More than batch_size only from one frame larger than that (RecordBuffer.take).
                for start in range(0, len(records), config.batch_size):
                    self._write(records[start:start + config.batch_size])
                if time.monotonic() >= next_prune:
                    self._prune()
                    next_prune = time.monotonic() + config.prune_interval
        except Exception:
            # NOTE: a bug, not bad input (that is counted per record): log it and end the
            # process (run() raises), whose supervisor restarts it, rather than keep buffering
            # into nowhere.
            log.exception("%s: the writer failed", config.name)
            self._writer_failed = True
            self._stop = True

    def _decode(self, frames: list[Frame]) -> list[Record]:
        """The checked records of ``frames``; what cannot be trusted is counted and left out."""
        records: list[Record] = []
        first_error: StoreError | None = None
        malformed = 0
        pace = self._write_pace
        for frame, count in frames:
            try:
                items = unpack_records(frame)
            except StoreError as exc:
                # Its header passed (count_records), the rest does not: none of it is trusted.
                self.counters.values["wire_errors"] += 1
                malformed += count
                first_error = first_error or exc
                continue
            for item in items:
                pace()
                try:
                    records.append(decode_record(item))
                except StoreError as exc:
                    malformed += 1
                    first_error = first_error or exc
        if malformed:
            self.counters.values["records_malformed"] += malformed
            log.warning("dropped %d malformed records (first: %s)", malformed, first_error)
        return records

    def _write(self, records: list[Record]) -> None:
        if not records:
            return
        values = self.counters.values
        try:
            self._retrying(lambda: self._writer.write(records))
        except DatabaseUnavailable as exc:
            values["records_lost"] += len(records)
            log.error("lost %d records at shutdown: %s", len(records), exc)
            return
        except StoreError as exc:
            # One bad record must not cost the batch: write them one by one, drop the bad ones.
            log.warning("batch of %d refused (%s); writing record by record", len(records), exc)
            self._write_each(records)
            return
        values["records_written"] += len(records)
        values["batches_written"] += 1

    def _write_each(self, records: list[Record]) -> None:
        values = self.counters.values
        for record in records:
            try:
                self._retrying(lambda: self._writer.write([record]))  # noqa: B023 (called now)
            except DatabaseUnavailable:
                values["records_lost"] += 1
            except StoreError as exc:
                values["records_failed"] += 1
                log.warning("dropping record %s (%s): %s", record.uid, record.type, exc)
            else:
                values["records_written"] += 1

    def _retrying(self, attempt: Callable[[], None]) -> None:
        """Run ``attempt`` until the database takes it; while stopping, only for a while."""
        delay = RETRY_FIRST
        give_up_at: float | None = None
        while True:
            try:
                attempt()
                return
            except DatabaseUnavailable as exc:
                now = time.monotonic()
                if self.buffer.closed:
                    give_up_at = give_up_at or now + STOP_RETRY_WINDOW
                    if now >= give_up_at:
                        raise
                self.counters.values["write_retries"] += 1
                log.warning("%s; retrying in %.1f s", exc, delay)
                if self.buffer.wait_closed(delay):
                    # Stopping: the close ended the back-off early; keep a short pause so that
                    # the last tries before giving up are spread over the window.
                    time.sleep(RETRY_FIRST)
                delay = min(RETRY_MAX, delay * 2)

    def _prune(self) -> None:
        try:
            counts = self._writer.prune(self.config.retention, datetime.now(UTC))
        except StoreError as exc:
            log.warning("pruning failed (retried at the next interval): %s", exc)
            return
        for table, count in counts.items():
            self.counters.values[f"pruned_{table}"] += count
        if any(counts.values()):
            log.info("pruned %s", ", ".join(f"{n} {table}" for table, n in counts.items()))
