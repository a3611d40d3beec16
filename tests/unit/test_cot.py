"""Unit tests of the CoT event parser (otszmq.workers.cot).

Inline fixtures cover every case on their own (SA, GeoChat, marti addressing, deletes, pings,
time forms, hostile XML); the shared corpus adds real client samples on top, and those tests skip,
saying so, where the corpus is absent.
"""

from __future__ import annotations

import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otszmq.errors import CotParseError
from otszmq.workers.cot import (
    Chat,
    CotEvent,
    CotParser,
    Dest,
    Link,
    parse_cot_time,
    parse_event,
)
from tests.corpus import corpus_params, require_corpus

# ------------------------------------------------------------------------------------ helpers

_DECLARATION = re.compile(rb"\A\s*<\?xml[^>]*\?>")


def framed(raw: bytes) -> bytes:
    """The bytes a worker gets for one sample: what the framer does, in miniature.

    The framer drops an ``<?xml ...?>`` declaration and the whitespace around an event, and hands
    on the bytes from ``<event`` to ``</event>``.
    """
    return _DECLARATION.sub(b"", raw, count=1).strip()


def event_xml(
    *,
    attrs: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    point: str | None = '<point lat="48.8566" lon="2.3522" hae="35.0" ce="4.9" le="9999999.0"/>',
    detail: str | None = "",
) -> bytes:
    """An event written for these tests: required attributes plus overrides, point, detail."""
    values = {
        "version": "2.0",
        "uid": "ANDROID-0123456789abcdef",
        "type": "a-f-G-U-C",
        "how": "m-g",
        "time": "2024-05-01T12:00:00.000Z",
        "start": "2024-05-01T12:00:00.000Z",
        "stale": "2024-05-01T12:06:15.000Z",
    }
    values.update(attrs or {})
    head = " ".join(
        f"{name}={quoteattr(value)}" for name, value in values.items() if name not in drop
    )
    body = (point or "") + ("" if detail is None else f"<detail>{detail}</detail>")
    return f"<event {head}>{body}</event>".encode()


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# ------------------------------------------------------------------------------ inline samples
# Written for these tests (not copied from the corpus); they mirror what ATAK and WinTAK send.

SA_ATAK = (
    b'<event version="2.0" uid="ANDROID-0123456789abcdef" type="a-f-G-U-C" how="m-g" '
    b'time="2024-05-01T12:00:00.123Z" start="2024-05-01T12:00:00.123Z" '
    b'stale="2024-05-01T12:06:15.123Z">'
    b'<point lat="48.8566" lon="2.3522" hae="35.5" ce="4.9" le="9999999.0"/>'
    b'<detail><takv os="34" version="5.1.0.7 (abcdef12).1700000000-CIV" device="ACME PHONE 9" '
    b'platform="ATAK-CIV"/><contact endpoint="*:-1:stcp" callsign="Bravo-6"/>'
    b'<uid Droid="Bravo-6"/><precisionlocation altsrc="GPS" geopointsrc="GPS"/>'
    b'<__group role="Team Lead" name="Dark Green"/><status battery="81"/>'
    b'<track course="12.5" speed="1.2"/></detail></event>'
)

CHAT_DIRECT = (
    b"<event version='2.0' uid='GeoChat.ANDROID-aaaa.Charlie.5b0a7c1e-1111-4222-8333-944445555666' "
    b"type='b-t-f' how='h-g-i-g-o' time='2024-05-01T12:00:01.5Z' start='2024-05-01T12:00:01.5Z' "
    b"stale='2024-05-02T12:00:01.5Z'>"
    b"<point lat='0.0' lon='0.0' hae='9999999.0' ce='9999999.0' le='9999999.0'/><detail>"
    b"<__chat parent='RootContactGroup' groupOwner='false' chatroom='Charlie' id='ANDROID-bbbb' "
    b"senderCallsign='Alpha' messageId='5b0a7c1e-1111-4222-8333-944445555666'>"
    b"<chatgrp uid0='ANDROID-aaaa' uid1='ANDROID-bbbb' id='ANDROID-bbbb'/></__chat>"
    b"<link uid='ANDROID-aaaa' type='a-f-G-U-C' relation='p-p'/>"
    b"<remarks source='BAO.F.ATAK.ANDROID-aaaa' to='ANDROID-bbbb' time='2024-05-01T12:00:01.5Z'>"
    b"meet at the &amp; bridge</remarks>"
    b"<marti><dest callsign='Charlie'/></marti></detail></event>"
)

MARTI_MIXED = event_xml(
    attrs={"type": "b-m-p-w-GOTO", "uid": "wp-1"},
    detail=(
        '<contact callsign="WP 1"/><marti><dest callsign="Delta"/>'
        '<dest uid="ANDROID-cccc"/><dest mission="Op North"/></marti>'
    ),
)

EMPTY_MARTI = event_xml(
    attrs={"type": "a-u-G", "uid": "marker-1"}, detail='<contact callsign="M1"/><marti/>'
)

