"""Unit tests of the sans-IO CoT XML framer (otszmq.ingest.framing).

Inline fixtures cover every case on their own; the shared corpus adds real client samples on top
(and those tests skip, saying so, where the corpus is absent).
"""

from __future__ import annotations

import functools
import itertools
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otszmq.errors import FrameTooLarge, FramingError, UnexpectedData
from otszmq.ingest.framing import Frame, FrameKind, XmlFramer, event_type
from tests.corpus import corpus_params, corpus_xml_files, require_corpus

# --------------------------------------------------------------------------- inline fixtures
# Each fixture is exactly one frame. Written for these tests (not copied from the corpus).

SA_UNICODE = (
    '<event version="2.0" uid="ANDROID-0123456789abcdef" type="a-f-G-U-C" how="m-g" '
    'time="2024-05-01T12:00:00.000Z" start="2024-05-01T12:00:00.000Z" '
    'stale="2024-05-01T12:06:00.000Z">'
    '<point lat="48.8566" lon="2.3522" hae="35.0" ce="4.9" le="9999999.0"/>'
    '<detail><contact callsign="Ünïcødé-北京" endpoint="*:-1:stcp"/>'
    '<__group name="Cyan" role="Team Member"/><remarks>ça va 👍</remarks></detail></event>'
).encode()
# Pretty-printed like WinTAK output, single-byte content; the declaration lies about utf-16.
WINTAK_DECLARATION = b'<?xml version="1.0" encoding="utf-16" standalone="yes"?>\r\n'
WINTAK_SA = (
    b'<event version="2.0" uid="pc-1f2e3d4c.NMEA.SA"\r\n        type="a-f-G-U-C-I" '
    b'time="2024-05-01T12:00:00.4Z"\r\n        start="2024-05-01T12:00:00.4Z" '
    b'stale="2024-05-01T12:00:15.4Z" how="h-e">\r\n'
    b'    <point lat="32.9" lon="-93.2" hae="0" ce="9999999.0" le="9999999.0" />\r\n'
    b'    <detail>\r\n        <contact callsign="PC-ALPHA" endpoint="10.0.0.5:8087:tcp" />\r\n'
    b"    </detail>\r\n</event>"
)
PING = (
    b'<event version="2.0" uid="ANDROID-0123456789abcdef-ping" type="t-x-c-t" how="h-g-i-g-o" '
    b'time="2024-05-01T12:00:00Z" start="2024-05-01T12:00:00Z" stale="2024-05-01T12:00:20Z">'
    b'<point lat="0.0" lon="0.0" hae="0.0" ce="9999999" le="9999999"/><detail/></event>'
)
AUTH = b'<auth><cot username="alice" password="s3cr&lt;t" uid="ANDROID-0123456789abcdef"/></auth>'
NESTED = (
    b'<event type="b-x-nested"><detail><event type="inner"><detail><event/></detail></event>'
    b'<event type="self-closing" /></detail></event>'
)
CDATA = (
    b'<event type="b-t-f"><detail><remarks><![CDATA[a </event> b <event> ]] ]]></remarks>'
    b"</detail></event>"
)
COMMENT = b'<event type="b-c"><!-- </event> <event> <![CDATA[ --><detail/><!----></event>'
PI_INSIDE = b'<event type="b-p"><?app </event> <event> ?><detail/></event>'
GT_IN_ATTRIBUTES = (
    b'<event type=\'a>b\' how="x/>" uid="it\'s" note=\'say "hi" >\'><detail '
    b'remarks="1 > 0 />"/><event note="nested >"><x a=">"/></event></event>'
)
SELF_CLOSING = b"<event version='2.0' uid='x' type='t-x-c-t'/>"
SELF_CLOSING_BARE = b"<event/>"
CLOSE_WITH_SPACE = b'<event type="a-f-G"><detail/></event \r\n\t >'
LOOKALIKE_CHILDREN = b'<event type="a"><events/><eventx>1</eventx><auth/></event>'
AUTH_WITH_EVENT_CHILD = b"<auth><event></auth>"  # <event> does not nest inside an <auth> root

FIXTURES: dict[str, bytes] = {
    "sa-unicode": SA_UNICODE,
    "wintak-sa": WINTAK_SA,
    "ping": PING,
    "auth": AUTH,
    "nested": NESTED,
    "cdata": CDATA,
    "comment": COMMENT,
    "pi-inside": PI_INSIDE,
    "gt-in-attributes": GT_IN_ATTRIBUTES,
    "self-closing": SELF_CLOSING,
    "self-closing-bare": SELF_CLOSING_BARE,
    "close-with-space": CLOSE_WITH_SPACE,
    "lookalike-children": LOOKALIKE_CHILDREN,
    "auth-with-event-child": AUTH_WITH_EVENT_CHILD,
}

