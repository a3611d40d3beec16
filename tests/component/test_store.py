"""The store against real databases: SQLite in a temp dir and PostgreSQL in a private schema.

The writer alone (upserts, deletes, alerts, chat, retention), then the real StoreService fed by
a real ZeroMQ publisher on ipc:// (in a thread, with its real writer process), then the real
``otszmq store`` process stopped with SIGTERM.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
import zmq
from peewee import PostgresqlDatabase

from otszmq.errors import StoreError
from otszmq.metrics import publish_stats
from otszmq.store import service as store_service
from otszmq.store.database import open_database
from otszmq.store.main import writer_spec
from otszmq.store.migrations import LATEST, migrate
from otszmq.store.models import (
    MODELS,
    Alert,
    ChatRoom,
    ChatRoomMember,
    CotLog,
    Eud,
    GeoChat,
    Marker,
    Point,
    SchemaVersion,
)
from otszmq.store.records import RecordFields, pack_records, record_from_event
from otszmq.store.service import StoreConfig, StoreService
from otszmq.store.shedding import TICK, KeepController
from otszmq.store.writer import RecordWriter, Retention
from otszmq.store.writer_process import WriterProcess, spawn_writer
from otszmq.wire import TOPIC_RECORD, TOPIC_RECORD_KEPT, TOPIC_SHED, TOPIC_STATS, unpack_shed
from otszmq.workers.cot import parse_event
from tests.store_support import (
    BACKENDS,
    SA,
    database_url,
    migrate_in_child,
    migrated,
    pg_base_url,
    record_of,
    sa_fields,
    store_event,
    wait_until,
)
from tests.support import READY_TIMEOUT, otszmq_command

KEEP_ALL = Retention(points=None, cot=None, chat=None)
STALL = 1.0  # seconds the store's first look at its counts takes in the late-tick test


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as value:
        yield value


@pytest.fixture
def writer(url) -> Iterator[RecordWriter]:
    with migrated(url) as database:
        yield RecordWriter(database, store_raw_xml=True)


def at(xml: bytes, when: datetime) -> bytes:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    return xml.replace(b"2024-05-01T12:00:00.123456Z", stamp)


def at_second(xml: bytes, second: int) -> bytes:
    return at(xml, datetime(2024, 5, 1, 12, 0, second, tzinfo=UTC))


def marker(uid: str, callsign: str) -> bytes:
    return store_event("b-m-p-s-m", f'<contact callsign="{callsign}"/>', uid=uid)


def delete(uid: str) -> bytes:
    return store_event("t-x-d-d", f'<link uid="{uid}" relation="p-p"/>', uid=f"d-{uid}")


def write(writer: RecordWriter, *events: bytes) -> None:
    writer.write([record_of(xml, sender_uid="S") for xml in events])


# -- the writer ---------------------------------------------------------------------------


def test_newest_report_wins_across_batches(writer):
    write(writer, at_second(marker("m1", "new"), 5))
    write(writer, at_second(marker("m1", "old"), 1))
    assert Marker.get(Marker.uid == "m1").callsign == "new"
    write(writer, at_second(marker("m1", "newer"), 9))
    row = Marker.get(Marker.uid == "m1")
    assert row.callsign == "newer"
    assert row.time == datetime(2024, 5, 1, 12, 0, 9, tzinfo=UTC)
    assert Marker.select().count() == 1


def test_eud_upsert_keeps_what_a_later_report_leaves_out(writer):
    write(writer, SA)
    bare = store_event("a-f-G-U-C", '<contact callsign="Bravo-7" endpoint="*:-1:stcp"/>',
                       uid="ANDROID-1")
    write(writer, at_second(bare, 30))
    eud = Eud.get(Eud.uid == "ANDROID-1")
    assert (eud.callsign, eud.device, eud.phone, eud.team) == ("Bravo-7", "PIXEL", "555", "Cyan")
    assert eud.last_event_time == datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    assert eud.last_status == "Connected"
    write(writer, delete("ANDROID-1"))
    assert Eud.get(Eud.uid == "ANDROID-1").last_status == "Disconnected"


def test_every_event_is_logged_with_its_point(writer):
    write(writer, SA, marker("m1", "M"))
    assert CotLog.select().count() == 2
    log_row = CotLog.get(CotLog.uid == "ANDROID-1")
    assert log_row.xml == SA.decode() and log_row.missions == "M1"
    assert log_row.time.tzinfo is UTC
    point = Point.get(Point.uid == "ANDROID-1")
    assert (point.lat, point.lon, point.course, point.battery) == (48.8566, 2.3522, 12.5, 87.0)


def test_deleted_map_items_go(writer):
    write(writer, marker("m1", "M"), marker("m2", "M"))
    write(writer, delete("m1"))
    assert [m.uid for m in Marker.select()] == ["m2"]


def test_alerts_open_once_and_cancel(writer):
    alert = store_event("b-a-o-tbl", '<emergency type="911 Alert"/><link uid="ANDROID-7"/>',
                        uid="X-9-1-1")
    cancel = store_event("b-a-o-can", '<emergency cancel="true"/>', uid="X-9-1-1")
    write(writer, at_second(alert, 1), at_second(alert, 2))  # ATAK repeats an active alert
    write(writer, at_second(alert, 3))
    assert Alert.select().count() == 1
    write(writer, at_second(cancel, 4))
    row = Alert.get()
    assert (row.alert_type, row.sender_uid) == ("911 Alert", "ANDROID-7")
    assert row.cancel_time == datetime(2024, 5, 1, 12, 0, 4, tzinfo=UTC)
    write(writer, at_second(alert, 5))
    assert Alert.select().where(Alert.cancel_time.is_null()).count() == 1
    assert Alert.select().count() == 2


def test_chat_rooms_members_and_messages(writer):
    chat = store_event(
        "b-t-f",
        '<__chat chatroom="okm" id="room-1" senderCallsign="dog"><chatgrp uid0="A" uid1="B"/>'
        '</__chat><link uid="A"/><remarks>hi</remarks>',
        uid="GeoChat.A.room-1.1",
    )
    write(writer, chat)
    write(writer, chat)  # a re-sent message is stored once
    assert [(r.room_id, r.name) for r in ChatRoom.select()] == [("room-1", "okm")]
    assert sorted(m.uid for m in ChatRoomMember.select()) == ["A", "B"]
    message = GeoChat.get()
    assert (message.text, message.sender_uid, message.room_id) == ("hi", "A", "room-1")
    assert GeoChat.select().count() == 1


def test_retention_prunes_old_rows_and_keeps_new_ones(writer):
    now = datetime.now(UTC)
    chat = store_event("b-t-f", '<__chat chatroom="r" id="r"/><remarks>x</remarks>')
    old_sa, new_sa = at(SA, now - timedelta(days=10)), at(SA, now - timedelta(days=1))
    old_chat = at(chat.replace(b'uid="U-1"', b'uid="c-old"'), now - timedelta(days=40))
    new_chat = at(chat.replace(b'uid="U-1"', b'uid="c-new"'), now - timedelta(days=10))
    write(writer, old_sa, new_sa, old_chat, new_chat)
    counts = writer.prune(Retention(timedelta(days=7), timedelta(days=7), timedelta(days=30)), now)
    # The chat messages' own points and log entries are older than 7 days too.
    assert counts == {"points": 3, "cot": 3, "chat": 1}
    assert [p.time.date() for p in Point.select()] == [(now - timedelta(days=1)).date()]
    assert sorted(c.uid for c in GeoChat.select()) == ["c-new"]
    assert writer.prune(KEEP_ALL, now) == {}


def test_processes_starting_together_migrate_once(url):
    # The store and the API both migrate at start-up, and `serve` starts them together.
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(migrate_in_child, [url] * 3) == [LATEST] * 3
    with migrated(url):
        assert SchemaVersion.select().count() == LATEST


def test_version_4_drops_the_cot_type_index(url):
    with migrated(url) as database:
        assert "cot_type" not in {index.name for index in database.get_indexes("cot")}
        database.execute_sql('CREATE INDEX "cot_type" ON "cot" ("type")')  # as version 1 made it
        database.execute_sql("DELETE FROM schema_version WHERE version >= 4")
        assert migrate(database) == LATEST >= 4
        assert {index.name for index in database.get_indexes("cot")} >= {"cot_uid", "cot_time"}
        assert "cot_type" not in {index.name for index in database.get_indexes("cot")}


# -- the service, fed over ZeroMQ -----------------------------------------------------------


class Harness:
    """A StoreService in a thread, fed by an XPUB standing in for the fan-out."""

    def __init__(self, url: str, tmp_path: Path, **overrides: object) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        endpoint = f"ipc://{tmp_path / 'out.ipc'}"
        self.pub = self.context.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(endpoint)
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, TOPIC_RECORD)
        self.sub.connect(endpoint)
        self.stats = self.context.socket(zmq.PUB)
        self.stats.setsockopt(zmq.LINGER, 0)
        self.stats.connect(f"ipc://{tmp_path / 'in.ipc'}")
        self.wake_r, self.wake_w = os.pipe()
        self.database = open_database(url)  # the test's view of what was written
        self.database.bind(MODELS)
        settings: dict[str, object] = {
            "name": "store-test", "store_raw_xml": True, "batch_size": 500,
            "flush_interval": 0.0, "queue_limit": 100_000, "retention": KEEP_ALL,
            "prune_interval": 3600.0, "stats_interval": 0.1,
        }
        settings.update(overrides)
        config = StoreConfig(**settings)  # type: ignore[arg-type]
        # Wired as otszmq.store.main wires it.
        spec = writer_spec(config, url, logging.INFO)
        self.service = StoreService(
            config, lambda: spawn_writer(self.context, spec, tmp_path), self.sub, self.stats,
            self.wake_r,
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        # The store's subscription reaching the publisher is the start-up handshake.
        assert self.pub.poll(5000), "no subscription from the store"
        assert self.pub.recv() == b"\x01" + TOPIC_RECORD
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except StoreError as exc:  # handed to the test
            self.error = exc

    @property
    def writer(self) -> WriterProcess:
        return self.service.writer

    @property
    def counters(self) -> dict[str, int]:
        return self.service.counters.values

    def send(self, records: list[RecordFields], topic: bytes = TOPIC_RECORD) -> None:
        """One record frame, as a worker sends the records it holds."""
        self.send_frame(pack_records(records), topic)

    def send_frame(self, frame: bytes, topic: bytes = TOPIC_RECORD) -> None:
        self.pub.send_multipart([topic, frame])

    def request_stop(self) -> None:
        """What SIGTERM does to the store."""
        self.service.request_stop()
        os.write(self.wake_w, b"x")

    def stop(self) -> None:
        self.request_stop()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def close(self) -> None:
        if self.thread.is_alive():
            self.stop()
        self.service.close()
        for sock in (self.pub, self.sub, self.stats):
            sock.close()
        self.context.term()
        os.close(self.wake_r)
        os.close(self.wake_w)


@contextmanager
def harness(url: str, tmp_path: Path, **overrides: object) -> Iterator[Harness]:
    with migrated(url):
        pass
    running = Harness(url, tmp_path, **overrides)
    try:
        yield running
    finally:
        running.close()


def test_records_over_zeromq_are_written_in_batches(url, tmp_path):
    with harness(url, tmp_path) as store:
        total = 1200
        for start in range(0, total, 100):
            store.send([sa_fields(i) for i in range(start, start + 100)])
        wait_until("all records written", lambda: store.counters["records_written"] == total)
        assert CotLog.select().count() == total
        assert Point.select().count() == total
        assert Eud.select().count() == total
        assert store.counters["batches_written"] < total  # batched, not one per record
        assert store.counters["records_dropped"] == 0
        # The writer process's memory, on the receiver's gauges (it publishes nothing itself).
        assert store.service.counters.snapshot()["gauges"]["writer_rss_bytes"] > 1_000_000


def test_a_late_keep_tick_shows_on_its_gauge_until_the_counters_are_published(
    url, tmp_path, monkeypatch
):
    published: list[float] = []

    def spy(pub, name, role, counters):
        published.append(counters.snapshot()["gauges"]["keep_tick_late_ms"])
        publish_stats(pub, name, role, counters)

    monkeypatch.setattr(store_service, "publish_stats", spy)
    update = KeepController.update
    stalled: list[float] = []

    def stalling(self, now, *counts):
        # The first look at the counts, before the main loop, takes a second: the tick
        # after it is due 0.1 s after that look began, so it comes ~0.9 s late.
        if not stalled:
            stalled.append(now)
            time.sleep(STALL)
        return update(self, now, *counts)

    monkeypatch.setattr(KeepController, "update", stalling)
    with harness(url, tmp_path):
        wait_until("counters published after the stall", lambda: len(published) >= 4)
    late = max(published)
    assert late >= 1000 * (STALL - TICK) - 50
    # The gauge is the most since the last publication, not since the start.
    assert published[published.index(late) + 1 :] and published[-1] < late


def test_overflow_is_dropped_counted_and_logged(url, tmp_path, caplog):
    # The writer lingers for a full batch, so records pile up against the bound. A frame is
    # kept or dropped whole: the first passes the limit, those after it find the queue full.
    with harness(url, tmp_path, queue_limit=10, flush_interval=60.0) as store:
        store.send([sa_fields(i) for i in range(25)])
        wait_until("records received", lambda: store.counters["records_in"] == 25)
        assert store.counters["records_dropped"] == 0
        assert len(store.service.buffer) == 25
        store.send([sa_fields(i) for i in range(25, 30)])
        wait_until("records received", lambda: store.counters["records_in"] == 30)
        assert store.counters["records_dropped"] == 5
        store.send([sa_fields(i) for i in range(30, 33)])  # within the log interval: counted
        wait_until("records received", lambda: store.counters["records_in"] == 33)
        assert store.counters["records_dropped"] == 8
        assert store.counters["records_written"] == 0
        store.stop()
        assert store.counters["records_written"] == 25
        assert CotLog.select().count() == 25
    warnings = [r.getMessage() for r in caplog.records if "not keeping up" in r.getMessage()]
    assert warnings == ["store-test: the database is not keeping up: 5 records dropped (queue "
                        "limit 10; 5 dropped in all)"]


def test_records_kept_while_shedding_are_taken_past_a_full_queue(url, tmp_path):
    # What workers still record while the store sheds (chat, alerts: SHED in otszmq.wire) comes
    # as kept frames; the writer lingers, so the queue stays full throughout.
    with harness(url, tmp_path, queue_limit=10, flush_interval=60.0) as store:
        store.send([sa_fields(i) for i in range(12)])
        wait_until("records received", lambda: store.counters["records_in"] == 12)
        store.send([sa_fields(i) for i in range(12, 14)])  # ordinary: dropped
        store.send([sa_fields(i) for i in range(14, 17)], topic=TOPIC_RECORD_KEPT)
        wait_until("records received", lambda: store.counters["records_in"] == 17)
        assert store.counters["records_dropped"] == 2
        assert len(store.service.buffer) == 15
        store.stop()
        assert store.counters["records_written"] == 15
        assert CotLog.select().count() == 15


def test_a_backlog_the_writer_cannot_take_asks_the_workers_for_none_until_it_is_written(
    url, tmp_path
):
    # The writer lingers FLUSH s for a fuller batch: until then nothing is written, so records
    # arrive beyond anything the writer has shown it can do, and the store asks for none of the
    # sheddable ones (SHED in otszmq.wire), repeating it; once it writes, it asks for all again.
    flush = 2.0
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    words = context.socket(zmq.SUB)  # where the fan-out would take the store's word
    words.setsockopt(zmq.LINGER, 0)
    words.setsockopt(zmq.SUBSCRIBE, TOPIC_SHED)
    words.bind(f"ipc://{tmp_path / 'in.ipc'}")
    try:
        with harness(url, tmp_path, queue_limit=10, flush_interval=flush) as store:
            store.send([sa_fields(i) for i in range(15)])
            said: list[float] = []
            give_up = time.monotonic() + flush + 10  # the word repeats: bound the wait for 1.0
            while (not said or said[-1] < 1.0) and time.monotonic() < give_up:
                assert words.poll(int((flush + 5) * 1000), zmq.POLLIN), f"store said only {said}"
                topic, body = words.recv_multipart()
                assert topic == TOPIC_SHED
                said.append(unpack_shed(body))
            assert said[0] == 0.0 and said[-1] == 1.0
            assert len(said) >= 3  # repeated while it lasted (every SHED_REPEAT)
            wait_until("records written", lambda: store.counters["records_written"] == 15)
            assert store.counters["shed_starts"] == 1
            gauges = store.service.counters.snapshot()["gauges"]
            assert (gauges["shedding"], gauges["keep_ratio"]) == (0.0, 1.0)
    finally:
        words.close()
        context.term()


def test_what_the_workers_skipped_is_counted(url, tmp_path):
    with harness(url, tmp_path) as store:
        store.send_frame(pack_records([sa_fields(1)], skipped=40))
        store.send_frame(pack_records([], skipped=2), TOPIC_RECORD_KEPT)
        wait_until("frames counted", lambda: store.counters["records_skipped"] == 42)
        wait_until("records written", lambda: store.counters["records_written"] == 1)
        assert store.counters["records_in"] == 1


def test_a_frame_larger_than_a_batch_is_written_in_batches(url, tmp_path):
    with harness(url, tmp_path, batch_size=40) as store:
        store.send([sa_fields(i) for i in range(100)])
        wait_until("all records written", lambda: store.counters["records_written"] == 100)
        assert store.counters["batches_written"] == 3  # 40 + 40 + 20
        assert CotLog.select().count() == 100


def test_malformed_records_are_counted_and_skipped(url, tmp_path):
    with harness(url, tmp_path) as store:
        store.send_frame(b"not msgpack")  # no record of it can be trusted
        store.send_frame(msgpack.packb([99, [list(sa_fields(9))]], datetime=True))  # other version
        store.send([(99, "eud"), "not a record", sa_fields(1)])  # costs only the bad ones
        # A sound header over a cut body: counted on arrival, found out when unpacked.
        store.send_frame(pack_records([sa_fields(2), sa_fields(3)])[:-20])
        store.send([sa_fields(4)])
        wait_until("good records written", lambda: store.counters["records_written"] == 2)
        assert store.counters["records_in"] == 6
        assert store.counters["records_malformed"] == 4
        assert store.counters["wire_errors"] == 3
        assert Eud.select().count() == 2


def test_retention_runs_on_schedule_while_idle(url, tmp_path):
    old = at(SA, datetime.now(UTC) - timedelta(days=3))
    record = record_of(old)
    with migrated(url) as database:
        RecordWriter(database, store_raw_xml=False).write([record])
    day = Retention(timedelta(days=1), timedelta(days=1), None)
    with harness(url, tmp_path, retention=day, prune_interval=0.05) as store:
        wait_until("old point pruned", lambda: store.counters["pruned_points"] == 1)
        assert store.counters["pruned_cot"] == 1
        assert Point.select().count() == 0


def test_a_record_the_database_refuses_costs_only_itself(url, tmp_path):
    if not url.startswith("postgresql"):
        pytest.skip("SQLite does not enforce varchar lengths; PostgreSQL refuses 300 characters")
    long_name = marker("m-long", "x" * 300)
    with harness(url, tmp_path) as store:
        store.send([sa_fields(1), _fields(long_name), sa_fields(2)])
        counters = store.counters
        wait_until("records settled",
                   lambda: counters["records_written"] + counters["records_failed"] == 3)
        assert (store.counters["records_written"], store.counters["records_failed"]) == (2, 1)
        assert Eud.select().count() == 2


def _fields(xml: bytes) -> RecordFields:
    fields = record_from_event(parse_event(xml), "")
    assert fields is not None
    return fields


def test_a_lost_database_connection_is_retried_without_loss(url, tmp_path):
    if not url.startswith("postgresql"):
        pytest.skip("needs a database server whose connections can be cut")
    name = f"otszmq-store-{uuid.uuid4().hex[:8]}"
    with harness(f"{url}&application_name={name}", tmp_path) as store:
        store.send([sa_fields(i, "a") for i in range(10)])
        wait_until("first records written", lambda: store.counters["records_written"] == 10)
        admin = open_database(pg_base_url())
        try:
            cut = admin.execute_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s", (name,),
            ).fetchall()
        finally:
            admin.close()
        assert cut == [(True,)]
        store.send([sa_fields(i, "b") for i in range(10)])
        wait_until("records after the cut written",
                   lambda: store.counters["records_written"] == 20)
        assert store.counters["write_retries"] >= 1
        assert store.counters["records_lost"] == 0
        assert CotLog.select().count() == 20


def _kill_writer(store: Harness) -> int:
    """SIGKILL the store's writer process; returns its pid."""
    pid = store.writer.pid
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_writer_that_dies_is_replaced_and_the_queue_kept(url, tmp_path):
    # Lingering for a fuller batch: the records wait in the receiver when the writer dies.
    with harness(url, tmp_path, flush_interval=60.0) as store:
        store.send([sa_fields(i) for i in range(7)])
        wait_until("records queued", lambda: len(store.service.buffer) == 7)
        killed = _kill_writer(store)
        wait_until("another writer", lambda: store.counters["writer_restarts"] == 1)
        assert store.writer.pid != killed
        assert store.thread.is_alive() and store.error is None
        store.send([sa_fields(i, "b") for i in range(7, 10)])
        wait_until("records queued", lambda: len(store.service.buffer) == 10)
        store.stop()  # the new writer writes everything queued
        assert store.error is None
        assert store.counters["records_written"] == 10
        assert store.counters["records_lost"] == 0
        assert CotLog.select().count() == 10