# Detail before point, as FreeTAKServer writes it.
DELETE = (
    b'<event version="2.0" uid="3c2d1e0f-0000-4000-8000-000000000001" type="t-x-d-d" '
    b'how="h-g-i-g-o" time="2024-05-01T12:00:02.000001Z" start="2024-05-01T12:00:02.000001Z" '
    b'stale="2024-05-01T12:00:22.000001Z">'
    b'<detail><link uid="ANDROID-dddd" relation="p-p" type="a-f-G-U-C"/></detail>'
    b'<point le="9999999.0" ce="9999999.0" hae="9999999.0" lon="0" lat="0"/></event>'
)

# Some clients send their keep-alive without a <point>.
PING = (
    b'<event version="2.0" uid="ANDROID-0123456789abcdef-ping" type="t-x-c-t" how="m-g" '
    b'time="2024-05-01T12:00:03.000Z" start="2024-05-01T12:00:03.000Z" '
    b'stale="2024-05-01T12:00:13.000Z"/>'
)


# ------------------------------------------------------------------------------ inline: fields


def test_sa_fields() -> None:
    event = parse_event(SA_ATAK)
    assert isinstance(event, CotEvent)
    assert (event.uid, event.type, event.how) == ("ANDROID-0123456789abcdef", "a-f-G-U-C", "m-g")
    assert event.time == event.start == utc(2024, 5, 1, 12, 0, 0, 123000)
    assert event.stale == utc(2024, 5, 1, 12, 6, 15, 123000)
    assert (event.lat, event.lon, event.hae, event.ce, event.le) == (
        48.8566,
        2.3522,
        35.5,
        4.9,
        9999999.0,
    )
    assert (event.callsign, event.endpoint) == ("Bravo-6", "*:-1:stcp")
    assert (event.group_name, event.group_role) == ("Dark Green", "Team Lead")
    assert (event.takv_device, event.takv_platform, event.takv_os, event.takv_version) == (
        "ACME PHONE 9",
        "ATAK-CIV",
        "34",
        "5.1.0.7 (abcdef12).1700000000-CIV",
    )
    assert (event.dests, event.has_marti, event.chat, event.links, event.remarks) == (
        (),
        False,
        None,
        (),
        None,
    )
    assert event.raw is SA_ATAK
    assert not (event.is_ping or event.is_delete or event.is_chat)
    assert event.stale_epoch == utc(2024, 5, 1, 12, 6, 15, 123000).timestamp()


def test_times_are_utc_aware() -> None:
    event = parse_event(SA_ATAK)
    for value in (event.time, event.start, event.stale):
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


def test_geochat_direct() -> None:
    event = parse_event(CHAT_DIRECT)
    assert event.is_chat
    assert event.chat == Chat(
        chatroom="Charlie",
        chat_id="ANDROID-bbbb",
        parent="RootContactGroup",
        sender_callsign="Alpha",
        message_id="5b0a7c1e-1111-4222-8333-944445555666",
        group_owner="false",
        text="meet at the & bridge",
    )
    assert event.remarks == "meet at the & bridge"
    assert event.links == (Link(uid="ANDROID-aaaa", type="a-f-G-U-C", relation="p-p"),)
    assert event.dests == (Dest(callsign="Charlie", uid=None, mission=None),)
    assert event.has_marti
    assert event.callsign is None  # a chat has no <contact>
    assert event.time.microsecond == 500000


def test_chat_without_remarks_has_no_text() -> None:
    event = parse_event(
        event_xml(attrs={"type": "b-t-f"}, detail='<__chat chatroom="All Chat Rooms"/>')
    )
    assert event.chat == Chat("All Chat Rooms", None, None, None, None, None, None)


def test_marti_dest_callsign_uid_and_mission() -> None:
    event = parse_event(MARTI_MIXED)
    assert event.has_marti
    assert event.dests == (
        Dest(callsign="Delta", uid=None, mission=None),
        Dest(callsign=None, uid="ANDROID-cccc", mission=None),
        Dest(callsign=None, uid=None, mission="Op North"),
    )


def test_empty_marti_is_present_without_dests() -> None:
    event = parse_event(EMPTY_MARTI)
    assert event.has_marti
    assert event.dests == ()


def test_no_marti() -> None:
    event = parse_event(event_xml(detail='<contact callsign="x"/>'))
    assert not event.has_marti
    assert event.dests == ()


def test_dests_of_every_marti_are_kept_and_non_dest_children_ignored() -> None:
    event = parse_event(
        event_xml(
            detail=(
                '<marti><dest callsign="A"/><!-- note --><other callsign="no"/></marti>'
                '<marti><dest mission="M"/></marti>'
            )
        )
    )
    assert event.dests == (Dest("A", None, None), Dest(None, None, "M"))


def test_delete_target_is_the_link() -> None:
    event = parse_event(DELETE)
    assert event.is_delete
    assert event.links == (Link(uid="ANDROID-dddd", type="a-f-G-U-C", relation="p-p"),)
    assert (event.lat, event.lon) == (0.0, 0.0)  # <point> after <detail> is still found
    assert event.time.microsecond == 1


