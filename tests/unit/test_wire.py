from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otszmq.errors import WireError
from otszmq.wire import (
    ROUTED_FIELDS,
    WIRE_VERSION,
    Disconnect,
    InjectHeader,
    Regroup,
    RoutedHeader,
    RouteMode,
    SequenceGaps,
    SourceHeader,
    SourceKind,
    pack_disconnect,
    pack_done,
    pack_inject,
    pack_regroup,
    pack_routed_batch,
    pack_shed,
    pack_stats,
    pack_work,
    routed_header,
    source_header,
    unpack_disconnect,
    unpack_done,
    unpack_inject,
    unpack_regroup,
    unpack_routed_batch,
    unpack_shed,
    unpack_stats,
    unpack_work,
)

texts = st.text(max_size=40)
groups = st.lists(texts, max_size=4).map(tuple)
events = st.lists(st.binary(max_size=80), max_size=5)


kinds = st.sampled_from([SourceKind.EVENT, SourceKind.PROBE])
modes = st.sampled_from([RouteMode.BROADCAST, RouteMode.DIRECT, RouteMode.MISSION, RouteMode.PROBE])
sources = st.builds(SourceHeader, kinds, texts, st.integers(0, 2**40), texts, texts, groups, texts)
headers = st.builds(
    RoutedHeader, texts, st.integers(0, 2**40), modes, st.integers(0, 7), groups, groups, groups,
    groups, texts, texts, texts, st.floats(allow_nan=False), texts, texts, texts,
)


@given(st.integers(0, 2**62), st.lists(st.tuples(sources, events), max_size=4))
def test_work_round_trips(sent, items):
    got, unpacked = unpack_work(pack_work(sent, items))
    assert got == sent
    assert [(source_header(fields), list(evs)) for fields, evs in unpacked] == items


@given(st.integers(0, 2**62))
def test_done_round_trips(sent):
    assert unpack_done(pack_done(sent)) == sent


@pytest.mark.parametrize("data", [
    b"", msgpack.packb(7), msgpack.packb([WIRE_VERSION]), msgpack.packb([WIRE_VERSION, -1]),
    msgpack.packb([WIRE_VERSION, "7"]), msgpack.packb([WIRE_VERSION, True]),
    msgpack.packb([WIRE_VERSION - 1, 7]),
])
def test_malformed_done_raises_wire_error(data):
    with pytest.raises(WireError, match="done"):
        unpack_done(data)


@pytest.mark.parametrize("keep", [0.0, 0.05, 0.5, 1.0, 0, 1])
def test_shed_round_trips(keep):
    assert unpack_shed(pack_shed(keep)) == keep
    assert isinstance(unpack_shed(pack_shed(keep)), float)


@pytest.mark.parametrize("data", [
    b"", msgpack.packb(True), msgpack.packb([WIRE_VERSION]),
    msgpack.packb([WIRE_VERSION, "yes"]), msgpack.packb([WIRE_VERSION, 0.5, 0.5]),
    msgpack.packb([WIRE_VERSION, True]),  # what wire version 4 said: refused, not read as 1.0
    msgpack.packb([WIRE_VERSION, -0.1]), msgpack.packb([WIRE_VERSION, 1.5]),
    msgpack.packb([WIRE_VERSION, 2]), msgpack.packb([WIRE_VERSION, float("nan")]),
    msgpack.packb([WIRE_VERSION - 1, 0.5]),
])
def test_malformed_shed_raises_wire_error(data):
    with pytest.raises(WireError, match="shed"):
        unpack_shed(data)


@given(texts, st.integers(0, 2**60), st.lists(st.tuples(headers, st.binary(max_size=80))))
def test_routed_batch_round_trips(worker, first_seq, pairs):
    batch = unpack_routed_batch(
        pack_routed_batch(worker, first_seq, [(*header, event) for header, event in pairs])
    )
    assert (batch.worker, batch.first_seq) == (worker, first_seq)
    assert [(routed_header(entry), entry[-1]) for entry in batch.events] == pairs