# What may come between frames.
SEPARATORS: list[bytes] = [
    b"",
    b"\n",
    b"\r\n",
    b" \t\r\n  ",
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
    b"<?xml version='1.0'?>\n",
    WINTAK_DECLARATION,
    b"<!-- keepalive -->",
    b"\xef\xbb\xbf",
    b'\n<?xml version="1.0"?>\n<!-- a > b -->\n',
]


def kind_of(frame: bytes) -> FrameKind:
    return FrameKind.AUTH if frame.startswith(b"<auth") else FrameKind.EVENT


def feed_all(framer: XmlFramer, chunks: Iterable[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    return frames


def frame_chunks(chunks: Iterable[bytes], max_event_size: int = 1 << 20) -> list[Frame]:
    """Frame a whole stream; it must end between frames with nothing buffered."""
    framer = XmlFramer(max_event_size)
    frames = feed_all(framer, chunks)
    assert framer.buffered == 0
    for frame in frames:
        assert type(frame.data) is bytes
    return frames


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Random ways to cut `data` into chunks, from one piece to many tiny ones."""
    cuts = st.lists(st.integers(0, len(data)), max_size=min(len(data), 120))
    return cuts.map(lambda c: split_at(data, c))


def expected(frames: Sequence[bytes]) -> list[Frame]:
    return [Frame(kind_of(f), f) for f in frames]


# --------------------------------------------------------------------------- frames, inline


@pytest.mark.parametrize("fixture", FIXTURES.values(), ids=FIXTURES.keys())
def test_fixture_is_one_frame_in_one_piece_and_byte_by_byte(fixture: bytes) -> None:
    assert frame_chunks([fixture]) == expected([fixture])
    assert frame_chunks(bytewise(fixture)) == expected([fixture])


@pytest.mark.parametrize("fixture", FIXTURES.values(), ids=FIXTURES.keys())
def test_fixture_split_in_two_anywhere(fixture: bytes) -> None:
    # Every cut point: inside multi-byte characters, quoted values, CDATA, comments, '</event>'.
    stream = b"\n" + fixture + b"\n" + fixture
    for cut in range(len(stream) + 1):
        assert frame_chunks([stream[:cut], stream[cut:]]) == expected([fixture, fixture]), cut


def test_split_inside_multibyte_utf8_characters() -> None:
    callsign = "Ünïcødé-北京".encode()
    start = SA_UNICODE.index(callsign)
    inside = [start + i for i in range(1, len(callsign)) if callsign[i] & 0xC0 == 0x80]
    assert len(inside) >= 8  # Ü ï ø é take one continuation byte each, 北 京 two each
    for cut in inside:
        (frame,) = frame_chunks([SA_UNICODE[:cut], SA_UNICODE[cut:]])
        assert frame.data == SA_UNICODE
        assert "Ünïcødé-北京" in frame.data.decode()
    (frame,) = frame_chunks(split_at(SA_UNICODE, inside))
    assert frame.data == SA_UNICODE


def test_wintak_utf16_declaration_is_skipped() -> None:
    frames = frame_chunks([WINTAK_DECLARATION + WINTAK_SA + b"\r\n"])
    assert frames == expected([WINTAK_SA])
    assert ET.fromstring(frames[0].data).get("type") == "a-f-G-U-C-I"


def test_auth_then_events() -> None:
    stream = AUTH + b"\n" + SA_UNICODE + AUTH_WITH_EVENT_CHILD + PING
    frames = frame_chunks([stream])
    assert [f.kind for f in frames] == [
        FrameKind.AUTH,
        FrameKind.EVENT,
        FrameKind.AUTH,
        FrameKind.EVENT,
    ]
    assert frames == expected([AUTH, SA_UNICODE, AUTH_WITH_EVENT_CHILD, PING])


@pytest.mark.parametrize(
    ("stream", "frames"),
    [
        (NESTED, [NESTED]),
        (
            b"<event><event><event/></event></event><event/>",
            [b"<event><event><event/></event></event>", b"<event/>"],
        ),
        (CDATA + COMMENT, [CDATA, COMMENT]),
        (b"<event><![CDATA[]]></event>", [b"<event><![CDATA[]]></event>"]),
        (b"<event><!-- -- --></event>", [b"<event><!-- -- --></event>"]),
        (b'<event a="/"><x/></event>', [b'<event a="/"><x/></event>']),
        (b"<event\n/>", [b"<event\n/>"]),
        (
            b"<event>text &amp; </eventx> </events></event>",
            [b"<event>text &amp; </eventx> </events></event>"],
        ),
        (b"<auth/><auth></auth >", [b"<auth/>", b"<auth></auth >"]),
        (b"<event><event></event\n></event\t>", [b"<event><event></event\n></event\t>"]),
        (
            b'<event a="x>y" b=\'>\'><d v="/>"/></event><event/>',
            [b'<event a="x>y" b=\'>\'><d v="/>"/></event>', b"<event/>"],
        ),
        (b'<event a="x"/><event a="\'"></event>', [b'<event a="x"/>', b'<event a="\'"></event>']),
        # Not well-formed ('<' in a value), but cut where the quotes say: the worker rejects it.
        (b'<event a="x>y</event>z"></event>', [b'<event a="x>y</event>z"></event>']),
        (
            b" \r\n\t<event></event>\n<event> <x/> </event>",
            [b"<event></event>", b"<event> <x/> </event>"],
        ),
    ],
    ids=[
        "nested",
        "nested-three",
        "cdata-then-comment",
        "empty-cdata",
        "comment-dashes",
        "slash-in-attr",
        "self-closing-newline",
        "lookalike-close-tags",
        "auth-forms",
        "close-tags-with-newline-tab",
        "markup-in-quoted-values",
        "self-closing-then-quote-in-value",
        "close-tag-in-quoted-value",
        "whitespace-between-frames",
    ],
)
def test_structure_inside_frames(stream: bytes, frames: list[bytes]) -> None:
    assert frame_chunks([stream]) == expected(frames)
    assert frame_chunks(bytewise(stream)) == expected(frames)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_chunking_of_fixtures_with_separators(data: st.DataObject) -> None:
    picks = data.draw(st.lists(st.sampled_from(list(FIXTURES.values())), min_size=1, max_size=12))
    seps = data.draw(
        st.lists(st.sampled_from(SEPARATORS), min_size=len(picks) + 1, max_size=len(picks) + 1)
    )
    stream = b"".join(sep + frame for sep, frame in zip(seps, picks, strict=False)) + seps[-1]
    chunks = data.draw(chunkings(stream))
    assert frame_chunks(chunks) == expected(picks)


# --------------------------------------------------------------------------- frames, corpus

EVENT_RE = re.compile(rb"<event[ \t\r\n/>].*?</event>", re.DOTALL)


def corpus_frames(data: bytes) -> list[bytes]:
    """Independent oracle for the corpus, whose events hold no nested event, CDATA or comment."""
    frames: list[bytes] = EVENT_RE.findall(data)
    for frame in frames:
        assert ET.fromstring(frame).tag == "event"  # a complete element on its own
    return frames


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_file_alone(path: Path | None) -> None:
    require_corpus()
    assert path is not None
    data = path.read_bytes()
    want = expected(corpus_frames(data))
    assert want
    assert frame_chunks([data]) == want
    assert frame_chunks(bytewise(data)) == want


def test_corpus_two_events_concatenated() -> None:
    corpus = require_corpus()
    data = (corpus / "freetaktest__FRAMING-two-events-concatenated.xml").read_bytes()
    frames = frame_chunks([data])
    assert len(frames) == 2
    assert frames == expected(corpus_frames(data))
    assert all(f.data.startswith(b"<event ") and f.data.endswith(b"</event>") for f in frames)


def test_corpus_wintak_utf16_declared() -> None:
    corpus = require_corpus()
    data = (corpus / "atak-civ__sa-wintak-utf16-declared.xml").read_bytes()
    assert b'encoding="utf-16"' in data
    (frame,) = frame_chunks([data])
    assert frame.data == data[data.index(b"<event") :].rstrip()
    assert event_type(frame.data) == b"a-f-G-U-C-I"


@functools.cache
def corpus_blobs_and_frames() -> tuple[list[bytes], list[Frame]]:
    """Every corpus XML file's bytes, and the frames they hold in order (read once)."""
    blobs = [path.read_bytes() for path in corpus_xml_files()]
    return blobs, expected([frame for blob in blobs for frame in corpus_frames(blob)])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_corpus_concatenated_any_chunking(data: st.DataObject) -> None:
    require_corpus()
    blobs, want = corpus_blobs_and_frames()
    seps = data.draw(
        st.lists(st.sampled_from(SEPARATORS), min_size=len(blobs), max_size=len(blobs))
    )
    stream = b"".join(sep + blob for sep, blob in zip(seps, blobs, strict=True))
    assert frame_chunks(data.draw(chunkings(stream))) == want


def test_corpus_concatenated_byte_by_byte() -> None:
    require_corpus()
    blobs, want = corpus_blobs_and_frames()
    stream = b"\n".join(blobs)
    assert frame_chunks(bytewise(stream)) == want
    assert frame_chunks([stream]) == want


# --------------------------------------------------------------------------- between frames


def test_whitespace_between_frames_is_not_buffered() -> None:
    framer = XmlFramer(max_event_size=1024)
    blank = b" \t\r\n" * (1 << 14)  # 64 KiB
    for _ in range(160):  # 10 MiB, far past the limit
        assert framer.feed(blank) == []
        assert framer.buffered == 0
    assert framer.feed(PING + blank) == expected([PING])
    assert framer.buffered == 0


def test_buffered_counts_the_unfinished_item() -> None:
    framer = XmlFramer()
    assert framer.feed(b"\n\n<ev") == []
    assert framer.buffered == 3
    assert framer.feed(b'ent type="a">') == []
    assert framer.buffered == len(b'<event type="a">')
    assert framer.feed(b"</event>  <?xml") == [Frame(FrameKind.EVENT, b'<event type="a"></event>')]
    assert framer.buffered == len(b"<?xml")


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b"\n\xef\xbb\xbf\n", b"\xef\xbb\xbf<?xml?>"])
def test_bom_is_skipped(prefix: bytes) -> None:
    stream = prefix + PING + prefix + PING
    assert frame_chunks([stream]) == expected([PING, PING])
    assert frame_chunks(bytewise(stream)) == expected([PING, PING])