def test_ping_without_point() -> None:
    event = parse_event(PING)
    assert event.is_ping
    assert (event.lat, event.lon, event.hae, event.ce, event.le) == (None,) * 5
    assert (event.callsign, event.dests, event.links, event.chat) == (None, (), (), None)


@pytest.mark.parametrize(
    ("cot_type", "is_ping", "is_delete", "is_chat"),
    [
        ("t-x-c-t", True, False, False),
        ("t-x-c-t-r", False, False, False),  # the pong is not a ping
        ("t-x-d-d", False, True, False),
        ("b-t-f", False, False, True),
        ("b-t-f-d", False, False, True),  # delivery receipt
        ("b-t-f-r", False, False, True),  # read receipt
        ("b-t-fx", False, False, False),  # atoms, not characters
        ("a-f-G-U-C", False, False, False),
    ],
)
def test_type_properties(cot_type: str, is_ping: bool, is_delete: bool, is_chat: bool) -> None:
    event = parse_event(event_xml(attrs={"type": cot_type}))
    assert (event.is_ping, event.is_delete, event.is_chat) == (is_ping, is_delete, is_chat)


def test_absent_attributes_are_none_and_empty_ones_empty() -> None:
    event = parse_event(
        event_xml(detail='<contact callsign=""/><__group name="Cyan"/><takv platform="iTAK"/>')
    )
    assert (event.callsign, event.endpoint) == ("", None)
    assert (event.group_name, event.group_role) == ("Cyan", None)
    assert (event.takv_platform, event.takv_device, event.takv_os, event.takv_version) == (
        "iTAK",
        None,
        None,
        None,
    )


def test_first_of_repeated_single_elements_wins() -> None:
    event = parse_event(
        event_xml(
            detail=(
                '<contact callsign="first"/><contact callsign="second"/>'
                "<remarks>one</remarks><remarks>two</remarks>"
            )
        )
    )
    assert (event.callsign, event.remarks) == ("first", "one")


def test_only_direct_children_of_detail_count() -> None:
    # Links nested in a <shape> style and a contact inside __chat/hierarchy are not the event's.
    event = parse_event(
        event_xml(
            detail=(
                '<shape><link uid="style" type="b-x-KmlStyle" relation="p-c"/></shape>'
                '<__chat chatroom="Red"><hierarchy><contact uid="u" name="n"/></hierarchy></__chat>'
            )
        )
    )
    assert event.links == ()
    assert event.callsign is None


def test_remarks_forms() -> None:
    assert parse_event(event_xml(detail="<remarks/>")).remarks is None
    assert parse_event(event_xml(detail="<remarks></remarks>")).remarks is None
    assert parse_event(event_xml(detail="<remarks>a &lt;b&gt;</remarks>")).remarks == "a <b>"


def test_missing_how_defaults_to_empty() -> None:
    assert parse_event(event_xml(drop=("how",))).how == ""


def test_event_without_detail() -> None:
    event = parse_event(event_xml(detail=None))
    assert (event.callsign, event.dests, event.has_marti, event.links) == (None, (), False, ())


def test_point_numbers() -> None:
    event = parse_event(
        event_xml(point='<point lat="-33.5" lon="151" hae="-5" ce="nan" le="NaN"/>')
    )
    assert (event.lat, event.lon, event.hae) == (-33.5, 151.0, -5.0)
    assert event.ce is not None and math.isnan(event.ce)
    assert event.le is not None and math.isnan(event.le)
    bounds = parse_event(event_xml(point='<point lat="90" lon="-180"/>'))
    assert (bounds.lat, bounds.lon, bounds.hae, bounds.ce, bounds.le) == (
        90.0,
        -180.0,
        None,
        None,
        None,
    )


def test_unicode_and_single_quotes() -> None:
    data = event_xml(detail="<contact callsign='Ünïcødé-北京'/><remarks>ça va 👍</remarks>")
    event = parse_event(data)
    assert (event.callsign, event.remarks) == ("Ünïcødé-北京", "ça va 👍")


def test_parser_is_reusable_after_errors() -> None:
    parser = CotParser()
    for _ in range(3):
        with pytest.raises(CotParseError):
            parser.parse(b"<event uid='x'")
        assert parser.parse(SA_ATAK) == parse_event(SA_ATAK)
        assert parser.parse(CHAT_DIRECT).chat is not None