@pytest.mark.parametrize("data", [
    b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([WIRE_VERSION, 0]),
    msgpack.packb([WIRE_VERSION - 1, 0, []]), msgpack.packb([WIRE_VERSION, 0, "x"]),
    msgpack.packb([WIRE_VERSION, -1, []]), msgpack.packb([WIRE_VERSION, "0", []]),
    msgpack.packb([WIRE_VERSION, 0, [[[0], ["not bytes"]]]]),
    msgpack.packb([WIRE_VERSION, 0, [[[0], [b"e"], "extra"]]]),
])
def test_malformed_work_raises_wire_error(data):
    with pytest.raises(WireError, match="work"):
        unpack_work(data)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([WIRE_VERSION, "w", 1]),
    msgpack.packb([WIRE_VERSION - 1, "w", 1, []]), msgpack.packb([WIRE_VERSION, 1, 1, []]),
    msgpack.packb([WIRE_VERSION, "w", "1", []]),
    msgpack.packb([WIRE_VERSION, "w", 1, [[0] * ROUTED_FIELDS]]),  # one field short
])
def test_malformed_routed_batches_raise_wire_error(data):
    with pytest.raises(WireError, match="routed batch"):
        unpack_routed_batch(data)


@pytest.mark.parametrize("fields", [
    (0, "i", 1, "p", "u", ()),  # one short
    ("zero", "ingest", 1, "p", "u", (), ""),
    (0, "ingest", 1, "p", "u", "Red", ""),
    (0, "ingest", 1, "p", "u", (1,), ""),
])
def test_source_header_with_wrong_fields_is_rejected(fields):
    with pytest.raises(WireError, match="source header"):
        source_header(fields)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_wire_error(data):
    for unpack in (unpack_work, unpack_done, unpack_routed_batch, unpack_stats, unpack_inject,
                   unpack_regroup, unpack_disconnect, unpack_shed):
        with contextlib.suppress(WireError):
            unpack(data)


def test_sequence_gaps_count_the_events_missing_between_batches():
    gaps = SequenceGaps()
    assert gaps.check("w1", 1, 10) == 0  # first batch: nothing to compare with
    assert gaps.check("w1", 11, 5) == 0  # contiguous
    assert gaps.check("w2", 7, 1) == 0  # another worker counts on its own
    assert gaps.check("w1", 20, 2) == 4  # 16..19 never arrived
    assert gaps.check("w1", 1, 3) == 0  # a restarted worker counts from 1 again
    assert gaps.check("w1", 4, 1) == 0


def test_stats_round_trip():
    snapshot = {"name": "w", "counters": {"events_in": 3}}
    assert unpack_stats(pack_stats(snapshot)) == snapshot
    with pytest.raises(WireError, match="expected a map"):
        unpack_stats(msgpack.packb([1, 2]))


@given(texts, texts, texts, groups)
def test_inject_header_round_trips(source, origin, sender_uid, groups_in):
    header = InjectHeader(source, origin, sender_uid, groups_in)
    assert unpack_inject(pack_inject(header)) == header


@given(texts.filter(bool), groups, groups)
def test_regroup_round_trips(user, groups_in, groups_out):
    regroup = Regroup(user, groups_in, groups_out)
    assert unpack_regroup(pack_regroup(regroup)) == regroup


@given(texts.filter(bool), texts)
def test_disconnect_round_trips(user, reason):
    disconnect = Disconnect(user, reason)
    assert unpack_disconnect(pack_disconnect(disconnect)) == disconnect


@pytest.mark.parametrize(("unpack", "fields", "message"), [
    (unpack_inject, [WIRE_VERSION, 1, "", "", []], "must be strings"),
    (unpack_inject, [WIRE_VERSION, "api", "", "", "Red"], "list of strings"),
    (unpack_inject, [WIRE_VERSION, "api", "", "", [1]], "list of strings"),
    (unpack_regroup, [WIRE_VERSION, "", [], []], "non-empty"),
    (unpack_regroup, [WIRE_VERSION, "u", [], [None]], "list of strings"),
    (unpack_disconnect, [WIRE_VERSION, "", "deleted"], "non-empty"),
    (unpack_disconnect, [WIRE_VERSION, "u", 3], "reason must be a string"),
    (unpack_disconnect, [WIRE_VERSION, "u"], "array of 3"),
])
def test_injected_messages_are_checked_field_by_field(unpack, fields, message):
    with pytest.raises(WireError, match=message):
        unpack(msgpack.packb(fields))
