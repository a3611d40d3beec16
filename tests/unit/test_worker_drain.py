"""A worker's drain round: routed events go out in bounded batches, then the records built so
far once they have waited ``record_linger`` (0 here unless a test says otherwise: each round's
records at its end); while the store says it sheds, only those of the kinds it keeps then (SHED
in otszmq.wire)."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from otszmq.store.records import count_records, unpack_records
from otszmq.wire import (
    DONE,
    TOPIC_EVENT,
    TOPIC_RECORD,
    TOPIC_RECORD_KEPT,
    TOPIC_SHED,
    WIRE_VERSION,
    SourceHeader,
    SourceKind,
    pack_shed,
    pack_work,
    unpack_done,
    unpack_routed_batch,
)
from otszmq.workers import service as worker_service
from otszmq.workers.budget import SourceBudget
from otszmq.workers.service import PUBLISH_EVENTS, WorkerConfig, WorkerService
from tests.support import instant_event, marker_event, sa_event

WORKER_IDENTITY = b"worker-under-test"
RECV_TIMEOUT_MS = 2000


class Rig:
    """A WorkerService wired to in-process sockets: a ROUTER standing in for ingest, a SUB for
    what it publishes, an XPUB standing in for the store's SHED word."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self.ingest = context.socket(zmq.ROUTER)
        self.ingest.bind(f"{endpoint}-work")
        self.dealer = context.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.IDENTITY, WORKER_IDENTITY)
        self.dealer.connect(f"{endpoint}-work")
        self.pub = context.socket(zmq.PUB)
        self.pub.bind(f"{endpoint}-out")
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
        self.sub.connect(f"{endpoint}-out")
        self.store = context.socket(zmq.XPUB)
        self.store.bind(f"{endpoint}-shed")
        self.shed = context.socket(zmq.SUB)
        self.shed.setsockopt(zmq.SUBSCRIBE, TOPIC_SHED)
        self.shed.connect(f"{endpoint}-shed")
        self.wakeup_r, self.wakeup_w = os.pipe()
        config = WorkerConfig(
            name="worker-t", worker_id="wt", stats_interval=60.0, records=True, record_linger=0.0
        )
        self.worker = WorkerService(config, [self.dealer], self.pub, self.wakeup_r, self.shed)
        self.sent = 0  # the running total ingest puts in each work message


    def send_events(self, events: list[bytes]) -> None:
        """One message from ingest: these events, from one connection."""
        self.send_sources({0: events})

    def send_sources(self, events: dict[int, list[bytes]]) -> None:
        """One message from ingest: each connection's events."""
        items = [
            (SourceHeader(SourceKind.EVENT, "ingest-t", conn, f"127.0.0.1:{conn}", "", ()), batch)
            for conn, batch in events.items()
        ]
        self.sent += sum(len(batch) for batch in events.values())
        self.ingest.send_multipart((WORKER_IDENTITY, pack_work(self.sent, items)))

    def send_work(self, sources: int, events_each: int, tag: str = "m") -> None:
        """One message from ingest: `sources` connections with `events_each` SA events each."""
        self.send_sources({
            conn: [sa_event(f"{tag}-{conn}-{n}", f"cs-{conn}-{n}") for n in range(events_each)]
            for conn in range(sources)
        })

    def dones(self) -> list[int]:
        """The running totals of the DONEs the worker sent back so far."""
        dones = []
        while self.ingest.poll(0 if dones else RECV_TIMEOUT_MS, zmq.POLLIN):
            identity, kind, body = self.ingest.recv_multipart()
            assert (identity, kind) == (WORKER_IDENTITY, DONE)
            dones.append(unpack_done(body))
        return dones

    def wait_queued(self) -> None:
        assert self.dealer.poll(RECV_TIMEOUT_MS, zmq.POLLIN), "work never reached the worker"

    def published(self) -> list[tuple[bytes, bytes]]:
        """Every message published so far, in order."""
        messages = []
        while self.sub.poll(0 if messages else RECV_TIMEOUT_MS, zmq.POLLIN):
            topic, body = self.sub.recv_multipart()
            messages.append((topic, body))
        return messages

    def say_shed(self, body: bytes) -> None:
        """The store's word reaches the worker, which takes it in (as its poll loop does)."""
        self.store.send_multipart((TOPIC_SHED, body))
        assert self.shed.poll(RECV_TIMEOUT_MS, zmq.POLLIN), "the shed word never arrived"
        self.worker.read_shed()

    def linger(self, seconds: float) -> None:
        """Have the worker hold its records up to ``seconds`` before it sends them."""
        self.worker.config = dataclasses.replace(self.worker.config, record_linger=seconds)

    def round_topics(self, sources: int, events_each: int) -> list[bytes]:
        """One message from ingest, one drain round: the topics it published, in order."""
        self.send_work(sources, events_each)
        self.wait_queued()
        self.worker._drain(self.dealer)
        return [topic for topic, _ in self.published()]

    def close(self) -> None:
        for sock in (self.ingest, self.dealer, self.pub, self.sub, self.store, self.shed):
            sock.close(linger=0)
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made = Rig(context, f"inproc://{request.node.name}")
    # PUB drops what it sends before a subscription arrives: wait until the SUB is joined.
    made.pub.send_multipart((b"hello", b""))
    while not made.sub.poll(10, zmq.POLLIN):
        made.pub.send_multipart((b"hello", b""))
    while made.sub.poll(50, zmq.POLLIN):
        made.sub.recv_multipart()
    assert made.store.poll(RECV_TIMEOUT_MS, zmq.POLLIN), "the worker never subscribed to SHED"
    assert made.store.recv() == b"\x01" + TOPIC_SHED
    yield made
    made.close()
    context.term()