# ---------------------------------------------------------------------------------- time forms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-10-15T20:30:55.4Z", utc(2015, 10, 15, 20, 30, 55, 400000)),  # WinTAK, 1 digit
        ("2022-05-16T13:24:59.71Z", utc(2022, 5, 16, 13, 24, 59, 710000)),  # WinTAK, 2 digits
        ("2015-11-20T18:35:12.456Z", utc(2015, 11, 20, 18, 35, 12, 456000)),  # ATAK
        ("2022-10-27T13:55:26.688141Z", utc(2022, 10, 27, 13, 55, 26, 688141)),  # Python
        ("2020-02-12T13:16:07Z", utc(2020, 2, 12, 13, 16, 7)),  # no fraction
        ("2024-01-01T00:00:00.1234567Z", utc(2024, 1, 1, 0, 0, 0, 123456)),  # .NET ticks
        ("2024-01-01T00:00:00.12345678Z", utc(2024, 1, 1, 0, 0, 0, 123456)),
        ("2024-01-01T00:00:00.999999999Z", utc(2024, 1, 1, 0, 0, 0, 999999)),  # truncated
        ("2024-01-01T00:00:00.5+00:00", utc(2024, 1, 1, 0, 0, 0, 500000)),
        ("2024-01-01T00:00:00.5-00:00", utc(2024, 1, 1, 0, 0, 0, 500000)),
        ("2024-01-01T00:00:00.25z", utc(2024, 1, 1, 0, 0, 0, 250000)),
        ("2024-01-01T02:30:00+02:30", utc(2024, 1, 1, 0, 0, 0)),
        ("2023-12-31T19:00:00.000-05:00", utc(2024, 1, 1, 0, 0, 0)),
        ("2024-01-01T00:00:00", utc(2024, 1, 1, 0, 0, 0)),  # no zone: CoT times are UTC
        ("2024-02-29T23:59:59.999Z", utc(2024, 2, 29, 23, 59, 59, 999000)),
    ],
)
def test_time_forms(text: str, expected: datetime) -> None:
    parsed = parse_cot_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC
    event = parse_event(event_xml(attrs={"time": text, "start": text, "stale": text}))
    assert event.time == event.start == event.stale == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2015-10-15",  # date only
        "2015-10-15T20:30Z",  # no seconds
        "2015-10-15T20:30:Z",
        "2015-10-15 20:30:55Z",  # space separator
        "2015-10-15t20:30:55Z",
        "20151015T203055Z",  # basic format
        "2015-W42-4T20:30:55Z",  # week date
        "2015-10-15T20:30:55,4Z",  # comma fraction
        "2015-10-15T20:30:55.Z",  # dot without digits
        "2015-10-15T20:30:55.1234567890Z",  # 10 fraction digits
        "2015-10-15T20:30:55+0500",
        "2015-10-15T20:30:55+05",
        "2015-10-15T20:30:55 Z",
        " 2015-10-15T20:30:55Z",
        "2015-10-15T20:30:55Z\n",
        "2015-10-15T20:30:55ZZ",
        "2015-10-15T20:30:485Z",
        "٢٠١٥-10-15T20:30:55Z",  # non-ASCII digits
        "2015-13-01T00:00:00Z",  # month 13
        "2015-02-29T00:00:00Z",  # not a leap year
        "2015-10-32T00:00:00Z",
        "2015-10-15T24:00:00Z",
        "2015-10-15T23:60:00Z",
        "2015-10-15T23:59:60Z",  # leap seconds are not representable
        "0000-01-01T00:00:00Z",
        "2015-10-15T20:30:55+24:00",
        "0001-01-01T00:00:00+01:00",  # UTC would be before year 1
        "9999-12-31T23:59:59-01:00",  # UTC would be after year 9999
    ],
)
def test_bad_times_are_rejected(text: str) -> None:
    with pytest.raises(CotParseError, match="is not a valid time"):
        parse_cot_time(text)


@pytest.mark.parametrize("attribute", ["time", "start", "stale"])
def test_bad_time_message_names_the_attribute(attribute: str) -> None:
    data = event_xml(attrs={attribute: "yesterday"})
    with pytest.raises(CotParseError) as caught:
        parse_event(data)
    assert str(caught.value) == f"{attribute} is not a valid time: 'yesterday'"


def test_start_different_from_time_is_parsed_on_its_own() -> None:
    event = parse_event(
        event_xml(
            attrs={"time": "2020-02-12T13:16:07Z", "start": "2020-02-12T13:16:05Z"},
        )
    )
    assert (event.time, event.start) == (utc(2020, 2, 12, 13, 16, 7), utc(2020, 2, 12, 13, 16, 5))


# -------------------------------------------------------------------------------- bad events

BILLION_LAUGHS = (
    b'<!DOCTYPE event [<!ENTITY a "lollollollollollollollollollol">'
    + b"".join(
        f'<!ENTITY {name} "{("&" + previous + ";") * 10}">'.encode()
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + b"]>"
)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(BILLION_LAUGHS + event_xml(detail="<remarks>&i;</remarks>"), id="laughs-text"),
        pytest.param(BILLION_LAUGHS + event_xml(attrs={"uid": "&i;"}), id="laughs-attribute"),
        pytest.param(
            b'<!DOCTYPE event [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>'
            + event_xml(detail="<remarks>&passwd;</remarks>"),
            id="external-entity",
        ),
        pytest.param(
            b'<!DOCTYPE event [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd">%remote;]>'
            + event_xml(),
            id="parameter-entity",
        ),
        pytest.param(b'<!DOCTYPE event SYSTEM "file:///etc/passwd">' + event_xml(), id="dtd"),
        pytest.param(b"<!DOCTYPE event>" + event_xml(), id="bare-doctype"),
    ],
)
def test_doctype_and_entities_are_refused(data: bytes) -> None:
    with pytest.raises(CotParseError) as caught:
        parse_event(data)
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd leaks into the message