@pytest.mark.parametrize(
    ("stream", "found"),
    [
        (b"hello", b"hello"),
        (b"<foo>bar</foo>", b"<foo>bar</foo>"),
        (b"<!DOCTYPE event>", b"<!DOCTYPE event>"),
        (b"\xbf\x01\x80\x02\x0a", b"\xbf\x01\x80\x02\n"),  # a TAK protocol v1 stream frame
        (b"<eventx/>", b"<eventx/>"),
        (b"<events>", b"<events>"),
        (b"</event>", b"</event>"),
        (b"<!-x-->", b"<!-x-->"),
        (b"<x", b"<x"),
        (b"\xef\xbb\x00", b"\xef\xbb\x00"),
        (b"\x0b<event/>", b"\x0b<event/>"),  # vertical tab is not XML whitespace
        (PING + b"\ntrailing junk", b"trailing junk"),
        (AUTH + b"<auth" + b"x" * 30, b"<auth" + b"x" * 11),
        (b'<event a="/"/><auth/></event>', b"</event>"),  # the root closed itself
    ],
    ids=[
        "text",
        "other-element",
        "doctype",
        "protobuf",
        "eventx",
        "events",
        "close-tag",
        "bad-comment",
        "short-tag",
        "bad-bom",
        "vertical-tab",
        "after-frame",
        "long-garbage",
        "after-self-closing-root",
    ],
)
def test_garbage_between_frames(stream: bytes, found: bytes) -> None:
    with pytest.raises(UnexpectedData) as info:
        XmlFramer().feed(stream)
    assert repr(found) in str(info.value)  # the message shows what was found
    # Fed byte by byte it is caught as soon as no opener can match any more.
    with pytest.raises(UnexpectedData, match="got b"):
        feed_all(XmlFramer(), bytewise(stream))