@contextmanager
def writes_blocked(store: Harness) -> Iterator[None]:
    """Hold a lock on the store's database that the writer's transactions wait for."""
    database = store.database
    if isinstance(database, PostgresqlDatabase):
        with database.atomic():
            database.execute_sql(f"LOCK TABLE {CotLog._meta.table_name} IN EXCLUSIVE MODE")
            yield
    else:
        with database.atomic("IMMEDIATE"):  # SQLite's write lock, held to the end
            yield


def test_the_batch_a_dead_writer_held_is_counted_lost_and_costs_nothing_else(url, tmp_path):
    with harness(url, tmp_path) as store:
        gauges = store.service.counters.snapshot
        with writes_blocked(store):
            store.send([sa_fields(i) for i in range(5)])
            wait_until("the batch in the writer's hands",
                       lambda: gauges()["gauges"]["writer_held_records"] == 5)
            _kill_writer(store)
            wait_until("another writer", lambda: store.counters["writer_restarts"] == 1)
        assert store.counters["records_lost"] == 5
        assert gauges()["gauges"]["writer_held_records"] == 0
        store.send([sa_fields(i, "b") for i in range(5, 8)])
        wait_until("records after it written", lambda: store.counters["records_written"] == 3)
        assert CotLog.select().count() == 3
        assert store.counters["records_lost"] == 5