def test_a_long_round_publishes_bounded_batches_then_its_records_once(rig: Rig) -> None:
    # Five messages of half a batch each, queued before the round starts.
    messages, sources = 5, 2
    each = PUBLISH_EVENTS // (2 * sources)
    half = sources * each
    for message in range(messages):
        rig.send_work(sources, each, tag=f"m{message}")
    rig.wait_queued()

    rig.worker._drain(rig.dealer)

    published = rig.published()
    topics = [topic for topic, _ in published]
    assert topics == [TOPIC_EVENT] * 3 + [TOPIC_RECORD]
    batches = [unpack_routed_batch(body) for topic, body in published if topic == TOPIC_EVENT]
    # A batch goes out once it holds PUBLISH_EVENTS (whole messages), the rest at the round's end.
    assert [len(batch.events) for batch in batches] == [2 * half, 2 * half, half]
    # The sequence numbers run on across batches with no gap (ingest's SequenceGaps).
    assert [batch.first_seq for batch in batches] == [1, 1 + 2 * half, 1 + 4 * half]
    records = [unpack_records(body) for topic, body in published if topic == TOPIC_RECORD]
    assert [len(batch) for batch in records] == [5 * half]
    # Every event once, in the order ingest sent them.
    uids = [entry[8] for batch in batches for entry in batch.events]
    assert uids == [
        f"m{message}-{conn}-{n}"
        for message in range(messages) for conn in range(sources) for n in range(each)
    ]


def test_a_short_round_publishes_once(rig: Rig) -> None:
    rig.send_work(3, 10)
    rig.wait_queued()

    rig.worker._drain(rig.dealer)

    published = rig.published()
    assert [topic for topic, _ in published] == [TOPIC_EVENT, TOPIC_RECORD]
    assert len(unpack_routed_batch(published[0][1]).events) == 30


def test_records_of_several_rounds_go_as_one_frame_once_they_have_waited(rig: Rig) -> None:
    rig.linger(60.0)
    assert rig.round_topics(1, 3) == [TOPIC_EVENT]  # routed at once; the records wait
    assert rig.round_topics(2, 1) == [TOPIC_EVENT]
    rig.worker._send_records_when_due(time.monotonic() + 30.0)
    assert rig.published() == []

    rig.worker._send_records_when_due(time.monotonic() + 61.0)

    ((topic, skipped, records),) = record_frames(rig.published())
    assert (topic, skipped) == (TOPIC_RECORD, 0)
    assert [record[1] for record in records] == ["m-0-0", "m-0-1", "m-0-2", "m-0-0", "m-1-0"]
    assert rig.worker.counters.values["records_out"] == 5
    # The next records wait afresh.
    assert rig.round_topics(1, 1) == [TOPIC_EVENT]