def test_error_message_gives_stream_offset() -> None:
    framer = XmlFramer()
    framer.feed(PING + b"\n")
    with pytest.raises(UnexpectedData, match=f"stream byte {len(PING) + 1},"):
        framer.feed(b"<x/>")


@pytest.mark.parametrize(
    ("stream", "error"),
    [(b"<html>", UnexpectedData), (b'<event a="' + b"x" * 100, FrameTooLarge)],
)
def test_framer_is_dead_after_an_error(stream: bytes, error: type[FramingError]) -> None:
    framer = XmlFramer(max_event_size=64)
    with pytest.raises(error):
        framer.feed(stream)
    assert framer.buffered == 0  # memory released at once
    for _ in range(2):
        with pytest.raises(error):
            framer.feed(b"<event/>")


# --------------------------------------------------------------------------- size limit

LIMIT_CASES = [
    pytest.param(SA_UNICODE, id="sa-unicode"),
    pytest.param(NESTED, id="nested"),
    pytest.param(SELF_CLOSING, id="self-closing"),
    pytest.param(CLOSE_WITH_SPACE, id="close-with-space"),
    pytest.param(CDATA, id="cdata"),
]


@pytest.mark.parametrize("fixture", LIMIT_CASES)
def test_frame_limit_below_at_above(fixture: bytes) -> None:
    size = len(fixture)
    for chunks in ([fixture], bytewise(fixture), [fixture[:-1], fixture[-1:]]):
        assert frame_chunks(chunks, max_event_size=size + 1) == expected([fixture])
        assert frame_chunks(chunks, max_event_size=size) == expected([fixture])
        with pytest.raises(FrameTooLarge):
            feed_all(XmlFramer(max_event_size=size - 1), chunks)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_frame_limit_with_any_chunking(data: st.DataObject) -> None:
    fixture = data.draw(st.sampled_from([SA_UNICODE, NESTED, GT_IN_ATTRIBUTES, CDATA]))
    sep = data.draw(st.sampled_from(SEPARATORS))
    stream = sep + fixture + sep + fixture
    # Separators are all shorter than the fixtures, so only the frames decide.
    slack = data.draw(st.sampled_from([-1, 0, 1]))
    chunks = data.draw(chunkings(stream))
    if slack < 0:
        with pytest.raises(FrameTooLarge):
            feed_all(XmlFramer(len(fixture) + slack), chunks)
    else:
        assert frame_chunks(chunks, len(fixture) + slack) == expected([fixture, fixture])


