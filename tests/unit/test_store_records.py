"""Unit tests of store records (otszmq.store.records): built from parsed events, decoded by the
store; layout round trip, each kind's extraction (inline fixtures, then the shared corpus), and
malformed input that only ever raises StoreError.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otszmq.errors import CotParseError, StoreError
from otszmq.store.records import (
    RECORD_VERSION,
    RecordKind,
    RecordPacker,
    count_records,
    decode_record,
    pack_records,
    record_from_event,
    unpack_records,
)
from otszmq.workers.cot import parse_event
from tests.corpus import corpus_params, require_corpus
from tests.store_support import SA, T, record_of
from tests.store_support import store_event as event

# ---------------------------------------------------------------------------------- layout


def test_round_trip_keeps_every_common_field():
    record = record_of(SA, sender_uid="ANDROID-1")
    assert record.kind == RecordKind.EUD
    assert (record.uid, record.type, record.how) == ("ANDROID-1", "a-f-G-U-C", "m-g")
    assert record.time == record.start == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert record.stale == datetime(2024, 5, 1, 12, 6, 15, tzinfo=UTC)
    assert record.time.tzinfo is UTC
    assert (record.lat, record.lon, record.hae, record.ce, record.le) == (
        48.8566, 2.3522, 35.0, 4.9, 9999999.0,
    )
    assert record.sender_uid == "ANDROID-1"
    assert record.callsign == "Bravo-6"
    assert record.missions == ("M1",)
    assert record.raw == SA


def test_start_different_from_time_is_kept():
    xml = SA.replace(f'start="{T}"'.encode(), b'start="2024-05-01T12:00:01Z"')
    assert record_of(xml).start == datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)


def test_event_without_point_has_no_position():
    record = record_of(event("b-m-r", point=""))
    assert (record.lat, record.lon, record.hae, record.ce, record.le) == (None,) * 5
    assert record.kind == RecordKind.EVENT
    assert record.detail == {}


def test_layout_is_a_versioned_batch_of_fixed_arrays():
    fields = record_from_event(parse_event(SA), "s", ("B", "A"))
    assert fields is not None
    version, skipped, (items, again) = msgpack.unpackb(pack_records([fields, fields], 7))
    assert (version, skipped) == (RECORD_VERSION, 7)
    assert items == again
    assert len(items) == 18
    assert items[0] == "eud"
    assert items[4] == msgpack.Timestamp(1714564800, 123456000)  # msgpack's own timestamp
    assert items[15] == SA
    assert items[17] == ["A", "B"]  # the sender's IN groups, sorted


def test_a_packer_makes_frames_one_after_another_from_records_added_one_by_one():
    xmls = [event("b-m-p-s-m", uid=f"m-{i}") for i in range(3)]
    fields = [record_from_event(parse_event(xml), "") for xml in xmls]
    packer = RecordPacker()
    packer.add(fields[0])
    packer.add(fields[1])
    assert packer.count == 2
    first = packer.frame(5)
    assert packer.count == 0
    packer.add(fields[2])
    second = packer.frame()
    # Byte for byte what packing the whole batch at once gives.
    assert first == msgpack.packb((RECORD_VERSION, 5, fields[:2]), datetime=True)
    assert second == msgpack.packb((RECORD_VERSION, 0, fields[2:]), datetime=True)
    assert count_records(first) == (2, 5)
    assert [decode_record(items).uid for items in unpack_records(second)] == ["m-2"]
    assert packer.frame(3) == msgpack.packb((RECORD_VERSION, 3, []))  # none: the count alone


def test_records_keep_their_order_in_a_frame():
    xmls = [event("b-m-p-s-m", uid=f"m-{i}") for i in range(5)]
    fields = [record_from_event(parse_event(xml), "") for xml in xmls]
    unpacked = unpack_records(pack_records(fields))
    assert [decode_record(items).uid for items in unpacked] == [f"m-{i}" for i in range(5)]


def test_groups_travel_to_the_decoded_record():
    assert record_of(SA, "s", ("__ANON__", "Blue")).groups == ("Blue", "__ANON__")
    assert record_of(SA, "s").groups == ()


@pytest.mark.parametrize("xml", [
    event("t-x-c-t"), event("t-x-c-t-r"), event("t-x-takp-q"), event("t-x-takp-v"),
])
def test_pings_and_negotiation_are_not_stored(xml):
    assert record_from_event(parse_event(xml), "") is None


# ---------------------------------------------------------------------------------- kinds


def test_eud_detail():
    detail = record_of(SA).detail
    assert detail == {
        "device": "PIXEL", "platform": "ATAK-CIV", "os": "34", "version": "5.1",
        "team": "Cyan", "role": "Team Lead", "endpoint": "*:-1:stcp", "phone": "555",
        "course": "12.5", "speed": "3.0", "battery": "87",
    }


def test_sa_without_takv_or_endpoint_is_a_marker():
    xml = event(
        "a-h-G-U-C",
        '<contact callsign="Enemy"/><usericon iconsetpath="COT_MAPPING_2525B/a-h/a-h-G"/>'
        '<color argb="-65536"/><status readiness="true"/>'
        '<link uid="ANDROID-9" type="a-f-G-U-C" parent_callsign="HQ" relation="p-p"/>'
        "<remarks>dug in</remarks>",
    )
    record = record_of(xml)
    assert record.kind == RecordKind.MARKER
    assert record.detail == {
        "icon": "COT_MAPPING_2525B/a-h/a-h-G", "color": "-65536", "readiness": "true",
        "remarks": "dug in", "parent_uid": "ANDROID-9", "parent_callsign": "HQ",
        "relation": "p-p",
    }


def test_spot_marker_and_embedded_video():
    xml = event(
        "b-m-p-s-p-loc",
        '<__video url=":6636"><ConnectionEntry protocol="udp" address="" port="6636" '
        'alias="cam" uid="v1"/></__video>',
    )
    record = record_of(xml)
    assert record.kind == RecordKind.MARKER
    assert record.detail["video"]["url"] == ":6636"
    assert record.detail["video"]["alias"] == "cam"


def test_chat_detail_and_members():
    xml = event(
        "b-t-f",
        '<__chat parent="UserGroups" groupOwner="true" chatroom="okm" id="room-1" '
        'senderCallsign="dog" messageId="m-1"><chatgrp uid0="A" uid1="B" id="room-1"/>'
        '</__chat><link uid="A" type="a-f-G-U-C" relation="p-p"/><remarks>at VDO</remarks>',
        uid="GeoChat.A.okm.1",
    )
    record = record_of(xml)
    assert record.kind == RecordKind.CHAT
    assert record.detail == {
        "room": "okm", "room_id": "room-1", "parent": "UserGroups", "sender_callsign": "dog",
        "message_id": "m-1", "group_owner": "true", "text": "at VDO", "sender_uid": "A",
        "members": ["A", "B"],
    }


def test_all_chat_rooms_is_not_a_member_of_itself():
    xml = event(
        "b-t-f",
        '<__chat chatroom="All Chat Rooms" id="All Chat Rooms">'
        '<chatgrp uid0="A" uid1="All Chat Rooms" id="All Chat Rooms"/></__chat>'
        "<remarks>hi</remarks>",
    )
    assert record_of(xml).detail["members"] == ["A"]


def test_chat_receipts_are_only_logged():
    xml = event("b-t-f-d", '<__chat chatroom="r" id="r"/>')
    assert record_of(xml).kind == RecordKind.EVENT


@pytest.mark.parametrize(("cot_type", "emergency", "alert_type", "cancel"), [
    ("b-a-o-tbl", '<emergency type="911 Alert">BOB</emergency>', "911 Alert", False),
    ("b-a-o-pan", '<emergency type="Ring The Bell"/>', "Ring The Bell", False),
    ("b-a-o-opn", '<emergency type="In Contact"/>', "In Contact", False),
    ("b-a-g", '<emergency type="Geo-fence Breached"/>', "Geo-fence Breached", False),
    ("b-a-o-can", '<emergency cancel="true">BOB</emergency>', None, True),
    ("b-a-o-can", "", None, True),
])
def test_alert_detail(cot_type, emergency, alert_type, cancel):
    xml = event(cot_type, emergency + '<link uid="ANDROID-7" relation="p-p"/>', uid="X-9-1-1")
    record = record_of(xml)
    assert record.kind == RecordKind.ALERT
    assert record.detail == {"alert_type": alert_type, "cancel": cancel, "link_uid": "ANDROID-7"}


def test_casevac_detail_keeps_known_fields_and_zmist():
    xml = event(
        "b-r-f-h-c",
        '<_medevac_ title="MED.1" urgent="2" litter="1" hoist="true" freq="67MHz" '
        'not_a_field="x"><zMistsMap><zMist title="Z1" z="zap" m="frag" i="burn" s="ok" '
        't="TQ"/></zMistsMap></_medevac_>',
    )
    record = record_of(xml)
    assert record.kind == RecordKind.CASEVAC
    assert record.detail == {
        "title": "MED.1", "urgent": "2", "litter": "1", "hoist": "true", "freq": "67MHz",
        "zmist": [{"title": "Z1", "z": "zap", "m": "frag", "i": "burn", "s": "ok", "t": "TQ"}],
    }


def test_range_bearing_detail():
    xml = event(
        "u-rb-a",
        '<range value="886.1"/><bearing value="45.5"/><inclination value="0.0"/>'
        '<rangeUnits value="1"/><bearingUnits value="0"/><northRef value="1"/>'
        '<strokeColor value="-65536"/><strokeWeight value="3.0"/><color value="-1"/>'
        '<labels_on value="false"/>',
    )
    record = record_of(xml)
    assert record.kind == RecordKind.RB_LINE
    assert record.detail == {
        "range": "886.1", "bearing": "45.5", "inclination": "0.0", "range_units": "1",
        "bearing_units": "0", "north_ref": "1", "color": "-1", "stroke_color": "-65536",
        "stroke_weight": "3.0", "labels_on": "false",
    }


def test_video_detail():
    xml = event(
        "b-i-v",
        '<__video><ConnectionEntry protocol="rtsp" address="10.0.0.1" port="8554" '
        'path="/live/a" alias="Cam A" roverPort="-1" rtspReliable="0" ignoreEmbeddedKLV="false" '
        'networkTimeout="5000" bufferTime="-1"/></__video>',
    )
    assert record_of(xml).detail == {"video": {
        "url": None, "protocol": "rtsp", "address": "10.0.0.1", "port": "8554",
        "path": "/live/a", "alias": "Cam A", "rover_port": "-1", "rtsp_reliable": "0",
        "ignore_klv": "false", "network_timeout": "5000", "buffer_time": "-1",
    }}


def test_delete_names_its_target():
    record = record_of(event("t-x-d-d", '<link uid="M-1" type="b-m-p-s-m" relation="p-p"/>'))
    assert record.kind == RecordKind.DELETE
    assert record.detail == {"target_uid": "M-1", "target_type": "b-m-p-s-m"}
    assert record_of(event("t-x-d-d", uid="Z")).detail == {"target_uid": "Z", "target_type": None}


@pytest.mark.parametrize("cot_type", ["b-m-r", "u-d-r", "b-f-t-r", "t-x-m-c", "y-unknown"])
def test_other_types_are_logged_only(cot_type):
    assert record_of(event(cot_type)).kind == RecordKind.EVENT


# ---------------------------------------------------------------------------------- corpus

_DECLARATION = re.compile(rb"\A\s*<\?xml[^>]*\?>")


def corpus_record(name: str):
    directory = require_corpus()
    raw = _DECLARATION.sub(b"", (directory / name).read_bytes(), count=1).strip()
    return record_of(raw, sender_uid="S")


@pytest.mark.parametrize("path", corpus_params())
def test_every_corpus_event_makes_a_record_that_decodes(path: Path | None):
    require_corpus()
    assert path is not None
    raw = _DECLARATION.sub(b"", path.read_bytes(), count=1).strip()
    try:
        parsed = parse_event(raw)
    except CotParseError:
        pytest.skip("not a single well-formed event (a parser/framer edge case)")
    fields = record_from_event(parsed, "S")
    if fields is None:
        assert parsed.type.startswith(("t-x-c-t", "t-x-takp"))
        return
    (items,) = unpack_records(pack_records([fields]))
    record = decode_record(items)
    assert (record.uid, record.type, record.raw) == (parsed.uid, parsed.type, raw)
    assert record.time == parsed.time and record.stale == parsed.stale


@pytest.mark.parametrize(("name", "kind"), [
    ("libcotshrink__sa-atak4-pli.xml", RecordKind.EUD),
    ("atak-civ__marker-2525.xml", RecordKind.MARKER),
    ("taky__itak-marker-empty-marti.xml", RecordKind.MARKER),
    ("atak-civ__marker-spot.xml", RecordKind.MARKER),
    ("libcotshrink__geochat-direct.xml", RecordKind.CHAT),
    ("takserver__alert-911.xml", RecordKind.ALERT),
    ("freetaktest__emergency-cancel-b-a-o-can.xml", RecordKind.ALERT),
    ("libcotshrink__casevac-all-fields.xml", RecordKind.CASEVAC),
    ("atak-civ__range-bearing-line.xml", RecordKind.RB_LINE),
    ("freetaktest__video-feed-b-i-v.xml", RecordKind.VIDEO),
    ("freetaktest__delete-t-x-d-d.xml", RecordKind.DELETE),
    ("atak-civ__route.xml", RecordKind.EVENT),
])
def test_corpus_kinds(name, kind):
    assert corpus_record(name).kind == kind


def test_corpus_extractions():
    sa = corpus_record("libcotshrink__sa-atak4-pli.xml").detail
    assert (sa["device"], sa["team"], sa["role"], sa["battery"]) == (
        "GOOGLE PIXEL 4 XL", "Orange", "Team Lead", "58",
    )
    assert sa["course"] == "327.66875837972367"
    casevac = corpus_record("libcotshrink__casevac-all-fields.xml").detail
    assert (casevac["urgent"], casevac["priority"], casevac["routine"]) == ("1", "2", "3")
    assert casevac["terrain_slope_dir"] == "S"
    assert [z["title"] for z in casevac["zmist"]] == ["ZMIST2", "ZMIST1"]
    alert = corpus_record("takserver__alert-911.xml").detail
    assert alert == {
        "alert_type": "911 Alert", "cancel": False, "link_uid": "ANDROID-358982072593830",
    }
    assert corpus_record("freetaktest__emergency-cancel-b-a-o-can.xml").detail["cancel"] is True
    rb = corpus_record("atak-civ__range-bearing-line.xml").detail
    assert (rb["range"], rb["bearing"]) == ("886.144457943895", "45.59655671674022")
    video = corpus_record("freetaktest__video-feed-directed.xml").detail["video"]
    assert (video["protocol"], video["address"], video["port"]) == (
        "https", "cams.cdn-surfline.com", "443",
    )
    chat = corpus_record("freetaktest__geochat-wintak-team.xml").detail
    assert (chat["room"], chat["sender_callsign"]) == ("Red", "Wintak")
    assert chat["members"] == ["S-1-5-21-2151449903-2689254037-3848131860-1001", "user1", "user2"]
    marker = corpus_record("atak-civ__marker-2525.xml").detail
    assert marker["icon"] == "COT_MAPPING_2525B/a-u/a-u-G"
    assert corpus_record("freetaktest__mission-video-feed.xml").missions == ("mymissionwin",)


# ---------------------------------------------------------------------------------- bad input


def _items() -> list[object]:
    fields = record_from_event(parse_event(SA), "s")
    assert fields is not None
    (items,) = unpack_records(pack_records([fields]))
    return list(items)


def _frame(items: list[object]) -> bytes:
    return msgpack.packb([RECORD_VERSION, 0, [items]], datetime=True)


@pytest.mark.parametrize(("change", "message"), [
    (lambda items: items.pop(), "array of 18"),
    (lambda items: items.append(1), "array of 18"),
    (lambda items: items.__setitem__(1, 5), "bad field"),
    (lambda items: items.__setitem__(4, "noon"), "bad field"),
    (lambda items: items.__setitem__(6, 1714564800.0), "bad field"),
    (lambda items: items.__setitem__(8, "north"), "bad field"),
    (lambda items: items.__setitem__(15, "text"), "bad field"),
    (lambda items: items.__setitem__(16, [1]), "bad field"),
    (lambda items: items.__setitem__(17, "A,B"), "bad field"),
    (lambda items: items.__setitem__(17, [1]), "bad field"),
])
def test_malformed_records_raise_store_error(change, message):
    items = _items()
    change(items)
    (unpacked,) = unpack_records(_frame(items))
    with pytest.raises(StoreError, match=message):
        decode_record(unpacked)


@pytest.mark.parametrize(("data", "message"), [
    (b"\xc1", "not msgpack"),
    (msgpack.packb([RECORD_VERSION]), r"\[version, skipped, \[record"),
    (msgpack.packb([RECORD_VERSION, 0, "x"]), r"\[version, skipped, \[record"),
    (msgpack.packb([RECORD_VERSION, []]), r"\[version, skipped, \[record"),  # version 3's
    (msgpack.packb([RECORD_VERSION, -1, []]), "skipped must be an int >= 0"),
    (msgpack.packb([RECORD_VERSION, True, []]), "skipped must be an int >= 0"),
    (msgpack.packb([99, 0, []]), "version 99"),
])
def test_malformed_record_frames_raise_store_error(data, message):
    with pytest.raises(StoreError, match=message):
        unpack_records(data)


def test_count_records_reads_only_the_header():
    fields = record_from_event(parse_event(SA), "s")
    assert fields is not None
    frame = pack_records([fields] * 3, 12)
    assert count_records(frame) == (3, 12)
    assert count_records(pack_records([])) == (0, 0)
    assert count_records(frame[:-10]) == (3, 12)  # the body is unpack_records' to check


@pytest.mark.parametrize(("data", "message"), [
    (b"\xc1", "not a record batch"),
    (b"", "not a record batch"),
    (msgpack.packb({"a": 1}), "not a record batch"),
    (msgpack.packb([RECORD_VERSION]), r"\[version, skipped, \[record"),
    (msgpack.packb([RECORD_VERSION, 0, "x"]), "not a record batch"),
    (msgpack.packb([RECORD_VERSION, []]), r"\[version, skipped, \[record"),  # version 3's
    (msgpack.packb([RECORD_VERSION, 0, [], 1]), r"\[version, skipped, \[record"),
    (msgpack.packb([RECORD_VERSION, "x", []]), "skipped must be an int >= 0"),
    (msgpack.packb([99, 0, []]), "version 99"),
])
def test_count_records_refuses_what_is_not_a_record_batch(data, message):
    with pytest.raises(StoreError, match=message):
        count_records(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_store_error_when_counted(data):
    with contextlib.suppress(StoreError):
        count, skipped = count_records(data)
        assert count >= 0 and skipped >= 0


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_store_error(data):
    with contextlib.suppress(StoreError):
        for items in unpack_records(data):
            decode_record(items)


_INTS = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
_VALUES = st.one_of(
    st.none(), st.booleans(), _INTS, st.floats(), st.text(max_size=5),
    st.datetimes(timezones=st.just(UTC)),
    st.binary(max_size=5), st.lists(_INTS, max_size=2),
    st.dictionaries(st.text(max_size=3), _INTS, max_size=2),
)


@given(st.lists(_VALUES, min_size=18, max_size=18))
def test_any_array_of_the_right_shape_only_raises_store_error(values):
    try:
        (items,) = unpack_records(_frame(values))
        record = decode_record(items)
    except StoreError:
        return
    assert isinstance(record.uid, str) and isinstance(record.raw, bytes)


# ---------------------------------------------------------------------------------- parser refs


def test_parser_keeps_the_elements_the_store_reads_out_of_equality_and_repr():
    xml = SA.replace(b"</detail>", b'<__video url="rtsp://h/a"/></detail>')
    parsed = parse_event(xml)
    assert parsed.detail is not None and parsed.detail.tag == "detail"
    assert parsed.contact is not None and parsed.contact.get("phone") == "555"
    assert parsed.track is not None and parsed.track.get("course") == "12.5"
    assert parsed.status is not None and parsed.status.get("battery") == "87"
    assert parsed.video is not None and parsed.video.get("url") == "rtsp://h/a"
    assert parsed == parse_event(xml)  # elements are not compared
    assert "detail=" not in repr(parsed) and "track=" not in repr(parsed)
    bare = parse_event(event("b-m-r", point=""))
    assert (bare.contact, bare.track, bare.status, bare.video) == (None, None, None, None)
    assert record_of(xml).detail["video"]["url"] == "rtsp://h/a"