def test_records_go_at_once_when_they_fill_a_frame(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_service, "RECORD_FRAME_RECORDS", 4)
    rig.linger(60.0)
    assert rig.round_topics(1, 3) == [TOPIC_EVENT]
    assert rig.round_topics(1, 2) == [TOPIC_EVENT, TOPIC_RECORD]  # 5 >= 4: all of them


def test_a_stopping_worker_sends_the_records_it_holds(rig: Rig) -> None:
    rig.linger(60.0)
    assert rig.round_topics(1, 3) == [TOPIC_EVENT]

    rig.worker.request_stop()
    rig.worker.run()

    ((topic, _, records),) = record_frames(rig.published())
    assert (topic, len(records)) == (TOPIC_RECORD, 3)


def test_each_round_reports_done_up_to_its_last_message(rig: Rig) -> None:
    rig.send_work(2, 10)
    rig.send_work(1, 5)
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    assert rig.dones() == [25]  # one DONE per round, for everything it handled

    rig.send_work(1, 3)
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    assert rig.dones() == [28]


def test_a_malformed_message_is_counted_and_reports_no_done(rig: Rig) -> None:
    rig.ingest.send_multipart((WORKER_IDENTITY, b"\xc1 not msgpack"))
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    assert rig.worker.counters.values["wire_errors"] == 1

    rig.send_work(1, 4)
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    # Only the good round's DONE: the malformed one's would have been queued ahead of it.
    assert rig.dones() == [4]


def record_frames(published: list[tuple[bytes, bytes]]) -> list[tuple[bytes, int, list[Any]]]:
    """(topic, skipped, records) of each record frame published."""
    frames = []
    for topic, body in published:
        if topic in (TOPIC_RECORD, TOPIC_RECORD_KEPT):
            _, skipped = count_records(body)
            frames.append((topic, skipped, unpack_records(body)))
    return frames


def test_no_records_are_built_while_the_store_keeps_none_and_they_return_when_it_does(
    rig: Rig,
) -> None:
    rig.say_shed(pack_shed(0.0))
    rig.send_work(2, 10)
    rig.wait_queued()
    rig.worker._drain(rig.dealer)

    published = rig.published()
    assert [topic for topic, _ in published] == [TOPIC_EVENT, TOPIC_RECORD_KEPT]
    assert len(unpack_routed_batch(published[0][1]).events) == 20  # routed as ever
    # No record, but the store hears what it could have had.
    assert record_frames(published) == [(TOPIC_RECORD_KEPT, 20, [])]
    assert rig.worker.counters.values["events_not_stored"] == 20
    assert rig.worker.counters.values["records_out"] == 0

    rig.say_shed(pack_shed(1.0))
    assert rig.round_topics(1, 5) == [TOPIC_EVENT, TOPIC_RECORD]
    assert rig.worker.counters.values["records_out"] == 5
    assert rig.worker.counters.values["events_not_stored"] == 20


def test_skipped_records_alone_are_reported_at_most_every_interval(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_service, "SKIP_REPORT_INTERVAL", 3600.0)
    rig.say_shed(pack_shed(0.0))
    assert rig.round_topics(1, 4) == [TOPIC_EVENT, TOPIC_RECORD_KEPT]  # the first at once
    assert rig.round_topics(1, 6) == [TOPIC_EVENT]  # then not before the interval...
    rig.say_shed(pack_shed(1.0))
    rig.send_work(1, 2)
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    # ... unless records go anyway: they carry the count.
    assert [(topic, skipped, len(records)) for topic, skipped, records in
            record_frames(rig.published())] == [(TOPIC_RECORD, 6, 2)]


