"""Delivery (otszmq.ingest.delivery): routed batches resolved against one ingest's clients.

The property test compares run-wise delivery with the obvious model, one event to one reader at
a time, over random batches; the others pin down the paths a run cannot take (slow and TAK
protocol readers, direct messages, probes, announcements, replay state, overflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from otszmq.ingest.delivery import Delivery
from otszmq.ingest.outbound import HARD_LIMIT_FACTOR, Outbound
from otszmq.ingest.registry import Connection, Registry
from otszmq.ingest.replay import ReplayCache
from otszmq.metrics import Counters
from otszmq.wire import RoutedEntry, RouteFlag, RouteMode

OWN = "ingest-0"
OTHER = "ingest-1"
QUEUE_BYTES = 10_000


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes | memoryview) -> None:
        self.written.append(bytes(data))

    def writelines(self, chunks: list[bytes | memoryview]) -> None:
        self.write(b"".join(chunks))  # what asyncio's default writelines does

    def get_write_buffer_size(self) -> int:
        return self.buffered

    @property
    def received(self) -> bytes:
        return b"".join(self.written)


@dataclass
class Node:
    """One ingest's registry, replay cache and Delivery, with what its callbacks saw."""

    registry: Registry = field(default_factory=Registry)
    replay: ReplayCache = field(default_factory=lambda: ReplayCache(100))
    counters: Counters = field(default_factory=Counters)
    announced: list[tuple[int, str, str, str]] = field(default_factory=list)
    probes: int = 0
    encoded: list[bytes] = field(default_factory=list)
    delivery: Delivery = field(init=False)

    def __post_init__(self) -> None:
        self.delivery = Delivery(
            OWN, self.registry, self.replay, self.counters, QUEUE_BYTES, self._encode,
            lambda *args: self.announced.append(args), self._probe,
        )

    def _encode(self, data: bytes) -> bytes:
        self.encoded.append(data)
        return b"P[" + data + b"]"

    def _probe(self) -> None:
        self.probes += 1

    def connect(self, conn_id: int, reads: tuple[str, ...] = ("__ANON__",), *,
                uid: str = "", callsign: str = "") -> Connection:
        conn = Connection(conn_id, f"peer-{conn_id}", Outbound(FakeTransport()),  # type: ignore[arg-type]
                          groups_out=frozenset(reads))
        self.registry.add(conn)
        if uid:
            self.registry.announce(conn, uid, callsign)
        return conn

    def deliver(self, *events: RoutedEntry) -> None:
        self.delivery.deliver(events)
        self.delivery.flush()


def received(conn: Connection) -> bytes:
    transport = conn.out.transport
    assert isinstance(transport, FakeTransport)
    return transport.received


def entry(payload: bytes, *, ingest: str = OWN, conn: int = 1, mode: int = RouteMode.BROADCAST,
          flags: int = RouteFlag.NONE, groups: tuple[str, ...] = ("__ANON__",),
          uids: tuple[str, ...] = (), callsigns: tuple[str, ...] = (), uid: str = "u",
          callsign: str = "", stale: float = 4e9, evict: str = "") -> RoutedEntry:
    return (ingest, conn, mode, flags, groups, uids, callsigns, (), uid, "a-f-G", callsign, stale,
            evict, "", "", payload)


# -- the model -------------------------------------------------------------------------------

GROUPS = ("A", "B")
CONNS = 4

events_st = st.lists(st.tuples(
    st.sampled_from((OWN, OTHER)),  # source ingest
    st.integers(1, CONNS),  # source connection
    st.sampled_from((RouteMode.BROADCAST, RouteMode.BROADCAST, RouteMode.DIRECT)),
    st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2, unique=True).map(tuple),
    st.lists(st.integers(1, CONNS), max_size=2).map(lambda ids: tuple(f"uid-{i}" for i in ids)),
), max_size=30)
reads_st = st.lists(
    st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2, unique=True).map(frozenset),
    min_size=CONNS, max_size=CONNS,
)


@settings(max_examples=500)  # cheap, and the interesting batches are a small share
@given(events_st, reads_st, st.lists(st.integers(1, 3), min_size=1, max_size=4))
def test_any_batch_is_delivered_as_one_event_at_a_time_would_be(specs, reads, cuts):
    node = Node()
    conns = [node.connect(i, tuple(reads[i - 1]), uid=f"uid-{i}") for i in range(1, CONNS + 1)]
    batch = [
        entry(f"<e{n} from {ingest}/{src}>".encode(), ingest=ingest, conn=src, mode=mode,
              groups=groups, uids=dests)
        for n, (ingest, src, mode, groups, dests) in enumerate(specs)
    ]
    # The model: each event in order, to each reader that may read it, never to its sender.
    expected = {conn.id: b"" for conn in conns}
    deliveries = 0
    for item in batch:
        ingest, src, mode, groups, dests = item[0], item[1], item[2], item[4], item[5]
        for conn in conns:
            if ingest == OWN and conn.id == src:
                continue
            if conn.groups_out.isdisjoint(groups):
                continue
            if mode == RouteMode.DIRECT and conn.uid not in dests:
                continue
            expected[conn.id] += item[-1]
            deliveries += 1
    # Delivered in several batches (as drain rounds cut them), flushed after each.
    start = 0
    for size in cuts * len(batch):
        if start >= len(batch):
            break
        node.deliver(*batch[start:start + size])
        start += size
    assert {conn.id: received(conn) for conn in conns} == expected
    assert node.counters.values["deliveries"] == deliveries


