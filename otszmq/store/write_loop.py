"""The store's database side: take record frames, check them, write them, prune old rows.

:class:`WriteLoop` runs in the store's writer process (:mod:`otszmq.store.writer_process`),
at the store's writer priority. It takes up to ``batch_size`` records at a time from its
:class:`FrameSource` (the link to the store's receiving process, :mod:`otszmq.store.handoff`),
unpacks, checks and writes them in one transaction, prunes old rows on a schedule, and reports
its counts back to the source after each step, which is how the receiving process learns what
was written (SHED's controller runs on those counts). It leaves the core for a moment after
each ``work_slice`` of work (:mod:`otszmq.pacing`: why).

What cannot be trusted is counted and left out; a database that refuses one record costs only
that record; a database that is unavailable is retried with back-off, without loss, except
while stopping (STOP_RETRY_WINDOW). Anything else is a bug: it propagates, and the process
ends (its parent counts the batch it held as lost and starts another writer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final, Protocol

from otszmq.errors import StoreError
from otszmq.store.buffer import Frame
from otszmq.store.records import Record, decode_record, unpack_records
from otszmq.store.writer import DatabaseUnavailable, RecordWriter, Retention

log = logging.getLogger(__name__)

RETRY_FIRST: Final = 0.5  # seconds: back-off while the database is unavailable
RETRY_MAX: Final = 10.0
STOP_RETRY_WINDOW: Final = 10.0  # at shutdown, keep retrying an unavailable database this long

WRITER_COUNTERS: Final = (
    "records_written", "records_malformed", "records_failed", "records_lost",
    "batches_written", "write_retries", "pruned_points", "pruned_cot", "pruned_chat",
    "wire_errors",
)
"""The counts the writer keeps (cumulative); it reports them to the receiving process."""


class FrameSource(Protocol):
    """Where the writer takes record frames from, and tells what it did with them."""

    @property
    def closed(self) -> bool:
        """Whether the store is stopping (no more records will come)."""

    def take(self, timeout: float) -> list[Frame] | None:
        """Frames holding up to a batch of records; ``[]`` after ``timeout`` seconds with
        none; None once closed and empty."""

    def wait_closed(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` unless the store stops meanwhile; True if it is stopping."""

    def report(self, counts: Mapping[str, int]) -> None:
        """Pass on the writer's cumulative counts (WRITER_COUNTERS)."""


class WriteLoop:
    """Write what ``source`` hands over with ``writer`` until the source is closed and empty."""

    def __init__(
        self,
        source: FrameSource,
        writer: RecordWriter,
        *,
        batch_size: int,
        retention: Retention,
        prune_interval: float,
    ) -> None:
        """The loop paces with ``writer.pace``."""
        self._source = source
        self._writer = writer
        self._pace = writer.pace
        self._batch_size = batch_size
        self._retention = retention
        self._prune_interval = prune_interval
        self.counts: dict[str, int] = dict.fromkeys(WRITER_COUNTERS, 0)

    def run(self) -> None:
        """Until the source ends; the last counts are then in :attr:`counts`."""
        source = self._source
        counts = self.counts
        reported = dict(counts)
        next_prune = time.monotonic()  # once at start-up, then every prune_interval
        while True:
            # Bounded wait: pruning runs on schedule even when nothing arrives.
            frames = source.take(max(0.0, next_prune - time.monotonic()))
            self._pace.rest()
            if frames is None:
                break
            records = self._decode(frames)
            # More than batch_size only from one frame larger than that.
            for start in range(0, len(records), self._batch_size):
                self._write(records[start:start + self._batch_size])
            if time.monotonic() >= next_prune:
                self._prune()
                next_prune = time.monotonic() + self._prune_interval
            if counts != reported:
                source.report(counts)
                reported = dict(counts)

    def _decode(self, frames: list[Frame]) -> list[Record]:
        """The checked records of ``frames``; what cannot be trusted is counted and left out."""
        records: list[Record] = []
        first_error: StoreError | None = None
        malformed = 0
        pace = self._pace
        for frame, count in frames:
            try:
                items = unpack_records(frame)
            except StoreError as exc:
                # Its header passed (count_records), the rest does not: none of it is trusted.
                self.counts["wire_errors"] += 1
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
            self.counts["records_malformed"] += malformed
            log.warning("dropped %d malformed records (first: %s)", malformed, first_error)
        return records

    def _write(self, records: list[Record]) -> None:
        if not records:
            return
        counts = self.counts
        try:
            self._retrying(lambda: self._writer.write(records))
        except DatabaseUnavailable as exc:
            counts["records_lost"] += len(records)
            log.error("lost %d records at shutdown: %s", len(records), exc)
            return
        except StoreError as exc:
            # One bad record must not cost the batch: write them one by one, drop the bad ones.
            log.warning("batch of %d refused (%s); writing record by record", len(records), exc)
            self._write_each(records)
            return
        counts["records_written"] += len(records)
        counts["batches_written"] += 1

    def _write_each(self, records: list[Record]) -> None:
        counts = self.counts
        for record in records:
            try:
                self._retrying(lambda: self._writer.write([record]))  # noqa: B023 (called now)
            except DatabaseUnavailable:
                counts["records_lost"] += 1
            except StoreError as exc:
                counts["records_failed"] += 1
                log.warning("dropping record %s (%s): %s", record.uid, record.type, exc)
            else:
                counts["records_written"] += 1

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
                if self._source.closed:
                    give_up_at = give_up_at or now + STOP_RETRY_WINDOW
                    if now >= give_up_at:
                        raise
                self.counts["write_retries"] += 1
                self._source.report(self.counts)  # an outage shows while it lasts
                log.warning("%s; retrying in %.1f s", exc, delay)
                if self._source.wait_closed(delay):
                    # Stopping: the close ended the back-off early; keep a short pause so that
                    # the last tries before giving up are spread over the window.
                    time.sleep(RETRY_FIRST)
                delay = min(RETRY_MAX, delay * 2)

    def _prune(self) -> None:
        try:
            pruned = self._writer.prune(self._retention, datetime.now(UTC))
        except StoreError as exc:
            log.warning("pruning failed (retried at the next interval): %s", exc)
            return
        for table, count in pruned.items():
            self.counts[f"pruned_{table}"] += count
        if any(pruned.values()):
            log.info("pruned %s", ", ".join(f"{n} {table}" for table, n in pruned.items()))
