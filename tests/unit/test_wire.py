from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otszmq.errors import WireError
from otszmq.wire import (
    InjectHeader,
    Regroup,
    RoutedHeader,
    RouteMode,
    SourceHeader,
    SourceKind,
    pack_counts,
    pack_inject,
    pack_regroup,
    pack_routed,
    pack_source,
    pack_stats,
    unpack_counts,
    unpack_inject,
    unpack_regroup,
    unpack_routed,
    unpack_source,
    unpack_stats,
)

texts = st.text(max_size=40)
groups = st.lists(texts, max_size=4).map(tuple)


kinds = st.sampled_from([SourceKind.EVENT, SourceKind.PROBE])
modes = st.sampled_from([RouteMode.BROADCAST, RouteMode.DIRECT, RouteMode.MISSION, RouteMode.PROBE])


@given(kinds, texts, st.integers(0, 2**40), texts, texts, groups, texts)
def test_source_header_round_trips(kind, ingest, conn, peer, uid, groups_in, origin):
    header = SourceHeader(kind, ingest, conn, peer, uid, groups_in, origin)
    assert unpack_source(pack_source(header)) == header


@given(st.tuples(
    texts, st.integers(0, 2**60), texts, st.integers(0, 2**40), modes,
    st.integers(0, 7), groups, groups, groups, groups, texts, texts, texts,
    st.floats(allow_nan=False), texts, texts, texts,
))
def test_routed_header_round_trips(fields):
    header = RoutedHeader(*fields)
    unpacked = unpack_routed(pack_routed(header))
    # Sequences come back as lists (no per-event conversion on the hot path).
    assert tuple(tuple(v) if isinstance(v, list) else v for v in unpacked) == header


@pytest.mark.parametrize("data", [
    b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([1, 0, "x", 1, "p", "u", [], ""]),
    msgpack.packb([1, 0, "x"]),
])
def test_bad_headers_raise_wire_error(data):
    with pytest.raises(WireError):
        unpack_source(data)
    with pytest.raises(WireError):
        unpack_routed(data)


def test_source_header_with_wrong_field_types_is_rejected():
    with pytest.raises(WireError, match="bad field"):
        unpack_source(msgpack.packb([2, "zero", "ingest", 1, "p", "u", [], ""]))


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_wire_error(data):
    for unpack in (unpack_source, unpack_routed, unpack_stats, unpack_inject, unpack_regroup):
        with contextlib.suppress(WireError):
            unpack(data)


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


@pytest.mark.parametrize(("unpack", "fields", "message"), [
    (unpack_inject, [2, 1, "", "", []], "must be strings"),
    (unpack_inject, [2, "api", "", "", "Red"], "list of strings"),
    (unpack_inject, [2, "api", "", "", [1]], "list of strings"),
    (unpack_regroup, [2, "", [], []], "non-empty"),
    (unpack_regroup, [2, "u", [], [None]], "list of strings"),
])
def test_injected_messages_are_checked_field_by_field(unpack, fields, message):
    with pytest.raises(WireError, match=message):
        unpack(msgpack.packb(fields))


@given(st.lists(st.integers(0, 50), max_size=20))
def test_batch_counts_round_trip_against_the_frames_that_follow(counts):
    frames_after = len(counts) + sum(counts)
    assert unpack_counts(pack_counts(counts), frames_after) == counts
    with pytest.raises(WireError, match="do not match"):
        unpack_counts(pack_counts(counts), frames_after + 1)


@pytest.mark.parametrize("data", [b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([1, -1]),
                                  msgpack.packb(["1"])])
def test_malformed_batch_counts_raise_wire_error(data):
    with pytest.raises(WireError, match="batch counts"):
        unpack_counts(data, 1)
