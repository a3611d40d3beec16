"""Unit tests of how a batch of records becomes table rows (otszmq.store.rows), no database."""

from __future__ import annotations

import json
import math

import pytest

from otszmq.store import rows as R
from tests.store_support import SA, record_of
from tests.store_support import store_event as event


def at(xml: bytes, second: int) -> bytes:
    """The same event at another time (seconds past 12:00:00)."""
    stamp = f"2024-05-01T12:00:{second:02d}Z".encode()
    return xml.replace(b"2024-05-01T12:00:00.123456Z", stamp)


def marker(uid: str, second: int = 0, callsign: str = "M") -> bytes:
    return at(event("b-m-p-s-m", f'<contact callsign="{callsign}"/>', uid=uid), second)


def delete(uid: str, second: int = 0) -> bytes:
    return at(event("t-x-d-d", f'<link uid="{uid}" relation="p-p"/>', uid=f"del-{uid}"), second)


def collect(*events: bytes, store_raw_xml: bool = True) -> R.Rows:
    return R.collect([record_of(xml) for xml in events], store_raw_xml=store_raw_xml)


def test_every_record_is_logged_and_raw_xml_follows_the_setting():
    rows = collect(SA, marker("m1"))
    assert [row["uid"] for row in rows.cot] == ["ANDROID-1", "m1"]
    assert rows.cot[0]["xml"] == SA.decode()
    assert rows.cot[0]["missions"] == "M1"
    assert collect(SA, store_raw_xml=False).cot[0]["xml"] is None


def test_points_only_for_real_positions():
    no_fix = event("a-f-G-U-C", '<takv platform="ATAK"/>', point='<point lat="0" lon="0"/>')
    no_point = event("b-m-r", point="")
    nan = event("b-m-p-s-m", point='<point lat="nan" lon="1"/>')
    rows = collect(SA, no_fix, no_point, nan, delete("x"))
    assert [row["uid"] for row in rows.points] == ["ANDROID-1"]
    point = rows.points[0]
    assert (point["course"], point["speed"], point["battery"]) == (12.5, 3.0, 87.0)
    assert point["le"] is None  # 9999999 means unknown


def test_newest_report_of_a_uid_wins_within_a_batch():
    rows = collect(marker("m1", 5, "new"), marker("m1", 1, "old"), marker("m2"))
    assert rows.markers["m1"]["callsign"] == "new"
    assert set(rows.markers) == {"m1", "m2"}


def test_created_then_deleted_is_only_deleted_and_recreated_is_kept():
    rows = collect(marker("m1", 1), delete("m1", 2))
    assert rows.markers == {} and rows.deleted == {"m1"}
    rows = collect(marker("m1", 1), delete("m1", 2), marker("m1", 3))
    assert "m1" in rows.markers and rows.deleted == set()


def test_eud_disconnect_orders_with_its_reports():
    assert collect(SA, delete("ANDROID-1")).euds["ANDROID-1"]["last_status"] == "Disconnected"
    rows = collect(delete("ANDROID-1"), SA)
    assert rows.euds["ANDROID-1"]["last_status"] == "Connected"
    assert rows.disconnected == set()
    assert collect(delete("ANDROID-1")).disconnected == {"ANDROID-1"}


def test_an_eud_row_comes_from_its_newest_report_whatever_the_order():
    late, early = at(SA.replace(b"Bravo-6", b"Late"), 9), at(SA.replace(b"Bravo-6", b"Early"), 3)
    for order in ((late, early), (early, late)):
        rows = collect(*order)
        assert rows.euds["ANDROID-1"]["callsign"] == "Late"
        assert len(rows.points) == len(rows.cot) == 2  # every report keeps its point and log row
    # A goodbye between reports: a later report reconnects, an older one does not.
    assert collect(at(SA, 1), delete("ANDROID-1", 2), at(SA, 3)).euds["ANDROID-1"][
        "last_status"] == "Connected"
    assert collect(at(SA, 5), delete("ANDROID-1", 6), at(SA, 1)).euds["ANDROID-1"][
        "last_status"] == "Disconnected"


def test_eud_row():
    row = collect(SA).euds["ANDROID-1"]
    assert row["callsign"] == "Bravo-6"
    assert (row["device"], row["platform"], row["os"], row["version"]) == (
        "PIXEL", "ATAK-CIV", "34", "5.1",
    )
    assert (row["team"], row["role"], row["phone"], row["endpoint"]) == (
        "Cyan", "Team Lead", "555", "*:-1:stcp",
    )
    assert (row["last_lat"], row["last_lon"]) == (48.8566, 2.3522)