@pytest.mark.parametrize(
    "prolog",
    [
        pytest.param(b"", id="first"),
        pytest.param(b"<!-- a comment -->", id="after-a-comment"),
        pytest.param(b"<?pi x?>\n", id="after-a-processing-instruction"),
        pytest.param(b'<?xml version="1.0"?>\n', id="after-the-declaration"),
    ],
)
def test_plain_doctype_is_named_in_the_error(prolog: bytes) -> None:
    with pytest.raises(CotParseError, match="DOCTYPE is not allowed"):
        parse_event(prolog + b"<!DOCTYPE event>" + SA_ATAK)


def test_a_doctype_inside_the_event_is_not_well_formed() -> None:
    # A DOCTYPE belongs in the prolog only: after the root start-tag it is not XML at all.
    with pytest.raises(CotParseError, match="not well-formed"):
        parse_event(SA_ATAK.replace(b"<point", b"<!DOCTYPE event><point", 1))


@pytest.mark.parametrize("name", ["uid", "type", "time", "start", "stale"])
def test_missing_required_attribute(name: str) -> None:
    with pytest.raises(CotParseError) as caught:
        parse_event(event_xml(drop=(name,)))
    assert str(caught.value) == f"missing attribute {name!r}"


@pytest.mark.parametrize("name", ["uid", "type"])
def test_empty_uid_or_type(name: str) -> None:
    with pytest.raises(CotParseError) as caught:
        parse_event(event_xml(attrs={name: ""}))
    assert str(caught.value) == f"attribute {name!r} is empty"


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ('<point lat="-90" lon="180"/>', (-90.0, 180.0, None, None, None)),
        ('<point lat="90.0" lon="-180.0" hae="1e3" le="0"/>', (90.0, -180.0, 1000.0, None, 0.0)),
        ('<point lat=" 1.5 " lon="+2" ce="-3"/>', (1.5, 2.0, None, -3.0, None)),
    ],
)
def test_point_limits_and_optional_fields(
    point: str, expected: tuple[float, float, float | None, float | None, float | None]
) -> None:
    event = parse_event(event_xml(point=point))
    assert (event.lat, event.lon, event.hae, event.ce, event.le) == expected


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ('<point lat="north" lon="0"/>', "point lat is not a number: 'north'"),
        ('<point lat="1" lon="1,5"/>', "point lon is not a number: '1,5'"),
        ('<point lat="" lon="0"/>', "point lat is not a number: ''"),
        ('<point lat="0" lon="0" hae="high"/>', "point hae is not a number: 'high'"),
        ('<point lat="0" lon="0" ce="?"/>', "point ce is not a number: '?'"),
        ('<point lat="0" lon="0" le="1e"/>', "point le is not a number: '1e'"),
        ('<point lat="90.0001" lon="0"/>', "point lat out of range [-90, 90]: '90.0001'"),
        ('<point lat="0" lon="-180.5"/>', "point lon out of range [-180, 180]: '-180.5'"),
        ('<point lat="inf" lon="0"/>', "point lat out of range [-90, 90]: 'inf'"),
        ('<point lon="0"/>', "point is missing attribute 'lat'"),
        ('<point lat="0"/>', "point is missing attribute 'lon'"),
        ('<point lat="0" lon="0" hae=""/>', "point hae is not a number: ''"),
    ],
)
def test_bad_point(point: str, message: str) -> None:
    with pytest.raises(CotParseError) as caught:
        parse_event(event_xml(point=point))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'<auth><cot username="u" password="p"/></auth>', "root element is 'auth', expected"),
        (b'<e:event xmlns:e="urn:x" uid="a"/>', "root element is '{urn:x}event'"),
        (b"<events/>", "root element is 'events'"),
    ],
)
def test_root_must_be_event(data: bytes, message: str) -> None:
    with pytest.raises(CotParseError, match=re.escape(message)):
        parse_event(data)


@pytest.mark.parametrize("cut", [0, 1, 6, 40, 200, len(SA_ATAK) // 2, len(SA_ATAK) - 1])
def test_truncated_event(cut: int) -> None:
    with pytest.raises(CotParseError, match="not well-formed XML"):
        parse_event(SA_ATAK[:cut])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(event_xml(detail="").replace(b"a-f-G-U-C", b"a-f-\xe9"), id="latin-1"),
        pytest.param(b"\xff\xfe" + "<event/>".encode("utf-16-le"), id="utf-16"),
        pytest.param(
            event_xml(detail="<remarks>??</remarks>").replace(b"??", b"\xc3\x28"), id="bad-sequence"
        ),
        pytest.param(event_xml().replace(b"m-g", b"m\x00g"), id="nul"),
        pytest.param(event_xml(detail="<remarks>&nbsp;</remarks>"), id="undefined-entity"),
        pytest.param(SA_ATAK + SA_ATAK, id="two-events"),
        pytest.param(SA_ATAK + b"junk", id="trailing-junk"),
        pytest.param(b"", id="empty"),
        pytest.param(b"   ", id="blank"),
    ],
)
def test_not_well_formed(data: bytes) -> None:
    with pytest.raises(CotParseError, match="not well-formed XML"):
        parse_event(data)