def test_a_writer_that_dies_while_the_store_stops_is_replaced_and_the_rest_written(
    url, tmp_path
):
    with harness(url, tmp_path, batch_size=5) as store:
        gauges = store.service.counters.snapshot
        with writes_blocked(store):
            store.send([sa_fields(i) for i in range(5)])
            store.send([sa_fields(i) for i in range(5, 10)])
            wait_until(
                "a batch in the writer's hands, another queued",
                lambda: gauges()["gauges"]["writer_held_records"] == 5
                and len(store.service.buffer) == 5,
            )
            store.request_stop()
            wait_until("the store stopping", lambda: store.service.buffer.closed)
            _kill_writer(store)
            wait_until("another writer", lambda: store.counters["writer_restarts"] == 1)
        store.thread.join(30)
        assert not store.thread.is_alive()
        assert store.error is None
        assert store.counters["records_lost"] == 5
        assert store.counters["records_written"] == 5
        assert CotLog.select().count() == 5


def test_writers_that_keep_dying_end_the_service_and_count_what_it_held(url, tmp_path):
    with harness(url, tmp_path, flush_interval=60.0) as store:
        store.send([sa_fields(i) for i in range(7)])
        wait_until("records queued", lambda: len(store.service.buffer) == 7)
        for restarts in range(1, store_service.WRITER_RESTART_LIMIT + 1):
            _kill_writer(store)
            wait_until("another writer", lambda: store.counters["writer_restarts"] == restarts)  # noqa: B023
        last = _kill_writer(store)
        store.thread.join(20)
        assert not store.thread.is_alive()
        assert isinstance(store.error, StoreError)
        assert (
            f"writer (process {last}) ended with signal 9, and 3 writers before it within 60 s;"
            " 7 records lost, 0 of them in its hands" in str(store.error)
        )
        assert store.counters["records_lost"] == 7


