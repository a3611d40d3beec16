"""TAK protocol v1: the 0xbf/varint stream framer, the XML <-> protobuf codec, negotiation."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import takproto
from hypothesis import given, settings
from hypothesis import strategies as st
from takproto.proto import TakMessage

from otszmq.errors import CotParseError, FrameTooLarge, FramingError, UnexpectedData
from otszmq.ingest import negotiation
from otszmq.ingest.takproto_codec import (
    MAGIC,
    ProtoFramer,
    TakCodec,
    encode_varint,
    stream_message,
)
from otszmq.workers.cot import parse_event
from tests.support import marker_event, sa_event

CORPUS = Path("/work/shared/cot-corpus")
LIMIT = 4096

payloads = st.lists(st.binary(max_size=300), max_size=8)
# Garbage that cannot be mistaken for a magic byte.
garbage = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\xbf", b"x"))


def feed_all(framer: ProtoFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


# -- varint ------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_varint_matches_protobufs_own_encoding(value: int) -> None:
    # A uint64 field 1 is the tag byte 0x08 followed by the varint.
    message = TakMessage()
    message.cotEvent.sendTime = value
    assert encode_varint(value) in message.SerializeToString()
    assert len(encode_varint(value)) == max(1, (value.bit_length() + 6) // 7)


# -- framer ------------------------------------------------------------------------------


@settings(max_examples=60)
@given(payloads)
def test_frames_split_at_every_boundary_come_out_identical(items: list[bytes]) -> None:
    stream = b"".join(map(stream_message, items))
    for cut in range(len(stream) + 1):
        framer = ProtoFramer(LIMIT)
        assert feed_all(framer, [stream[:cut], stream[cut:]]) == items
        assert framer.buffered == 0 and framer.skipped == 0


@given(payloads, st.lists(st.integers(min_value=1, max_value=50), max_size=30))
def test_any_chunking_yields_the_same_payloads(items: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(map(stream_message, items))
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(stream[pos:pos + size])
        pos += size
    chunks.append(stream[pos:])
    assert feed_all(ProtoFramer(LIMIT), chunks) == items


def test_one_byte_at_a_time() -> None:
    items = [b"a" * 200, b"", b"\xbf" * 130]
    stream = b"".join(map(stream_message, items))
    framer = ProtoFramer(LIMIT)
    assert feed_all(framer, [stream[i:i + 1] for i in range(len(stream))]) == items


@given(st.lists(st.tuples(garbage, st.binary(max_size=100)), min_size=1, max_size=6))
def test_garbage_between_frames_is_skipped_and_counted(parts: list[tuple[bytes, bytes]]) -> None:
    stream = b"".join(junk + stream_message(payload) for junk, payload in parts)
    framer = ProtoFramer(LIMIT)
    assert framer.feed(stream) == [payload for _, payload in parts]
    assert framer.skipped == sum(len(junk) for junk, _ in parts)
    assert framer.resyncs == len(parts)


def test_garbage_counts_are_the_same_however_it_is_chunked() -> None:
    stream = b"junk" + stream_message(b"one") + b"\n\n" + stream_message(b"two")
    framer = ProtoFramer(LIMIT)
    assert feed_all(framer, [stream[i:i + 1] for i in range(len(stream))]) == [b"one", b"two"]
    assert (framer.skipped, framer.resyncs) == (6, 2)


def test_a_length_at_the_limit_passes_and_one_over_is_refused_before_its_payload() -> None:
    assert ProtoFramer(300).feed(stream_message(b"p" * 300)) == [b"p" * 300]
    framer = ProtoFramer(300)
    with pytest.raises(FrameTooLarge, match="max_event_size=300"):
        framer.feed(bytes([MAGIC]) + encode_varint(301))  # no payload byte sent yet
    with pytest.raises(FrameTooLarge, match="earlier error"):
        framer.feed(stream_message(b"ok"))


def test_a_huge_varint_is_refused_as_soon_as_it_passes_the_limit() -> None:
    framer = ProtoFramer(LIMIT)
    with pytest.raises(FrameTooLarge):
        framer.feed(b"\xbf\xff\xff\xff")  # unfinished, but already over 4096


def test_a_varint_longer_than_ten_bytes_is_garbage_and_the_stream_resyncs() -> None:
    bad = b"\xbf" + b"\x80" * 11 + b"\x00"  # value 0 so far: never over the limit
    framer = ProtoFramer(LIMIT)
    assert framer.feed(bad + stream_message(b"after")) == [b"after"]
    assert framer.skipped == len(bad)


def test_persistent_garbage_closes_the_stream() -> None:
    framer = ProtoFramer(100)
    framer.feed(b"x" * 100)
    with pytest.raises(UnexpectedData, match="not a TAK protocol stream"):
        framer.feed(b"x")


def test_a_good_frame_resets_the_garbage_allowance() -> None:
    framer = ProtoFramer(100)
    for _ in range(5):
        assert framer.feed(b"x" * 90 + stream_message(b"ok")) == [b"ok"]
    assert framer.skipped == 450


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_framing_errors(data: bytes) -> None:
    framer = ProtoFramer(64)
    with contextlib.suppress(FramingError):  # anything else escapes and fails the test
        framer.feed(data)
    assert framer.buffered <= 64 + 11


# -- codec -------------------------------------------------------------------------------


def round_trip(xml: bytes) -> bytes:
    codec = TakCodec()
    (payload,) = ProtoFramer(1 << 20).feed(codec.encode(xml))
    decoded = codec.decode(payload)
    assert decoded is not None
    return decoded


def corpus_events() -> list[Path]:
    paths = []
    for path in sorted(CORPUS.glob("*.xml")):
        try:
            parse_event(path.read_bytes())
        except CotParseError:
            continue  # framing fixtures (two events in one file) are not single events
        paths.append(path)
    return paths


@pytest.mark.parametrize("path", corpus_events(), ids=lambda p: p.name)
def test_real_events_survive_xml_protobuf_xml(path: Path) -> None:
    before = parse_event(path.read_bytes())
    after = parse_event(round_trip(path.read_bytes()))
    assert (after.uid, after.type, after.how) == (before.uid, before.type, before.how)
    if before.lat is not None:  # an event without a point gets lat=lon=0 in protobuf
        assert (after.lat, after.lon, after.hae) == (before.lat, before.lon, before.hae)
    # TAK protocol carries milliseconds.
    for name in ("time", "start", "stale"):
        assert abs((getattr(after, name) - getattr(before, name)).total_seconds()) < 0.001
    assert (after.callsign, after.endpoint, after.group_name, after.takv_version) == (
        before.callsign, before.endpoint, before.group_name, before.takv_version)
    assert after.remarks == before.remarks
    assert after.dests == before.dests and after.links == before.links
    assert after.chat == before.chat


def test_typed_details_are_used_when_lossless() -> None:
    message = TakCodec().message(sa_event("u1", "ALPHA", remarks="hi"))
    detail = message.cotEvent.detail
    assert (detail.contact.callsign, detail.contact.endpoint) == ("ALPHA", "*:-1:stcp")
    assert (detail.group.name, detail.group.role) == ("Cyan", "Team Member")
    assert detail.xmlDetail == "<remarks>hi</remarks>"


def test_elements_with_more_than_the_typed_fields_travel_whole_in_xml_detail() -> None:
    xml = sa_event("u1", "ALPHA").replace(b'endpoint="*:-1:stcp"',
                                          b'endpoint="*:-1:stcp" phone="555"')
    xml = xml.replace(b"</detail>", b'<status battery="85.5"/><track speed="1"/>'
                                    b'<takv device="d" platform="p" os="o" version="v"/>'
                                    b'<takv device="2" platform="p" os="o" version="v"/></detail>')
    detail = TakCodec().message(xml).cotEvent.detail
    assert not detail.HasField("contact") and 'phone="555"' in detail.xmlDetail
    assert not detail.HasField("status") and not detail.HasField("track")
    assert not detail.HasField("takv") and detail.xmlDetail.count("<takv") == 2
    assert detail.HasField("group")
    event = parse_event(round_trip(xml))
    assert event.callsign == "ALPHA"
    assert b'phone="555"' in round_trip(xml)


def test_xml_detail_wins_over_a_typed_message_for_the_same_element() -> None:
    message = TakCodec().message(sa_event("u1", "TYPED"))
    message.cotEvent.detail.xmlDetail = '<contact callsign="FROM-XML"/>'
    xml = TakCodec().decode(message.SerializeToString())
    assert xml is not None and b"FROM-XML" in xml and b"TYPED" not in xml


def test_our_encoding_is_read_by_takproto_and_takprotos_by_us() -> None:
    xml = sa_event("u-interop", "INTEROP", lat=12.5)
    ours = takproto.parse_proto(bytearray(TakCodec().encode(xml)))
    assert ours.cotEvent.uid == "u-interop" and ours.cotEvent.lat == 12.5
    theirs = takproto.xml2proto(xml.decode(), takproto.TAKProtoVer.STREAM)
    (payload,) = ProtoFramer(LIMIT).feed(bytes(theirs))
    decoded = TakCodec().decode(payload)
    assert decoded is not None
    event = parse_event(decoded)
    assert (event.uid, event.callsign, event.lat) == ("u-interop", "INTEROP", 12.5)


def test_the_corpus_stream_frame_decodes() -> None:
    data = (CORPUS / "takproto__sa-wintak-stream-reframed.bin").read_bytes()
    (payload,) = ProtoFramer(LIMIT).feed(data)
    decoded = TakCodec().decode(payload)
    assert decoded is not None
    event = parse_event(decoded)
    assert event.type == "a-f-G-E-V-C" and event.callsign == "Eliopoli HQ"


def test_a_message_without_an_event_decodes_to_nothing() -> None:
    message = TakMessage()
    message.takControl.minProtoVersion = 1
    assert TakCodec().decode(message.SerializeToString()) is None


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x12\x05ab"])
def test_bytes_that_are_no_tak_message_are_a_parse_error(payload: bytes) -> None:
    with pytest.raises(CotParseError, match="not a TAK protocol v1 message"):
        TakCodec().decode(payload)


def test_broken_xml_detail_is_a_parse_error() -> None:
    message = TakCodec().message(marker_event("m1"))
    message.cotEvent.detail.xmlDetail = "<remarks>unclosed"
    with pytest.raises(CotParseError, match="xmlDetail is not well-formed"):
        TakCodec().decode(message.SerializeToString())


def test_escaping_in_attributes_survives() -> None:
    message = TakCodec().message(marker_event("m1"))
    message.cotEvent.uid = 'a"<&>\'b'
    xml = TakCodec().decode(message.SerializeToString())
    assert xml is not None and parse_event(xml).uid == 'a"<&>\'b'


# Every character XML 1.0 allows (tab, LF and CR among them).
xml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r"),
    max_size=30,
)


@given(xml_text, xml_text)
def test_any_text_survives_protobuf_to_xml_and_back(uid: str, callsign: str) -> None:
    message = TakCodec().message(sa_event("u", "C"))
    message.cotEvent.uid = "u" + uid
    message.cotEvent.detail.contact.callsign = callsign or "x"
    xml = TakCodec().decode(message.SerializeToString())
    assert xml is not None
    event = parse_event(xml)
    assert (event.uid, event.callsign) == ("u" + uid, callsign or "x")
    again = TakCodec().message(xml).cotEvent
    assert (again.uid, again.detail.contact.callsign) == ("u" + uid, callsign or "x")


def test_unencodable_events_raise_parse_errors() -> None:
    codec = TakCodec()
    with pytest.raises(CotParseError):
        codec.encode(b"<event")
    with pytest.raises(CotParseError, match="before 1970"):
        codec.encode(sa_event("u", "C").replace(b'time="', b'time="1960-01-01T00:00:00Z" x="'))
    with pytest.raises(CotParseError, match="expected 'event'"):
        codec.encode(b"<auth/>")


# -- negotiation ---------------------------------------------------------------------------


def test_offer_and_response_are_the_documented_control_events() -> None:
    offer = parse_event(negotiation.offer("proto-uid"))
    assert (offer.uid, offer.type) == ("proto-uid", "t-x-takp-v")
    assert b'<TakControl><TakProtocolSupport version="1"/></TakControl>' in (
        negotiation.offer("proto-uid"))
    assert b'<TakResponse status="true"/>' in negotiation.response("proto-uid", True)
    assert b'<TakResponse status="false"/>' in negotiation.response("proto-uid", False)
    assert parse_event(negotiation.response("proto-uid", True)).type == "t-x-takp-r"


def test_the_requested_version_is_read_from_a_real_request() -> None:
    request = (CORPUS / "goatak__TEMPLATE-takp-q-request.xml").read_bytes()
    assert negotiation.requested_version(request) == 1
    assert negotiation.requested_version(request.replace(b'"1"', b"'2'")) == 2
    assert negotiation.requested_version(request.replace(b'"1"', b'"x"')) is None
    assert negotiation.requested_version(b"<event/>") is None