def test_error_message_quotes_long_values_briefly() -> None:
    with pytest.raises(CotParseError) as caught:
        parse_event(event_xml(attrs={"stale": "9" * 100_000}))
    assert len(str(caught.value)) < 200


def test_parse_errors_chain_the_lxml_error() -> None:
    with pytest.raises(CotParseError) as caught:
        parse_event(b"<event")
    assert caught.value.__cause__ is not None


# -------------------------------------------------------------------------------- properties

ENVELOPES = [
    event_xml(attrs={"uid": "{x}"}),
    event_xml(attrs={"stale": "{x}"}),
    event_xml(point='<point lat="{x}" lon="0"/>'),
    event_xml(detail="<remarks>{x}</remarks>"),
    event_xml(detail="{x}"),
    event_xml(detail='<marti><dest callsign="{x}"/></marti>'),
    b"<event {x}/>",
    b"{x}" + SA_ATAK,
    SA_ATAK + b"{x}",
]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_cot_parse_error(data: bytes) -> None:
    try:
        event = parse_event(data)
    except CotParseError:
        return
    assert isinstance(event, CotEvent)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_after_event_start_only_raise_cot_parse_error(data: bytes) -> None:
    try:
        event = parse_event(b"<event " + data)
    except CotParseError:
        return
    assert isinstance(event, CotEvent)


@settings(max_examples=500, deadline=None)
@given(envelope=st.sampled_from(ENVELOPES), text=st.text(max_size=200))
def test_arbitrary_text_in_an_envelope_only_raises_cot_parse_error(
    envelope: bytes, text: str
) -> None:
    data = envelope.replace(b"{x}", text.encode("utf-8", "surrogatepass"))
    try:
        event = parse_event(data)
    except CotParseError:
        return
    assert isinstance(event, CotEvent)
    assert event.raw is data


# Characters XML 1.0 allows in content; '\r' is left out because XML turns it into '\n'.
_XML_TEXT = st.text(
    st.characters(
        exclude_categories=["Cs"],
        exclude_characters="\r\ufffe\uffff",
        min_codepoint=0x9,
    ).filter(lambda c: c in "\t\n" or c >= " "),
    min_size=1,
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(text=_XML_TEXT)
def test_escaped_text_survives(text: str) -> None:
    # quoteattr writes tabs and newlines as character references, which attribute-value
    # normalisation leaves alone, so attributes come back exactly too.
    event = parse_event(
        event_xml(
            attrs={"uid": text},
            detail=f"<contact callsign={quoteattr(text)}/><remarks>{escape(text)}</remarks>",
        )
    )
    assert (event.uid, event.callsign, event.remarks) == (text, text, text)


def _render(moment: datetime, digits: str, zone: str) -> str:
    base = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    return base + (f".{digits}" if digits else "") + zone


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    places=st.integers(min_value=0, max_value=9),
    extra=st.text("0123456789", min_size=3, max_size=3),
    zone=st.sampled_from(["Z", "z", "+00:00", "-00:00", ""]),
)
def test_time_round_trip(moment: datetime, places: int, extra: str, zone: str) -> None:
    digits = (f"{moment.microsecond:06d}" + extra)[:places]
    expected = moment.replace(microsecond=int(digits[:6].ljust(6, "0")) if digits else 0)
    assert parse_cot_time(_render(moment, digits, zone)) == expected.replace(tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_time_offsets_convert_to_utc(moment: datetime, minutes: int) -> None:
    sign = "-" if minutes < 0 else "+"
    zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    digits = f"{moment.microsecond:06d}"
    parsed = parse_cot_time(_render(moment, digits, zone))
    assert parsed.tzinfo is UTC
    assert parsed == moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))


# ------------------------------------------------------------------------------------ corpus

FRAMING_SAMPLE = "freetaktest__FRAMING-two-events-concatenated.xml"
UTF16_SAMPLE = "atak-civ__sa-wintak-utf16-declared.xml"


def _corpus_bytes(name: str) -> bytes:
    path = require_corpus() / name
    assert path.is_file(), f"corpus sample {name} is missing from {path.parent}"
    return path.read_bytes()


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_sample_parses(path: Path | None) -> None:
    require_corpus()
    assert path is not None
    data = framed(path.read_bytes())
    if path.name == FRAMING_SAMPLE:
        with pytest.raises(CotParseError):  # two documents: see the halves test
            parse_event(data)
        return
    event = parse_event(data)
    assert event.raw is data
    # Cross-check with a second, independent parser (the standard library's).
    reference = ET.fromstring(data)
    assert (event.uid, event.type, event.how) == (
        reference.get("uid"),
        reference.get("type"),
        reference.get("how", ""),
    )
    contact = reference.find("detail/contact")
    assert event.callsign == (None if contact is None else contact.get("callsign"))
    point = reference.find("point")
    if point is None:
        assert event.lat is None
    else:
        assert event.lat == float(point.get("lat", "nan"))
        assert event.lon == float(point.get("lon", "nan"))
    assert len(event.dests) == len(reference.findall("detail/marti/dest"))
    assert event.has_marti == (reference.find("detail/marti") is not None)
    assert len(event.links) == len(reference.findall("detail/link"))
    assert (event.chat is None) == (reference.find("detail/__chat") is None)
    assert event.time.tzinfo is UTC and event.stale.tzinfo is UTC