@pytest.mark.parametrize(
    "item",
    [
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
        b"<?xml version='1.0' encoding='utf-16'?>",
        b"<!-- a comment between frames, bounded like a frame -->",
    ],
    ids=["declaration", "utf16-declaration", "comment"],
)
def test_declaration_and_comment_limit(item: bytes) -> None:
    small = b"<event/>"
    stream = item + small + b"\n" + item + b"\n"
    size = len(item)
    for chunks in ([stream], bytewise(stream)):
        assert frame_chunks(chunks, max_event_size=size) == expected([small])
        assert frame_chunks(chunks, max_event_size=size + 1) == expected([small])
        with pytest.raises(FrameTooLarge, match="declaration/comment"):
            feed_all(XmlFramer(max_event_size=size - 1), chunks)


@pytest.mark.parametrize(
    "opening",
    [
        b'<event type="a-f-G" remarks="',  # inside a quoted attribute value
        b"<event ",  # inside the start tag
        b"<event><detail>",  # in content
        b"<event><!--",  # in a comment
        b"<event><![CDATA[",  # in CDATA
        b"<event><event><?pi ",  # in a PI, nested
        b"<event></event",  # in the close tag's whitespace
        b"<auth>",
        b"<?xml ",  # a declaration between frames
        b"<!--",  # a comment between frames
    ],
)
def test_limit_raises_as_soon_as_buffered_exceeds_it(opening: bytes) -> None:
    # Never-ending filler valid in each position: the framer must not wait for the end.
    limit = 256
    filler = b" " if opening.endswith((b"</event", b"<event ")) else b"x"
    framer = XmlFramer(max_event_size=limit)
    framer.feed(b"\n\n" + opening)
    for _ in range(limit - len(opening)):
        assert framer.feed(filler) == []
    assert framer.buffered == limit
    with pytest.raises(FrameTooLarge):
        framer.feed(filler)
    # And in one big chunk, without scanning to its end first.
    with pytest.raises(FrameTooLarge):
        XmlFramer(max_event_size=limit).feed(opening + filler * (1 << 20))


def test_max_event_size_must_be_sane() -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        XmlFramer(max_event_size=8)


# --------------------------------------------------------------------------- cost


def test_large_event_fed_byte_by_byte_stays_linear() -> None:
    # A framer that rescans its buffer on every feed does ~n^2/2 byte steps here (minutes);
    # a linear one takes well under a second. Each part exercises one resumable state.
    part = 32 * 1024
    big = (
        b'<event type="a-f-G" remarks="'
        + b"v" * part
        + b'">'
        + b"<detail>"
        + b"t" * part
        + b"<!--"
        + b"c" * part
        + b"-->"
        + b"<![CDATA["
        + b"d" * part
        + b"]]>"
        + b"</detail></event"
        + b" " * part
        + b">"
    )
    framer = XmlFramer(max_event_size=len(big))
    started = time.process_time()
    frames = feed_all(framer, bytewise(big))
    elapsed = time.process_time() - started
    assert frames == expected([big])
    assert elapsed < 10, f"{len(big)} one-byte feeds took {elapsed:.1f} s CPU: not linear"


