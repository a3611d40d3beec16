"""``/Marti/api/cot/xml/{uid}`` and ``.../all`` in-process, over SQLite and PostgreSQL: events
stored by the store's writer come back as TAK Server serves them, scoped to the caller."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from otszmq.workers.cot import parse_event
from tests.marti_support import MartiApp, assert_json_error, marti_app, user_caller
from tests.store_support import BACKENDS, store_event
from tests.support import sa_event


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MartiApp]:
    with marti_app(request.param, tmp_path) as app:
        yield app


def sa_at(uid: str, second: int, callsign: str = "ALPHA", marti: str = "") -> bytes:
    """An SA of ``uid`` at 12:00:<second> on 2024-05-01, stale a minute later."""
    when = datetime(2024, 5, 1, 12, 0, second, tzinfo=UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    stale = (when + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<event version="2.0" uid="{uid}" type="a-f-G-U-C" how="m-g" time="{stamp}" '
        f'start="{stamp}" stale="{stale}"><point lat="48.85" lon="2.35" hae="35.0" ce="4.9" '
        f'le="9999999.0"/><detail><contact callsign="{callsign}" endpoint="*:-1:stcp"/>'
        f'<remarks>at {second}</remarks>{marti}</detail></event>'
    ).encode()


def events_of(text: str) -> list[etree._Element]:
    root = etree.fromstring(text.encode())
    assert root.tag == "events"
    return list(root)


def test_latest_event_is_served_as_xml_without_marti(api: MartiApp) -> None:
    api.store(sa_at("ANDROID-1", 1))
    api.store(sa_at("ANDROID-1", 3, marti='<marti><dest callsign="BRAVO"/></marti>'))
    api.store(sa_at("ANDROID-1", 2))  # arrives last but is older: not the latest
    result = api.client.simulate_get("/Marti/api/cot/xml/ANDROID-1")
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("application/xml")
    assert result.text.startswith('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n')
    event = parse_event(result.text.split("\n", 1)[1].encode())  # a CoT event our parser takes
    assert event.uid == "ANDROID-1"
    assert b"at 3" in result.content
    assert b"<marti" not in result.content  # TAK Server stores events without destinations
    assert result.text.count("<?xml") == 1  # the stored declaration is not repeated


def test_an_event_declared_utf16_is_served_whole(api: MartiApp) -> None:
    # WinTAK declares utf-16 over UTF-8 bytes; the worker took it, so must the API.
    api.store(sa_at("WINTAK-1", 1).replace(b'encoding="UTF-8"', b'encoding="utf-16"'))
    result = api.client.simulate_get("/Marti/api/cot/xml/WINTAK-1")
    assert b"<remarks>at 1</remarks>" in result.content  # the stored event, not a rebuilt one
    assert b"utf-16" not in result.content


def test_unknown_uid_is_json_404(api: MartiApp) -> None:
    api.store(sa_at("ANDROID-1", 1))
    assert_json_error(api.client.simulate_get("/Marti/api/cot/xml/NOPE"), 404, "NOPE")


def test_events_are_scoped_to_the_callers_channels(api: MartiApp) -> None:
    api.store(sa_at("RED-1", 1), groups=("Red",))
    anonymous = api.client.simulate_get("/Marti/api/cot/xml/RED-1")
    assert_json_error(anonymous, 404, "RED-1")
    assert events_of(api.client.simulate_get("/Marti/api/cot/xml/RED-1/all").text) == []
    api.who.caller = user_caller("alice", ("Blue",), ("Blue",))
    assert api.client.simulate_get("/Marti/api/cot/xml/RED-1").status_code == 404
    api.who.caller = user_caller("bob", ("Blue",), ("Red", "Blue"))
    assert api.client.simulate_get("/Marti/api/cot/xml/RED-1").status_code == 200
    api.who.caller = user_caller("root", admin=True)
    assert api.client.simulate_get("/Marti/api/cot/xml/RED-1").status_code == 200


def test_without_raw_xml_a_minimal_event_is_rebuilt(api: MartiApp) -> None:
    api.store(sa_at("ANDROID-2", 5, callsign="CHARLIE"), raw_xml=False)
    result = api.client.simulate_get("/Marti/api/cot/xml/ANDROID-2")
    assert result.status_code == 200, result.text
    event = parse_event(result.text.split("\n", 1)[1].encode())
    assert (event.uid, event.type, event.how) == ("ANDROID-2", "a-f-G-U-C", "m-g")
    assert event.time == datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
    assert event.stale == datetime(2024, 5, 1, 12, 1, 5, tzinfo=UTC)
    assert (event.lat, event.lon) == (48.85, 2.35)  # the position the store kept
    assert event.callsign == "CHARLIE"


def test_history_wraps_events_oldest_first(api: MartiApp) -> None:
    for second in (3, 1, 2):
        api.store(sa_at("ANDROID-1", second))
    api.store(sa_at("OTHER", 1))
    result = api.client.simulate_get("/Marti/api/cot/xml/ANDROID-1/all")
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("application/xml")
    events = events_of(result.text.split("\n", 1)[1])
    assert [e.findtext("detail/remarks") for e in events] == ["at 1", "at 2", "at 3"]
    assert {e.get("uid") for e in events} == {"ANDROID-1"}


def test_history_start_and_end_bound_the_window(api: MartiApp) -> None:
    for second in (1, 2, 3, 4):
        api.store(sa_at("ANDROID-1", second))
    params = {"start": "2024-05-01T12:00:02Z", "end": "2024-05-01T12:00:03.5+00:00"}
    result = api.client.simulate_get("/Marti/api/cot/xml/ANDROID-1/all", params=params)
    events = events_of(result.text.split("\n", 1)[1])
    assert [e.findtext("detail/remarks") for e in events] == ["at 2", "at 3"]


def test_history_secago_keeps_recent_events_and_wins_over_start(api: MartiApp) -> None:
    api.store(sa_at("ANDROID-1", 1))  # 2024: long ago
    api.store(sa_event("ANDROID-1", "NOW", remarks="recent"))
    params = {"secago": "600", "start": "2000-01-01T00:00:00Z"}
    result = api.client.simulate_get("/Marti/api/cot/xml/ANDROID-1/all", params=params)
    events = events_of(result.text.split("\n", 1)[1])
    assert [e.findtext("detail/remarks") for e in events] == ["recent"]


def test_history_of_nothing_is_an_empty_events_element(api: MartiApp) -> None:
    result = api.client.simulate_get("/Marti/api/cot/xml/NOPE/all")
    assert result.status_code == 200
    assert result.text.endswith("<events></events>")


@pytest.mark.parametrize(("params", "field"), [
    ({"secago": "soon"}, "secago"),
    ({"secago": "-5"}, "secago"),
    ({"start": "yesterday"}, "start"),
    ({"end": "2024-13-01T00:00:00Z"}, "end"),
    ({"start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"}, "start"),
])
def test_history_rejects_bad_parameters(api: MartiApp, params: dict[str, str],
                                        field: str) -> None:
    result = api.client.simulate_get("/Marti/api/cot/xml/ANDROID-1/all", params=params)
    assert_json_error(result, 400, field)


def test_a_marker_is_served_too(api: MartiApp) -> None:
    api.store(store_event("b-m-p-s-m", '<contact callsign="CP"/>', uid="MARKER-1"))
    result = api.client.simulate_get("/Marti/api/cot/xml/MARKER-1")
    assert parse_event(result.text.split("\n", 1)[1].encode()).type == "b-m-p-s-m"