def test_corpus_concatenated_events_each_half_parses() -> None:
    raw = _corpus_bytes(FRAMING_SAMPLE)
    halves = [framed(part + b"</event>") for part in raw.split(b"</event>") if part.strip()]
    assert len(halves) == 2
    for half in halves:
        event = parse_event(half)
        assert (event.uid, event.type) == ("19027480992-9-1-1", "b-a-o-can")
        assert event.lat == 43.84456191618114


def test_corpus_utf16_declared_sample_parses_after_its_declaration() -> None:
    raw = _corpus_bytes(UTF16_SAMPLE)
    assert raw.startswith(b'<?xml version="1.0" encoding="utf-16"')  # the lie is still there
    declaration_end = raw.index(b"?>") + 2
    event = parse_event(raw[declaration_end:].strip())
    assert (event.uid, event.callsign, event.endpoint) == (
        "pc-0834cb51-df3f-4f96-9787-db227b07d2d0.NMEA.SA",
        "SkrienJ-LT",
        "192.168.135.185:8087:tcp",
    )
    assert event.time == utc(2015, 10, 15, 20, 30, 55, 400000)


NAN = float("nan")

# Spot checks of real samples: file name -> fields of the parsed event.
CORPUS_EXPECTED: dict[str, dict[str, Any]] = {
    "taky__sa-atak-cyan.xml": {
        "uid": "ANDROID-deadbeef",
        "type": "a-f-G-U-C",
        "callsign": "JENNY",
        "endpoint": "*:-1:stcp",
        "group_name": "Cyan",
        "group_role": "Team Member",
        "takv_platform": "ATAK-CIV",
        "takv_device": "Some Android Device",
        "takv_os": "29",
        "takv_version": "4.0.0.0 (deadbeef).1234567890-CIV",
        "lat": 1.234567,
        "lon": -3.141592,
        "time": utc(2021, 2, 27, 20, 32, 24, 771000),
        "stale": utc(2021, 2, 27, 20, 38, 39, 771000),
    },
    "libcotshrink__sa-atak4-pli.xml": {
        "uid": "ANDROID-53af0912586418dc",
        "callsign": "dasuberdog",
        "endpoint": "192.168.1.159:4242:tcp",
        "group_name": "Orange",
        "group_role": "Team Lead",
        "takv_platform": "ATAK-CIV",
        "takv_device": "GOOGLE PIXEL 4 XL",
        "takv_version": "4.0.0.7 (a457ad0d).1597850931-CIV",
    },
    "freetaktest__sa-atak-4.8-initial.xml": {
        "callsign": "corvo",
        "takv_version": "4.8.1.8 (0c4d4662).1676511632-CIV",
        "takv_device": "SAMSUNG SM-G950W",
        "lat": 0.0,
        "lon": 0.0,
    },
    "takserver__sa-atak-3.12.xml": {
        "callsign": "coolata",
        "group_name": "Dark Blue",
        "takv_platform": "ATAK-CIV",
        "time": utc(2020, 2, 12, 13, 16, 7),
        "start": utc(2020, 2, 12, 13, 16, 5),
    },
    "atak-civ__sa-mesh-mcast.xml": {
        "callsign": "TORY",
        "endpoint": "192.168.79.119:4242:tcp",
        "group_name": "Yellow",
        "takv_platform": None,
    },
    "goatak__sa-atak4-xiaomi.xml": {
        "callsign": "cs",
        "takv_device": "XIAOMI MI 9T",
        "group_name": "Dark Green",
    },
    "freetaktest__emergency-911-with-marti.xml": {
        "type": "b-a-o-tbl",
        "callsign": "corvo-Alert",
        "remarks": "CALL 911 NOW",
        "has_marti": True,
        "dests": (Dest("HelioHQ", None, None), Dest("corvo", None, None)),
    },
    "freetaktest__waypoint-dest-callsign-and-mission.xml": {
        "type": "b-m-p-w-GOTO",
        "dests": (Dest("HelioHQ", None, None), Dest(None, None, "WWIII")),
    },
    "freetaktest__video-feed-directed.xml": {
        "type": "b-i-v",
        "callsign": "Avalon Cam",
        "dests": (Dest("cool guy", None, None),),
    },
    "freetaktest__quickpic-to-mission.xml": {
        "dests": (Dest(None, None, "MI IV"),),
        "time": utc(2023, 8, 22, 13, 54, 47),
    },
    "taky__itak-marker-empty-marti.xml": {
        "type": "a-u-G",
        "callsign": "poop",
        "has_marti": True,
        "dests": (),
        "remarks": None,
    },
    "taky__geochat-direct-marti-callsign.xml": {
        "type": "b-t-f",
        "dests": (Dest("JOKER MAN", None, None),),
        "links": (Link("ANDROID-deadbeef", "a-f-G-U-C", "p-p"),),
        "chat": Chat(
            chatroom="JOKER MAN",
            chat_id="ANDROID-cafebabe",
            parent="RootContactGroup",
            sender_callsign="JENNY",
            message_id=None,
            group_owner="false",
            text="test",
        ),
    },
    "takserver__geochat-to-mission.xml": {
        "dests": (Dest(None, None, "jimmy"),),
        "chat": Chat("Green", "Green", None, None, None, None, "hey there"),
    },
    "libcotshrink__geochat-direct.xml": {
        "has_marti": False,
        "chat": Chat(
            "maya",
            "ANDROID-355499060918435",
            "RootContactGroup",
            "dasuberdog",
            None,
            "false",
            "you are a dog",
        ),
    },
    "libcotshrink__geochat-usergroup.xml": {
        "chat": Chat(
            "okm",
            "b1367178-c68f-4f86-9753-4fd9a283f1c9",
            "UserGroups",
            "dasuberdog",
            None,
            "true",
            "at VDO",
        ),
    },
    "libcotshrink__geochat-with-messageid.xml": {
        "chat": Chat(
            "All Chat Rooms",
            "All Chat Rooms",
            "RootContactGroup",
            "maya",
            "9a8e20ef-570c-4cc4-9689-675ee947a80c",
            "false",
            "at breach",
        ),
    },
    "freetaktest__geochat-wintak-team.xml": {
        "dests": (Dest("user2", None, None),),
        "time": utc(2022, 5, 16, 13, 24, 59, 710000),
        "chat": Chat(
            "Red", "Red", None, "Wintak", None, "false", "Test message from wintak in team "
        ),
    },
    "atak-civ__geochat-all-chat-rooms.xml": {
        "has_marti": False,
        "chat": Chat("All Chat Rooms", "All Chat Rooms", None, None, None, None, "Roger"),
    },
    "freetaktest__delete-t-x-d-d.xml": {
        "type": "t-x-d-d",
        "links": (Link("gvs_QARack1_1", "a-f-G-U-C", "p-p"),),
        "time": utc(2022, 10, 27, 13, 55, 26, 688141),
        "start": utc(2022, 10, 27, 13, 55, 26, 688292),
        "stale": utc(2022, 10, 27, 13, 56, 26, 688306),
    },
    "freetaktest__file-transfer-request-via-server.xml": {
        "type": "b-f-t-r",
        "ce": NAN,
        "le": NAN,
        "hae": -18.82157097,
        "dests": (Dest("HelioHQ", None, None),),
    },
    "freetaktest__mission-change-add-content.xml": {"type": "t-x-m-c", "links": ()},
    "goatak__TEMPLATE-takp-q-request.xml": {"type": "t-x-takp-q", "ce": 999999.0},
    "takserver__TEMPLATE-pong-t-x-c-t-r.xml": {
        "uid": "takPong",
        "type": "t-x-c-t-r",
        "callsign": None,
        "has_marti": False,
    },
    "atak-civ__range-bearing-line.xml": {"type": "u-rb-a", "callsign": "R&B 1"},
    "atak-civ__route.xml": {"type": "b-m-r", "callsign": "Route 1"},
    "libcotshrink__freehand-nested-xml.xml": {"type": "u-d-f-m", "remarks": "But"},
}