# -- the process ------------------------------------------------------------------------------


def test_sigterm_flushes_every_received_record(url, tmp_path):
    """N records in, SIGTERM while all still wait for a fuller batch: N rows out."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    out_endpoint, in_endpoint = f"ipc://{tmp_path / 'o.ipc'}", f"ipc://{tmp_path / 'i.ipc'}"
    pub = context.socket(zmq.XPUB)
    stats = context.socket(zmq.SUB)
    for sock in (pub, stats):
        sock.setsockopt(zmq.LINGER, 0)
    pub.bind(out_endpoint)
    stats.setsockopt(zmq.SUBSCRIBE, TOPIC_STATS)
    stats.bind(in_endpoint)
    ready_r, ready_w = os.pipe()
    log_path = tmp_path / "store.log"
    argv = otszmq_command(
        "store", "--data-dir", str(tmp_path / "data"), "--fanout-out", out_endpoint,
        "--fanout-in", in_endpoint, "--database-url", url, "--stats-interval", "0.1",
        "--store-flush-interval", "60", "--store-batch-size", "5000", "--ready-fd", str(ready_w),
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, pass_fds=(ready_w,), stderr=log)
    os.close(ready_w)
    try:
        assert pub.poll(int(READY_TIMEOUT * 1000)), log_path.read_text()
        assert pub.recv() == b"\x01" + TOPIC_RECORD
        assert os.read(ready_r, 16).startswith(b"ready")
        total = 2000
        for start in range(0, total, 250):
            batch = [sa_fields(i) for i in range(start, start + 250)]
            pub.send_multipart([TOPIC_RECORD, pack_records(batch)])
        counters: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while counters.get("records_in") != total:
            assert time.monotonic() < deadline, f"store received {counters}"
            if stats.poll(1000):
                counters = msgpack.unpackb(stats.recv_multipart()[1])["counters"]
        assert counters["records_written"] == 0  # all still buffered, waiting for a batch
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(ready_r)
        pub.close()
        stats.close()
        context.term()
    with migrated(url):
        assert CotLog.select().count() == total
        assert Point.select().count() == total
        assert Eud.select().count() == total
    assert "2000 records written, 0 dropped" in log_path.read_text()


def test_unusable_database_stops_the_stage_with_a_message(tmp_path):
    result = subprocess.run(
        otszmq_command("store", "--data-dir", str(tmp_path), "--database-url",
                       "postgresql://nobody:secret@127.0.0.1:1/none"),
        capture_output=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert b"otszmq store:" in result.stderr and b"secret" not in result.stderr
