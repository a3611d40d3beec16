"""The store's write loop (otszmq.store.write_loop) against real databases, fed by a list.

The loop's source is the link to the receiving process in production (tested with it in
test_store_handoff and test_store); here a list hands out the frames, so that the loop's own
rules are seen directly: batches, pacing, counts reported, a bug not swallowed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from otszmq.pacing import Pacer
from otszmq.store.buffer import Frame
from otszmq.store.models import CotLog, Point
from otszmq.store.records import pack_records
from otszmq.store.write_loop import WriteLoop
from otszmq.store.writer import RecordWriter, Retention
from tests.store_support import BACKENDS, database_url, migrated, sa_fields

KEEP_ALL = Retention(points=None, cot=None, chat=None)


class ListSource:
    """Hands out the given batches, one per take, then ends; keeps every report."""

    def __init__(self, batches: list[list[Frame]]) -> None:
        self._batches = list(batches)
        self.reports: list[dict[str, int]] = []

    @property
    def closed(self) -> bool:
        return not self._batches

    def take(self, timeout: float) -> list[Frame] | None:
        return self._batches.pop(0) if self._batches else None

    def wait_closed(self, timeout: float) -> bool:
        return self.closed

    def report(self, counts: Mapping[str, int]) -> None:
        self.reports.append(dict(counts))


def frame(start: int, count: int) -> Frame:
    return pack_records([sa_fields(i) for i in range(start, start + count)]), count


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as value:
        yield value


def test_each_batch_is_written_and_reported(url):
    source = ListSource([[frame(0, 30)], [frame(30, 20), frame(50, 5)]])
    with migrated(url) as database:
        writer = RecordWriter(database, store_raw_xml=True)
        loop = WriteLoop(source, writer, batch_size=25, retention=KEEP_ALL, prune_interval=3600)
        loop.run()
        assert CotLog.select().count() == Point.select().count() == 55
    # 30 records in batches of at most 25: two transactions; then 25 in one.
    assert [(r["records_written"], r["batches_written"]) for r in source.reports] == [
        (30, 2), (55, 3)]
    assert loop.counts["records_written"] == 55


def test_a_paced_loop_pauses_and_writes_everything(url):
    # A slice this short pauses at nearly every pause point: decoding, row building, statements.
    source = ListSource([[frame(0, 100)], [frame(100, 100), frame(200, 100)]])
    pace = Pacer(1e-9)
    with migrated(url) as database:
        writer = RecordWriter(database, store_raw_xml=True, pace=pace)
        WriteLoop(source, writer, batch_size=500, retention=KEEP_ALL, prune_interval=3600).run()
        assert CotLog.select().count() == Point.select().count() == 300
    assert pace.pauses >= 300  # at least once per record decoded


def test_a_bug_in_the_writer_is_not_swallowed(url):
    class Broken(RecordWriter):
        def write(self, records: object) -> None:  # type: ignore[override]
            raise RuntimeError("bug")

    source = ListSource([[frame(0, 3)]])
    with migrated(url) as database:
        loop = WriteLoop(source, Broken(database, store_raw_xml=True), batch_size=10,
                         retention=KEEP_ALL, prune_interval=3600)
        with pytest.raises(RuntimeError, match="bug"):
            loop.run()
