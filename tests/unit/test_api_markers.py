"""``POST /api/markers`` and ``DELETE /api/markers/{uid}`` in-process: what they hand the node's
injector (a recording stand-in here), what they refuse, and the round trip through the store's
real writer back into the listing (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from otszmq.workers.cot import parse_event
from tests.marti_support import RecordingInjector, assert_json_error
from tests.store_support import BACKENDS, store_event
from tests.unit.test_api_listings import Api, make_api

MARKER = {"callsign": "Rally <A&B> \"1\"", "lat": 48.5, "lon": -2.25,
          "remarks": "meet here\nbring <water> & food"}


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    yield from make_api("sqlite", tmp_path, RecordingInjector())


@pytest.fixture(params=BACKENDS)
def both_api(request, tmp_path) -> Iterator[Api]:
    yield from make_api(request.param, tmp_path, RecordingInjector())


def injected(api: Api) -> list[tuple[bytes, tuple[str, ...]]]:
    assert api.injector is not None
    return [(event, groups) for events, groups in api.injector.sent for event in events]


def test_post_injects_one_escaped_cot_event_to_the_callers_in_groups(api):
    red = api.user("red", ["Red", "Ops"], ["Red"])
    before = datetime.now(UTC)
    result = api.client.simulate_post("/api/markers", json=MARKER, headers=red)
    assert result.status_code == 202, result.text
    uid = result.json["uid"]
    [(xml, groups)] = injected(api)
    assert groups == ("Ops", "Red")
    event = parse_event(xml)  # the worker's own parser takes it
    assert (event.uid, event.type, event.how) == (uid, "a-u-G", "h-g-i-g-o")
    assert (event.callsign, event.remarks) == (MARKER["callsign"], MARKER["remarks"])
    assert (event.lat, event.lon) == (48.5, -2.25)
    assert timedelta(minutes=1439) < event.stale - before < timedelta(minutes=1441)


def test_post_takes_uid_type_name_and_stale(api):
    red = api.user("red", ["Red"], ["Red"])
    body = {"uid": "rally-1", "name": "Rally", "lat": 1, "lon": 2, "type": "b-m-p-s-m",
            "stale_minutes": 5}
    result = api.client.simulate_post("/api/markers", json=body, headers=red)
    assert result.status_code == 202 and result.json == {"uid": "rally-1"}
    event = parse_event(injected(api)[0][0])
    assert (event.uid, event.type, event.callsign) == ("rally-1", "b-m-p-s-m", "Rally")
    assert event.stale - event.time == timedelta(minutes=5)


@pytest.mark.parametrize(("body", "field"), [
    ({"callsign": "x", "lat": 91, "lon": 0}, "lat"),
    ({"callsign": "x", "lat": "48", "lon": 0}, "lat"),
    ({"callsign": "x", "lat": True, "lon": 0}, "lat"),
    ({"callsign": "x", "lat": 0}, "lon"),
    ({"callsign": "x", "lat": 0, "lon": -180.5}, "lon"),
    ({"lat": 0, "lon": 0}, "callsign"),
    ({"callsign": "  ", "lat": 0, "lon": 0}, "callsign"),
    ({"callsign": 5, "lat": 0, "lon": 0}, "callsign"),
    ({"callsign": "a\x00b", "lat": 0, "lon": 0}, "callsign"),
    ({"callsign": "x", "name": "y", "lat": 0, "lon": 0}, "name"),
    ({"callsign": "x", "lat": 0, "lon": 0, "latitude": 1}, "latitude"),
    ({"callsign": "x", "lat": 0, "lon": 0, "type": "t-x-d-d"}, "type"),
    ({"callsign": "x", "lat": 0, "lon": 0, "type": "b-t-f"}, "type"),
    ({"callsign": "x", "lat": 0, "lon": 0, "type": "a f"}, "type"),
    ({"callsign": "x", "lat": 0, "lon": 0, "uid": "../x"}, "uid"),
    ({"callsign": "x", "lat": 0, "lon": 0, "uid": ""}, "uid"),
    ({"callsign": "x", "lat": 0, "lon": 0, "stale_minutes": 0}, "stale_minutes"),
    ({"callsign": "x", "lat": 0, "lon": 0, "stale_minutes": 1.5}, "stale_minutes"),
    ({"callsign": "x", "lat": 0, "lon": 0, "remarks": "x" * 5000}, "remarks"),
    ([1, 2], "body"),
])
def test_bad_bodies_are_400s_naming_the_field_and_send_nothing(api, body, field):
    red = api.user("red", ["Red"], ["Red"])
    result = api.client.simulate_post("/api/markers", json=body, headers=red)
    assert_json_error(result, 400, field)
    assert injected(api) == []


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"x" * (65 * 1024)])
def test_bodies_that_are_not_json_are_400s(api, raw):
    red = api.user("red", ["Red"], ["Red"])
    result = api.client.simulate_post("/api/markers", body=raw, headers={
        **red, "Content-Type": "application/json"})
    assert_json_error(result, 400, "body")
    assert injected(api) == []


def test_without_a_node_or_when_it_refuses_the_answer_is_503(tmp_path):
    for injector, detail in ((None, "without a node"),
                             (RecordingInjector(accept=False), "did not take")):
        for api in make_api("sqlite", tmp_path / str(id(injector)), injector):
            red = api.user("red", ["Red"], ["Red"])
            result = api.client.simulate_post("/api/markers", json=MARKER, headers=red)
            assert_json_error(result, 503, detail)


def test_markers_need_a_token(api):
    assert_json_error(api.client.simulate_post("/api/markers", json=MARKER), 401, "Bearer")
    assert_json_error(api.client.simulate_delete("/api/markers/x"), 401, "Bearer")
    assert injected(api) == []


def test_a_uid_may_move_ones_own_marker_but_not_take_anothers(api):
    red = api.user("red", ["Red"], ["Red"])
    api.store([store_event("b-m-p-s-m", '<contact callsign="B"/>', uid="M-blue")], ["Blue"])
    api.store([store_event("b-m-p-s-m", '<contact callsign="R"/>', uid="M-red")], ["Red"])
    api.store([store_event("a-f-G-U-C", '<contact callsign="E" endpoint="*:-1:stcp"/>',
                           uid="ANDROID-9")], ["Red"])
    post = api.client.simulate_post
    assert_json_error(post("/api/markers", json={**MARKER, "uid": "M-blue"}, headers=red),
                      409, "cannot change")
    assert_json_error(post("/api/markers", json={**MARKER, "uid": "ANDROID-9"}, headers=red),
                      409, "EUD")
    assert injected(api) == []
    moved = post("/api/markers", json={**MARKER, "uid": "M-red", "lat": 5}, headers=red)
    assert moved.status_code == 202
    assert parse_event(injected(api)[0][0]).lat == 5.0


def test_delete_sends_a_t_x_d_d_to_the_markers_channels(api):
    api.store([store_event("b-m-p-s-m", '<contact callsign="B"/>', uid="M-blue")],
              ["Blue", "Green"])
    blue = api.user("blue", ["Blue"], ["Blue"])
    result = api.client.simulate_delete("/api/markers/M-blue", headers=blue)
    assert result.status_code == 202 and result.json == {"uid": "M-blue"}
    [(xml, groups)] = injected(api)
    assert groups == ("Blue",)  # of the marker's channels, those the caller writes to
    event = parse_event(xml)
    assert event.type == "t-x-d-d"
    assert [(link.uid, link.type) for link in event.links] == [("M-blue", "b-m-p-s-m")]
    admin = api.user("admin", admin=True)
    assert api.client.simulate_delete("/api/markers/M-blue", headers=admin).status_code == 202
    assert injected(api)[1][1] == ("Blue", "Green")  # an admin reaches all of them


def test_delete_refuses_what_the_caller_cannot_see_or_write(api):
    api.store([store_event("b-m-p-s-m", '<contact callsign="B"/>', uid="M-blue")], ["Blue"])
    red = api.user("red", ["Red"], ["Red"])
    reader = api.user("reader", ["Red"], ["Red", "Blue"])
    delete = api.client.simulate_delete
    assert_json_error(delete("/api/markers/nothing", headers=red), 404, "nothing")
    assert_json_error(delete("/api/markers/M-blue", headers=red), 404, "M-blue")
    assert_json_error(delete("/api/markers/M-blue", headers=reader), 403, "write")
    assert injected(api) == []


def test_a_posted_marker_stored_by_the_pipeline_lists_and_deletes(both_api):
    api = both_api
    red = api.user("red", ["Red"], ["Red"])
    blue = api.user("blue", ["Blue"], ["Blue"])
    uid = api.client.simulate_post("/api/markers", json=MARKER, headers=red).json["uid"]
    [(xml, groups)] = injected(api)
    api.store([xml], groups)  # what the worker and the store stage do with it
    [item] = api.get("/api/markers", red).json["results"]
    assert (item["uid"], item["callsign"], item["remarks"]) == (
        uid, MARKER["callsign"], MARKER["remarks"])
    assert item["groups"] == ["Red"] and item["type"] == "a-u-G"
    assert api.uids("/api/markers", blue) == []
    assert api.client.simulate_delete(f"/api/markers/{uid}", headers=red).status_code == 202
    delete_xml, delete_groups = injected(api)[1]
    api.store([delete_xml], delete_groups)
    assert api.uids("/api/markers", red) == []
    assert json.loads(api.get("/api/cot", red, uid=uid).text)["total"] == 1  # history stays
