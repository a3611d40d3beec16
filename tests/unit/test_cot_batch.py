"""CotParser.parse_batch: many events in one libxml2 parse, with exactly the results and errors
of parsing each on its own, whatever the payloads (otszmq.workers.cot).

The batch is only a shortcut: the property below feeds it valid events, malformed ones, and
payloads cut from the middle of valid streams (the attack a batch is exposed to: two payloads
that are not events alone but read as events when joined), and compares every result with the
one-by-one parse, field by field, and with the store record built from it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otszmq.errors import CotParseError
from otszmq.store.records import record_from_event
from otszmq.workers.cot import (
    BATCH_MAX_EVENT_BYTES,
    BATCH_MAX_EVENTS,
    CotEvent,
    CotParser,
)
from tests.corpus import corpus_xml_files, require_corpus
from tests.support import instant_event, marker_event, sa_event

Result = CotEvent | CotParseError

_COMPARED = [field.name for field in dataclasses.fields(CotEvent) if field.compare]


def _plain(value: Any) -> Any:
    """``value`` with NaN made comparable (NaN != NaN would fail equal events)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, tuple | list):
        return tuple(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _key(result: Result) -> Any:
    """What must be equal between a batched and a one-by-one result: an error's message, or
    every compared field of the event and the store record built from its parsed elements."""
    if isinstance(result, CotParseError):
        return ("error", str(result))
    record = record_from_event(result, "sender", ("Red",))
    return (
        "event",
        tuple(_plain(getattr(result, name)) for name in _COMPARED),
        _plain(record),
    )


def one_by_one(payloads: list[bytes]) -> list[Result]:
    parser = CotParser()
    results: list[Result] = []
    for data in payloads:
        try:
            results.append(parser.parse(data))
        except CotParseError as exc:
            results.append(exc)
    return results


def assert_same_as_one_by_one(payloads: list[bytes]) -> CotParser:
    parser = CotParser()
    batched = parser.parse_batch(payloads)
    assert [_key(result) for result in batched] == [_key(r) for r in one_by_one(payloads)]
    for data, result in zip(payloads, batched, strict=True):
        if isinstance(result, CotEvent):
            assert result.raw is data  # the bytes travel on untouched
    return parser


# ------------------------------------------------------------------------------- samples

CHAT = instant_event(
    "GeoChat.A.All Chat Rooms.1", "b-t-f", "h-g-i-g-o",
    '<__chat parent="RootContactGroup" groupOwner="false" chatroom="All Chat Rooms" '
    'id="All Chat Rooms" senderCallsign="Alpha" messageId="m-1">'
    '<chatgrp uid0="A" uid1="All Chat Rooms" id="All Chat Rooms"/></__chat>'
    '<link uid="A" type="a-f-G-U-C" relation="p-p"/><remarks>meet at &amp; bridge</remarks>',
)
CASEVAC = instant_event(
    "casevac-1", "b-r-f-h-c", "h-g-i-g-o",
    '<_medevac_ title="MED.1" urgent="1" litter="2"><zMistsMap><zMist title="ZMIST1" z="z" '
    'm="m" i="i" s="s" t="t"/></zMistsMap></_medevac_><contact callsign="MED.1"/>',
)

VALID = [
    sa_event("sa-1", "Alpha"),
    sa_event("sa-2", "Bravo", lat=-45.5, remarks="a long remark " * 20),
    marker_event("marker-1", dest_callsigns=("Alpha",)),
    instant_event("ping-1", "t-x-c-t", "m-g"),
    instant_event("del-1", "t-x-d-d", "h-g-i-g-o", '<link uid="sa-1" relation="p-p"/>'),
    CHAT,
    CASEVAC,
    # Namespace, comment, CDATA and character references inside an event: all fine alone.
    sa_event("sa-3", "C&amp;D").replace(b"<detail>", b"<detail><!-- c --><x><![CDATA[<a>]]></x>"),
    b'<event xmlns:q="urn:q" version="2.0" uid="ns-1" type="a-u-G" time="2024-05-01T12:00:00Z" '
    b'start="2024-05-01T12:00:00Z" stale="2024-05-01T12:10:00Z"><q:x q:a="1"/></event>',
    # An element named event inside one, and a processing instruction: cut before either, a
    # stream yields pieces that start with '<event' or hold a PI of their own.
    instant_event("nest-1", "a-u-G", "h-e", '<x><event uid="inner"/><?app data?></x>'),
]

MALFORMED = [
    b"",
    b"<event",
    b"</event>",
    b"<event/>",  # no attributes
    b"<event/><event>",
    b"<event></event></event>",
    b"<event><?otszmq-next?></event>",
    b"<event><?otszmq-next ?><x/></event>",
    b'<?xml version="1.0"?>' + VALID[0],
    b"\xef\xbb\xbf" + VALID[0],
    b"<!-- before -->" + VALID[0],
    VALID[0] + b"<!-- after -->",
    VALID[0] + b"\n",
    b" " + VALID[0],
    b"<!DOCTYPE event>" + VALID[0],
    b'<!DOCTYPE e [<!ENTITY x "y">]><event uid="&x;"/>',
    VALID[0].replace(b"Alpha", b"&undeclared;"),
    VALID[0].replace(b"Alpha", b"\xff\xfe"),  # not UTF-8
    VALID[0][:-1],
    b"<eventx " + VALID[0][7:],
    b'<event xmlns="urn:other"' + VALID[0][6:],
    VALID[0] + VALID[1],  # two events in one payload
    VALID[0] + b"text>",  # text after the event ('>' may end text)
    b"text",
]


@st.composite
def payloads(draw: st.DrawFn) -> list[bytes]:
    """A source batch: valid and malformed events, random bytes, and valid streams cut into
    payloads at arbitrary points (every cut keeps all bytes, so joined they are well-formed)."""
    out: list[bytes] = []
    for _ in range(draw(st.integers(min_value=0, max_value=BATCH_MAX_EVENTS + 20))):
        kind = draw(st.integers(min_value=0, max_value=9))
        if kind <= 4:
            out.append(draw(st.sampled_from(VALID)))
        elif kind <= 6:
            out.append(draw(st.sampled_from(MALFORMED)))
        elif kind == 7:
            out.append(b"<event " + draw(st.binary(max_size=60)) + b">")
        else:
            stream = b"".join(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=3)))
            # Cuts anywhere, and cuts before a '<', where both pieces may look like events.
            tags = [index for index, byte in enumerate(stream) if byte == ord("<")]
            anywhere = st.integers(min_value=0, max_value=len(stream))
            cuts = sorted(draw(st.lists(st.sampled_from(tags) | anywhere, min_size=1, max_size=3)))
            start = 0
            for index in cuts:
                out.append(stream[start:index])
                start = index
            out.append(stream[start:])
    return out