# --------------------------------------------------------------------------- robustness

TOKENS = [
    b"<event",
    b"<event ",
    b"<event>",
    b"</event>",
    b"</event",
    b"<auth>",
    b"</auth>",
    b"<auth",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<?xml",
    b"?>",
    b"/>",
    b">",
    b"<",
    b'"',
    b"'",
    b" type='t-x-c-t'",
    b"\n",
    b"\xef\xbb\xbf",
    b"\xbf",
    b"<events>",
    b"<detail>",
]


def run_until_error(chunks: Iterable[bytes], limit: int) -> tuple[list[Frame], type | None, int]:
    framer = XmlFramer(max_event_size=limit)
    frames: list[Frame] = []
    try:
        for chunk in chunks:
            frames += framer.feed(chunk)
    except FramingError as exc:  # anything else fails the test
        return frames, type(exc), 0
    return frames, None, framer.buffered


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.data())
def test_arbitrary_bytes_only_raise_framing_errors(blob: bytes, data: st.DataObject) -> None:
    frames, _, _ = run_until_error(data.draw(chunkings(blob)), limit=64)
    for frame in frames:
        assert frame.data.startswith((b"<event", b"<auth"))
        assert frame.data.endswith(b">")
        assert frame.kind == kind_of(frame.data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=40), st.data())
def test_token_soup_is_framed_the_same_whatever_the_chunking(
    parts: list[bytes], data: st.DataObject
) -> None:
    # Near-valid input reaches every state. Byte-by-byte feeding is the reference: any other
    # chunking must give the same error kind, the same frames (up to frames lost with the
    # chunk that raised) and the same buffered count.
    blob = b"".join(parts)
    limit = data.draw(st.sampled_from([16, 40, 1 << 20]))
    ref_frames, ref_error, ref_buffered = run_until_error(bytewise(blob), limit)
    frames, error, buffered = run_until_error(data.draw(chunkings(blob)), limit)
    assert error is ref_error
    if error is None:
        assert frames == ref_frames
        assert buffered == ref_buffered
    else:
        assert frames == ref_frames[: len(frames)]
    for frame in frames:
        assert frame.data.startswith((b"<event", b"<auth"))
        assert len(frame.data) <= limit
        assert frame.data in blob


# --------------------------------------------------------------------------- event_type


@pytest.mark.parametrize(
    ("frame", "want"),
    [
        (b'<event version="2.0" type="a-f-G-U-C" uid="x">', b"a-f-G-U-C"),
        (b"<event version='2.0' type='t-x-c-t' uid='x'/>", b"t-x-c-t"),
        (b'<event type="t-x-c-t"/>', b"t-x-c-t"),
        (b'<event\n\ttype \r\n= \t"b-t-f" >', b"b-t-f"),
        (b'<event how="type=\'x\'" note=\'type="y"\' type="real">', b"real"),
        (b'<event a="x>y" type="after-gt">', b"after-gt"),
        (b'<event xtype="no" type2="no" data-type="no" type="yes">', b"yes"),
        (b'<event type="">', b""),
        (b"<event type='it\"s'>", b'it"s'),
        (PING, b"t-x-c-t"),
        (SA_UNICODE, b"a-f-G-U-C"),
        (WINTAK_SA, b"a-f-G-U-C-I"),
        (b'<event uid="x"><detail type="child-only"/></event>', None),
        (b'<event xtype="a-f-G">', None),
        (b"<event type=a-f-G>", None),
        (b'<event type="unterminated', None),
        (AUTH, None),
        (b"<event/>", None),
        (b"", None),
        (b"garbage", None),
    ],
)
def test_event_type(frame: bytes, want: bytes | None) -> None:
    assert event_type(frame) == want


@pytest.mark.parametrize("path", corpus_params())
def test_event_type_on_corpus(path: Path | None) -> None:
    require_corpus()
    assert path is not None
    for frame in frame_chunks([path.read_bytes()]):
        root = ET.fromstring(frame.data)
        assert event_type(frame.data) == root.get("type", "").encode()