@pytest.mark.parametrize(("name", "expected"), CORPUS_EXPECTED.items(), ids=list(CORPUS_EXPECTED))
def test_corpus_spot_checks(name: str, expected: dict[str, Any]) -> None:
    event = parse_event(framed(_corpus_bytes(name)))
    for field, value in expected.items():
        actual = getattr(event, field)
        if isinstance(value, float) and math.isnan(value):
            assert actual is not None and math.isnan(actual), field
        else:
            assert actual == value, field


def test_corpus_route_links_are_its_points() -> None:
    event = parse_event(framed(_corpus_bytes("atak-civ__route.xml")))
    assert len(event.links) == 13
    assert all(link.relation == "c" for link in event.links)
    assert {link.type for link in event.links} == {"b-m-p-w", "b-m-p-c"}


def test_a_doctype_naming_a_local_file_never_opens_it(tmp_path: Path) -> None:
    # A FIFO blocks whoever opens it for reading until a writer comes: if the parser opened the
    # external subset, the parse would hang (and the finally clause would then free it).
    fifo = tmp_path / "subset"
    os.mkfifo(fifo)
    data = f'<!DOCTYPE event SYSTEM "{fifo}"><event version="2.0"/>'.encode()
    outcome: list[BaseException | None] = []

    def parse() -> None:
        try:
            CotParser().parse(data)
            outcome.append(None)
        except CotParseError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=parse, daemon=True)
    worker.start()
    worker.join(timeout=10)
    try:
        assert not worker.is_alive(), "the parser opened the file the DOCTYPE names"
        assert isinstance(outcome[0], CotParseError)
    finally:
        if worker.is_alive():
            with open(fifo, "wb"):  # unblock it
                pass