def test_marker_row_has_its_2525_symbol_and_colour():
    xml = event("a-h-G-U-C", '<color argb="-65536"/><status readiness="true"/>')
    row = collect(xml).markers["U-1"]
    assert (row["mil_std_2525c"], row["affiliation"], row["battle_dimension"]) == (
        "SHGPUC---------", "hostile", "ground",
    )
    assert (row["color_argb"], row["color_hex"], row["readiness"]) == (-65536, "#ff0000", True)
    assert collect(marker("m1")).markers["m1"]["mil_std_2525c"] is None


def test_range_bearing_end_point():
    xml = event(
        "u-rb-a", '<range value="1000"/><bearing value="90"/><labels_on value="true"/>',
        point='<point lat="0.0001" lon="10"/>',
    )
    row = collect(xml).rb_lines["U-1"]
    assert row["end_lat"] == pytest.approx(0.0001, abs=1e-6)
    assert row["end_lon"] == pytest.approx(10 + math.degrees(1000 / R.EARTH_RADIUS_M), abs=1e-9)
    assert (row["range"], row["bearing"], row["labels_on"]) == (1000.0, 90.0, True)


def test_destination_on_a_meridian_and_across_the_antimeridian():
    lat, lon = R.destination(0.0, 0.0, 0.0, R.EARTH_RADIUS_M * math.radians(1))
    assert (lat, lon) == (pytest.approx(1.0), pytest.approx(0.0))
    _, lon = R.destination(0.0, 179.5, 90.0, R.EARTH_RADIUS_M * math.radians(1))
    assert lon == pytest.approx(-179.5)


def test_casevac_row_converts_types():
    xml = event(
        "b-r-f-h-c",
        '<_medevac_ urgent="2" hoist="true" casevac="false" security="junk" freq="67MHz">'
        '<zMistsMap><zMist title="Z1" z="a"/></zMistsMap></_medevac_>',
    )
    row = collect(xml).casevacs["U-1"]
    assert (row["urgent"], row["hoist"], row["casevac"], row["security"], row["freq"]) == (
        2, True, False, None, "67MHz",
    )
    assert json.loads(row["zmist"])[0]["title"] == "Z1"


@pytest.mark.parametrize(("entry", "url"), [
    ('protocol="rtsp" address="10.0.0.1" port="8554" path="/live/a"', "rtsp://10.0.0.1:8554/live/a"),
    ('protocol="raw" address="https://example.test/watch" port="80"', "https://example.test/watch"),
    ('protocol="udp" address="" port="6636"', None),
    ('protocol="srt" address="h" port="-1"', "srt://h"),
])
def test_video_url(entry, url):
    xml = event("b-i-v", f'<__video><ConnectionEntry {entry} alias="A"/></__video>')
    row = collect(xml).videos["U-1"]
    assert row["url"] == url
    assert row["name"] == "A"


def test_chat_rows():
    xml = event(
        "b-t-f",
        '<__chat chatroom="okm" id="room-1" parent="UserGroups" groupOwner="true" '
        'senderCallsign="dog"><chatgrp uid0="A" uid1="B"/></__chat>'
        '<link uid="A" relation="p-p"/><remarks>hi</remarks>',
        uid="GeoChat.A.okm.1",
    )
    rows = collect(xml)
    assert rows.rooms == {"room-1": {
        "room_id": "room-1", "name": "okm", "parent": "UserGroups", "group_owner": True,
    }}
    assert rows.members == {("room-1", "A"), ("room-1", "B")}
    assert [(c["uid"], c["room"], c["sender_uid"], c["text"]) for c in rows.chats] == [
        ("GeoChat.A.okm.1", "room-1", "A", "hi"),
    ]


@pytest.mark.parametrize(("value", "expected"), [
    ("1.5", 1.5), (None, None), ("junk", None), ("nan", None), ("inf", None),
    ("9999999", None), ("9999999.0", None), (3, 3.0),
])
def test_number(value, expected):
    assert R.number(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("False", False), ("1", True), ("0", False), ("maybe", None), (None, None),
])
def test_boolean(value, expected):
    assert R.boolean(value) is expected
