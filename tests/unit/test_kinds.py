"""Unit tests of the CoT type dispatch table (otszmq.workers.kinds)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otszmq.workers.cot import parse_event
from otszmq.workers.kinds import (
    _EXACT,
    _PREFIXES,
    _TABLE,
    REPLAYABLE_KINDS,
    EventKind,
    _index,
    _lookup,
    _Row,
    classify,
)


@pytest.mark.parametrize(
    ("cot_type", "kind"),
    [
        # every type of the shared corpus (INDEX.md "Coverage by CoT type"), and a few more
        ("a-f-G-U-C", EventKind.SA),
        ("a-f-G-U-C-I", EventKind.SA),
        ("a-u-G", EventKind.SA),  # a 2525 marker: still SA by type alone
        ("a-h-G", EventKind.SA),
        ("a", EventKind.SA),
        ("t-x-c-t", EventKind.PING),
        ("t-x-c-t-r", EventKind.PONG),
        ("t-x-d-d", EventKind.DELETE),
        ("b-t-f", EventKind.CHAT),
        ("b-t-f-d", EventKind.CHAT),
        ("b-t-f-r", EventKind.CHAT),
        ("b-f-t-r", EventKind.FILE_TRANSFER),
        ("b-f-t-a", EventKind.FILE_TRANSFER),
        ("b-a-o-tbl", EventKind.ALERT),
        ("b-a-o-can", EventKind.ALERT),
        ("b-a-o-pan", EventKind.ALERT),
        ("b-a-o-opn", EventKind.ALERT),
        ("b-a-g", EventKind.ALERT),
        ("b-r-f-h-c", EventKind.CASEVAC),
        ("b-m-p-s-m", EventKind.MARKER),
        ("b-m-p-w-GOTO", EventKind.MARKER),
        ("b-m-p-s-p-i", EventKind.MARKER),
        ("b-m-p-s-p-loc", EventKind.MARKER),
        ("b-m-r", EventKind.ROUTE),
        ("u-d-c-c", EventKind.DRAWING),
        ("u-d-f-m", EventKind.DRAWING),
        ("u-d-r", EventKind.DRAWING),
        ("u-rb-a", EventKind.RANGE_BEARING),
        ("b-i-v", EventKind.VIDEO),
        ("t-x-m-n", EventKind.MISSION),
        ("t-x-m-c", EventKind.MISSION),
        ("t-x-m-c-l", EventKind.MISSION),
        ("t-x-m-c-k", EventKind.MISSION),
        ("t-x-m-d", EventKind.MISSION),
        ("t-x-m-i", EventKind.MISSION),
        ("t-x-takp-v", EventKind.PROTOCOL),
        ("t-x-takp-q", EventKind.PROTOCOL),
        ("t-x-takp-r", EventKind.PROTOCOL),
        ("b-i-x-i", EventKind.OTHER),  # QuickPic: no row of its own
        ("t-x-c-m", EventKind.OTHER),
    ],
)
def test_classify(cot_type: str, kind: EventKind) -> None:
    assert classify(cot_type) is kind


@pytest.mark.parametrize(
    "cot_type",
    [
        "t-x-c-t-x",  # exact rows do not cover types below them
        "t-x-c",
        "t-x-d-d-x",
        "t-x-d",
        "b-m-pq",  # prefixes match whole atoms, not characters
        "b-t-fx",
        "ab-f-G",
        "u-rbx",
        "b",
        "",
        "-",
    ],
)
def test_other(cot_type: str) -> None:
    assert classify(cot_type) is EventKind.OTHER


def test_trailing_hyphen_is_an_empty_last_atom() -> None:
    assert classify("a-") is EventKind.SA
    assert classify("b-m-p-") is EventKind.MARKER


def test_exact_beats_prefix_and_longest_prefix_wins() -> None:
    exact = {"x-y": EventKind.PING}
    prefixes = {"x": EventKind.SA, "x-y": EventKind.CHAT, "x-y-z": EventKind.ROUTE}
    assert _lookup("x-y", exact, prefixes) is EventKind.PING
    assert _lookup("x-y-q", exact, prefixes) is EventKind.CHAT
    assert _lookup("x-y-z-q-r", exact, prefixes) is EventKind.ROUTE
    assert _lookup("x-q", exact, prefixes) is EventKind.SA
    assert _lookup("q", exact, prefixes) is EventKind.OTHER


def test_table_is_consistent() -> None:
    covered = {row.kind for row in _TABLE}
    assert covered == set(EventKind) - {EventKind.OTHER}
    assert all(row.prefixes or row.exact for row in _TABLE)
    assert _index(_TABLE) == (_EXACT, _PREFIXES)


@pytest.mark.parametrize(
    "table",
    [
        (_Row(EventKind.SA, prefixes=("a",)), _Row(EventKind.MARKER, prefixes=("a",))),
        (_Row(EventKind.PING, exact=("t",)), _Row(EventKind.PONG, exact=("t",))),
        (_Row(EventKind.SA, prefixes=("a-",)),),
    ],
)
def test_index_rejects_a_bad_table(table: tuple[_Row, ...]) -> None:
    with pytest.raises(ValueError, match="listed twice"):
        _index(table)


def test_replayable_kinds() -> None:
    assert {
        EventKind.SA,
        EventKind.MARKER,
        EventKind.ROUTE,
        EventKind.DRAWING,
        EventKind.RANGE_BEARING,
        EventKind.CASEVAC,
        EventKind.ALERT,
        EventKind.VIDEO,
    } == REPLAYABLE_KINDS
    assert isinstance(REPLAYABLE_KINDS, frozenset)
    for transient in (EventKind.PING, EventKind.PONG, EventKind.DELETE, EventKind.CHAT):
        assert transient not in REPLAYABLE_KINDS


def test_cache_is_bounded() -> None:
    maxsize = classify.cache_info().maxsize
    assert maxsize is not None and 0 < maxsize <= 4096
    classify("a-f-G-U-C")
    classify("a-f-G-U-C")
    assert classify.cache_info().hits >= 1


@pytest.mark.parametrize(
    "cot_type", ["t-x-c-t", "t-x-c-t-r", "t-x-d-d", "t-x-d-d-x", "b-t-f", "b-t-f-r", "b-t-fx"]
)
def test_agrees_with_event_properties(cot_type: str) -> None:
    event = parse_event(
        f'<event uid="u" type="{cot_type}" time="2024-05-01T12:00:00Z" '
        'start="2024-05-01T12:00:00Z" stale="2024-05-01T12:00:20Z"/>'.encode()
    )
    kind = classify(cot_type)
    assert event.is_ping == (kind is EventKind.PING)
    assert event.is_delete == (kind is EventKind.DELETE)
    assert event.is_chat == (kind is EventKind.CHAT)


_ATOM = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1)


@settings(max_examples=300, deadline=None)
@given(cot_type=st.text(max_size=60))
def test_any_text_has_a_kind(cot_type: str) -> None:
    assert isinstance(classify(cot_type), EventKind)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(sorted(_PREFIXES)),
    suffix=st.lists(_ATOM, min_size=1, max_size=5),
)
def test_types_below_a_prefix_take_its_kind(prefix: str, suffix: list[str]) -> None:
    cot_type = "-".join([prefix, *suffix])
    # Unless a longer row covers it (none does today: checked rather than assumed).
    longer = [p for p in _PREFIXES if p.startswith(prefix + "-")]
    if cot_type in _EXACT or any(cot_type == p or cot_type.startswith(p + "-") for p in longer):
        return
    assert classify(cot_type) is _PREFIXES[prefix]