def alert_event(uid: str) -> bytes:
    """A 911 alert: a kind the store keeps even while it sheds."""
    return instant_event(uid, "b-a-o-tbl", "h-e", '<emergency type="911 Alert">BOB</emergency>')


def test_while_the_store_keeps_none_what_people_write_is_still_recorded_as_kept(
    rig: Rig,
) -> None:
    rig.say_shed(pack_shed(0.0))
    # A feed's track (an a-* with no device behind it, how m-g) is a marker that is shed.
    track = sa_event("track-1", "AIS 1", endpoint="")
    rig.send_events([
        sa_event("sa-1", "BOB"), alert_event("alert-1"), sa_event("sa-2", "BOB"),
        marker_event("spot-1"), track,
    ])
    rig.wait_queued()
    rig.worker._drain(rig.dealer)

    published = rig.published()
    assert [topic for topic, _ in published] == [TOPIC_EVENT, TOPIC_RECORD_KEPT]
    assert len(unpack_routed_batch(published[0][1]).events) == 5
    ((_, skipped, kept),) = record_frames(published)
    assert [(record[0], record[1]) for record in kept] == [
        ("alert", "alert-1"), ("marker", "spot-1"),
    ]
    assert skipped == 3
    assert rig.worker.counters.values["events_not_stored"] == 3

    # Once the store takes everything again, a round's records are ordinary ones.
    rig.say_shed(pack_shed(1.0))
    rig.send_events([alert_event("alert-2"), sa_event("sa-3", "BOB")])
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    published = rig.published()
    assert [topic for topic, _ in published] == [TOPIC_EVENT, TOPIC_RECORD]
    assert [record[1] for record in unpack_records(published[1][1])] == ["alert-2", "sa-3"]


def test_while_the_store_sheds_one_source_cannot_take_the_room_of_the_kept_records(
    rig: Rig,
) -> None:
    rig.worker._kept_budget = SourceBudget(100, limit=3, window=3600.0)
    rig.say_shed(pack_shed(0.0))
    rig.send_sources({
        1: [alert_event(f"flood-{n}") for n in range(10)],
        2: [alert_event("alert-2"), marker_event("spot-2")],
    })
    rig.wait_queued()
    rig.worker._drain(rig.dealer)

    published = rig.published()
    assert len(unpack_routed_batch(published[0][1]).events) == 12  # all routed
    ((topic, skipped, kept),) = record_frames(published)
    assert topic == TOPIC_RECORD_KEPT
    assert [record[1] for record in kept] == [
        "flood-0", "flood-1", "flood-2", "alert-2", "spot-2",
    ]
    assert skipped == 0  # not what the store could have had: it keeps these kinds
    assert rig.worker.counters.values["kept_over_budget"] == 7
    assert rig.worker.counters.values["events_not_stored"] == 7

    rig.say_shed(pack_shed(1.0))  # not shedding: no budget
    rig.send_sources({1: [alert_event("flood-10")]})
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    ((_, _, records),) = record_frames(rig.published())
    assert [record[1] for record in records] == ["flood-10"]
    assert rig.worker.counters.values["kept_over_budget"] == 7


def test_a_keep_ratio_thins_sheddable_records_at_random_and_keeps_the_rest(rig: Rig) -> None:
    rig.say_shed(pack_shed(0.5))
    draws = itertools.cycle([0.2, 0.7])  # below 0.5: built; at or above: skipped
    rig.worker._draw = lambda: next(draws)
    rig.send_events([sa_event(f"sa-{n}", "BOB") for n in range(6)] + [alert_event("alert-1")])
    rig.wait_queued()
    rig.worker._drain(rig.dealer)

    ((topic, skipped, records),) = record_frames(rig.published())
    # Thinned records are ordinary ones: the store's limit applies to them.
    assert topic == TOPIC_RECORD
    assert [record[1] for record in records] == ["sa-0", "sa-2", "sa-4", "alert-1"]
    assert skipped == 3
    assert rig.worker.counters.values["events_not_stored"] == 3