# -- runs ------------------------------------------------------------------------------------


def test_a_run_reaches_every_reader_but_its_senders_in_one_write_each():
    node = Node()
    a, b, c = (node.connect(i) for i in (1, 2, 3))
    node.deliver(entry(b"<1a>", conn=1), entry(b"<2b>", conn=2), entry(b"<3a>", conn=1),
                 entry(b"<4x>", ingest=OTHER, conn=2))
    assert received(a) == b"<2b><4x>"  # its own <1a> and <3a> cut out
    assert received(b) == b"<1a><3a><4x>"  # <4x> came from conn 2 of *another* ingest
    assert received(c) == b"<1a><2b><3a><4x>"
    for conn in (a, b, c):
        assert len(conn.out.transport.written) == 1  # type: ignore[attr-defined]


def test_a_direct_message_between_broadcasts_keeps_the_senders_order():
    node = Node()
    node.connect(1)
    to = node.connect(2, uid="bob")
    node.deliver(entry(b"<b1>"), entry(b"<dm>", mode=RouteMode.DIRECT, uids=("bob",)),
                 entry(b"<b2>"))
    assert received(to) == b"<b1><dm><b2>"


def test_groups_split_runs_and_each_reader_gets_what_it_reads():
    node = Node()
    node.connect(1, ("A",))
    red, both = node.connect(2, ("R",)), node.connect(3, ("R", "B"))
    node.deliver(entry(b"<r1>", groups=("R",)), entry(b"<b1>", groups=("B",)),
                 entry(b"<r2>", groups=("R",)))
    assert received(red) == b"<r1><r2>"
    assert received(both) == b"<r1><b1><r2>"


def test_closing_readers_get_nothing():
    node = Node()
    gone = node.connect(2)
    gone.closing = True
    node.deliver(entry(b"<e>"))
    assert received(gone) == b""
    assert node.counters.values["deliveries"] == 0


# -- readers that take events one by one -----------------------------------------------------


def test_a_paused_reader_gets_position_reports_coalesced_and_others_are_not_held_up():
    node = Node()
    slow, fast = node.connect(2), node.connect(3)
    slow.out.pause()
    node.deliver(entry(b"<p1>", uid="x", flags=RouteFlag.POSITION), entry(b"<m>", uid="m"),
                 entry(b"<p2>", uid="x", flags=RouteFlag.POSITION))
    assert received(fast) == b"<p1><m><p2>"
    assert received(slow) == b""
    assert node.counters.values["sa_coalesced"] == 1
    slow.out.resume()
    assert received(slow) == b"<p2><m>"  # the newest report, in the place of the first


def test_a_tak_protocol_reader_gets_each_event_encoded_once():
    node = Node()
    xml, proto, proto2 = node.connect(2), node.connect(3), node.connect(4)
    proto.out.proto = proto2.out.proto = True
    node.deliver(entry(b"<e1>", conn=1), entry(b"<e2>", conn=1))
    assert received(xml) == b"<e1><e2>"
    assert received(proto) == received(proto2) == b"P[<e1>]P[<e2>]"
    assert node.encoded == [b"<e1>", b"<e2>"]  # not once per reader


def test_a_reader_far_over_its_bound_is_handed_over_for_closing():
    node = Node()
    slow = node.connect(2)
    slow.out.pause()
    events = [entry(b"<%d>" % i + b"x" * 1000, uid=f"m{i}") for i in range(50)]
    node.deliver(*events)
    hard_limit = QUEUE_BYTES * HARD_LIMIT_FACTOR
    assert hard_limit < slow.out.queued_bytes() <= hard_limit + len(events[0][-1])
    delivered = node.counters.values["deliveries"]
    node.deliver(*events)  # before the caller has taken it: nothing more is queued or counted
    assert slow.out.queued_bytes() <= hard_limit + len(events[0][-1])
    assert node.counters.values["deliveries"] == delivered
    assert node.delivery.take_overflowed() == [slow]
    assert not slow.closing  # the caller closes it, as it would any connection
    assert node.delivery.take_overflowed() == []


# -- what travels with the events ------------------------------------------------------------


def test_announcements_probes_and_replay_state():
    node = Node()
    node.connect(2)
    node.deliver(
        entry(b"<sa>", conn=1, flags=RouteFlag.ANNOUNCE | RouteFlag.REPLAY, uid="u1",
              callsign="Alpha"),
        entry(b"<other>", ingest=OTHER, flags=RouteFlag.ANNOUNCE, uid="u9"),
        entry(b"", mode=RouteMode.PROBE), entry(b"", ingest=OTHER, mode=RouteMode.PROBE),
    )
    assert node.announced == [(1, "u1", "Alpha", "a-f-G")]  # only this ingest's own sources
    assert node.probes == 1
    assert node.replay.visible(frozenset({"__ANON__"}), 0.0) == [b"<sa>"]
    node.deliver(entry(b"<gone>", evict="u1"))
    assert node.replay.visible(frozenset({"__ANON__"}), 0.0) == []


def test_server_made_events_queue_after_deliveries():
    node = Node()
    conn = node.connect(2)
    node.delivery.deliver([entry(b"<e>")])
    node.delivery.send(conn, [b"<pong>"])
    node.delivery.flush()
    assert received(conn) == b"<e><pong>"