# ------------------------------------------------------------------------------- tests

@settings(max_examples=300, deadline=None)
@given(batch=payloads())
def test_a_batch_gives_what_each_event_alone_gives(batch: list[bytes]) -> None:
    assert_same_as_one_by_one(batch)


def test_valid_events_parse_in_one_batch() -> None:
    parser = assert_same_as_one_by_one(VALID * 3)
    assert parser.batch_fallbacks == 0


@pytest.mark.parametrize("bad", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_payload_among_valid_ones(bad: bytes) -> None:
    assert_same_as_one_by_one([VALID[0], bad, VALID[1], VALID[5]])


@pytest.mark.parametrize(
    "pair",
    [
        # Neither is an event alone; joined, they read as two.
        (b'<event uid="a"/><event uid="b">', b'</event>'),
        (b'<event uid="a"/><event uid="b">', b'<event uid="c"></event></event>'),
        # Markers of the batch's own target smuggled in to line the children up.
        (b'<event uid="a"/><?otszmq-next?><event uid="b">', b'<event uid="c"></event></event>'),
        # The batch's marker ends up inside an event: two payloads, one element.
        (b'<event uid="a"><x/>', b'<event uid="b"/></event>'),
        # A processing instruction of another target where the batch's marker should be.
        (b'<event uid="a"/><?foo?><event uid="b">', b'<event uid="c"/></event>'),
    ],
)
def test_payloads_that_only_join_into_events_are_refused(pair: tuple[bytes, bytes]) -> None:
    results = CotParser().parse_batch(list(pair))
    assert all(isinstance(result, CotParseError) for result in results)
    assert_same_as_one_by_one(list(pair))


def test_a_batch_broken_by_a_malformed_event_is_counted_once() -> None:
    parser = CotParser()
    parser.parse_batch([VALID[0], b"<event uid='x'><open></event>", VALID[1]])
    assert parser.batch_fallbacks == 1
    # Payloads the cheap checks turn away never join a batch, so they never break one.
    parser.parse_batch([VALID[0], b" " + VALID[1], VALID[2], b"<?xml version='1.0'?>" + VALID[3]])
    assert parser.batch_fallbacks == 1


def test_more_events_than_a_batch_and_big_ones() -> None:
    big = sa_event("big", "Big", remarks="x" * BATCH_MAX_EVENT_BYTES)
    batch = [VALID[index % len(VALID)] for index in range(3 * BATCH_MAX_EVENTS + 5)]
    batch[70:70] = [big, big]
    parser = assert_same_as_one_by_one(batch)
    assert parser.batch_fallbacks == 0


def test_corpus_samples_in_one_batch() -> None:
    require_corpus()
    samples = [path.read_bytes() for path in corpus_xml_files()]
    # As received (declarations and all) and as the framer hands them on.
    framed = [
        sample[sample.index(b"?>") + 2 :].strip() if sample.startswith(b"<?xml") else sample.strip()
        for sample in samples
    ]
    parser = assert_same_as_one_by_one(samples + framed)
    assert parser.batch_fallbacks <= 1  # the one sample that holds two events breaks one batch