def test_the_random_draw_thins_every_source_alike(rig: Rig) -> None:
    # Ten sources in a fixed order, round after round: a counter would pick the same ones.
    rig.say_shed(pack_shed(0.3))
    rig.worker._draw = random.Random(20261206).random  # seeded: the test is deterministic
    for round_ in range(60):
        rig.send_work(10, 1, tag=f"r{round_}")
    rig.wait_queued()
    rig.worker._drain(rig.dealer)
    rig.worker._drain(rig.dealer)
    ((_, skipped, records),) = record_frames(rig.published())
    per_source = collections.Counter(record[1].split("-")[1] for record in records)
    assert skipped + len(records) == 600
    assert 150 <= len(records) <= 210  # 30 % of 600, give or take
    assert sorted(per_source) == [str(conn) for conn in range(10)]
    assert max(per_source.values()) <= 3 * min(per_source.values())


def test_shedding_ends_by_itself_when_the_store_stops_repeating_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store that died while shedding never says 1.0: the word expires instead.
    monkeypatch.setattr(worker_service, "SHED_EXPIRY", 0.0)
    rig.say_shed(pack_shed(0.0))
    assert rig.round_topics(1, 5) == [TOPIC_EVENT, TOPIC_RECORD]
    assert rig.worker.counters.values["events_not_stored"] == 0


@pytest.mark.parametrize(
    "body", [b"\xc1 not msgpack", pack_work(0, []), msgpack.packb((WIRE_VERSION, True)),
             msgpack.packb((WIRE_VERSION, 1.5))]
)
def test_a_malformed_shed_word_is_counted_and_changes_nothing(rig: Rig, body: bytes) -> None:
    rig.say_shed(body)
    assert rig.worker.counters.values["wire_errors"] == 1
    assert rig.round_topics(1, 3) == [TOPIC_EVENT, TOPIC_RECORD]


def _work(rig: Rig, batches: dict[int, list[bytes]]) -> list[tuple[int, str]]:
    """One message from ingest with these connections' events; (conn, uid) of what it routed."""
    items = [
        (SourceHeader(SourceKind.EVENT, "ingest-t", conn, f"127.0.0.1:{conn}", "", ()), events)
        for conn, events in batches.items()
    ]
    rig.sent += sum(map(len, batches.values()))
    out: list[tuple[object, ...]] = []
    rig.worker.handle([pack_work(rig.sent, items)], out)
    return [(entry[1], entry[8]) for entry in out]


def test_a_source_that_sent_malformed_xml_is_parsed_on_its_own_after(rig: Rig) -> None:
    good = [sa_event(f"b-{n}", f"B{n}") for n in range(3)]
    broken = b"<event uid='bad'><open></event>"

    # Every well-formed event of both sources is routed, in order; the bad one is counted.
    routed = _work(rig, {1: [sa_event("a-0", "A"), broken, sa_event("a-1", "A")], 2: good})
    assert routed == [(1, "a-0"), (1, "a-1"), (2, "b-0"), (2, "b-1"), (2, "b-2")]
    assert rig.worker.counters.values["parse_errors"] == 1
    fallbacks = rig.worker._parser.batch_fallbacks
    assert fallbacks == 1  # the joined batch broke and was parsed again, event by event

    # From now on connection 1 is parsed apart: its next bad event breaks no shared batch.
    routed = _work(rig, {1: [broken], 2: good, 3: [sa_event("c-0", "C")]})
    assert routed == [(2, "b-0"), (2, "b-1"), (2, "b-2"), (3, "c-0")]
    assert rig.worker.counters.values["parse_errors"] == 2
    assert rig.worker._parser.batch_fallbacks == fallbacks


def test_a_backlogged_message_is_parsed_in_batches_and_routed_in_order(rig: Rig) -> None:
    # More events than one batch, from one source and from many: cut into batches, in order.
    many = {conn: [sa_event(f"{conn}-{n}", "X") for n in range(conn * 7)] for conn in range(1, 30)}
    routed = _work(rig, many)
    assert routed == [(conn, f"{conn}-{n}") for conn, events in many.items()
                      for n in range(len(events))]
    assert rig.worker._parser.batch_fallbacks == 0
