"""Video feeds in-process, over SQLite and PostgreSQL: ``/Marti/vcm`` (XML) and
``/Marti/api/video`` (JSON) over the one VideoStream table CoT ``__video`` also fills; hostile
or malformed bodies are refused with nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from otszmq.store.models import VideoStream
from tests.marti_support import MartiApp, assert_json_error, marti_app, user_caller
from tests.store_support import BACKENDS, store_event

FEED = (
    "<feed><uid>cam-1</uid><active>true</active><alias>Gate camera</alias>"
    "<address>10.0.0.5</address><port>8554</port><roverPort>-1</roverPort>"
    "<ignoreEmbeddedKLV>false</ignoreEmbeddedKLV><path>/gate</path><protocol>rtsp</protocol>"
    "<timeout>5000</timeout><buffer>-1</buffer><rtspReliable>1</rtspReliable></feed>"
)
V1_KEYS = ["uid", "active", "alias", "type", "address", "preferredMacAddress", "port",
           "roverPort", "ignoreEmbeddedKLV", "path", "protocol", "source", "timeout", "buffer",
           "rtspReliable"]
FEED_STRINGS = ("uuid", "alias", "url", "macAddress", "roverPort", "ignoreEmbeddedKLV",
                "networkTimeout", "bufferTime", "rtspReliable")


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MartiApp]:
    with marti_app(request.param, tmp_path) as app:
        yield app


def post_vcm(api: MartiApp, body: str | bytes, **params: str) -> object:
    return api.client.simulate_post("/Marti/vcm", body=body, params=params,
                                    headers={"Content-Type": "application/xml"})


def post_v2(api: MartiApp, body: object) -> object:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return api.client.simulate_post("/Marti/api/video", body=raw,
                                    headers={"Content-Type": "application/json"})


def stored() -> int:
    return int(VideoStream.select().count())


def test_vcm_round_trip(api: MartiApp) -> None:
    assert post_vcm(api, f"<videoConnections>{FEED}</videoConnections>").status_code == 200
    result = api.client.simulate_get("/Marti/vcm")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(result.content)
    assert root.tag == "videoConnections"
    (feed,) = root.findall("feed")
    assert [child.tag for child in feed] == V1_KEYS
    values = {child.tag: child.text or "" for child in feed}
    assert values | {"active": "true"} == values
    assert (values["uid"], values["alias"], values["address"], values["port"],
            values["path"], values["protocol"], values["rtspReliable"], values["type"]) == (
        "cam-1", "Gate camera", "10.0.0.5", "8554", "/gate", "rtsp", "1", "VIDEO")


def test_vcm_feed_shows_in_v2_with_string_fields(api: MartiApp) -> None:
    post_vcm(api, f"<videoConnections>{FEED}</videoConnections>")
    body = api.client.simulate_get("/Marti/api/video").json
    (connection,) = body["videoConnections"]
    assert connection["uuid"] == "cam-1" and connection["alias"] == "Gate camera"
    assert connection["active"] is True
    (feed,) = connection["feeds"]
    assert feed["url"] == "rtsp://10.0.0.5:8554/gate"
    for key in FEED_STRINGS:  # iTAK drops the whole list over a null here (CloudTAK #1347)
        assert isinstance(feed[key], str), key
    assert all(feed[key] is None or isinstance(feed[key], int)
               for key in ("width", "height", "bitrate", "order"))
    again = api.client.simulate_get("/Marti/api/video").json
    assert again == body  # stable uuids across calls


def test_a_feed_shared_over_cot_shows_in_both_views(api: MartiApp) -> None:
    video = ('<__video url="rtsp://cam.example:554/live">'
             '<ConnectionEntry uid="cot-cam" alias="From CoT" address="cam.example" '
             'port="554" path="/live" protocol="rtsp" networkTimeout="5000" bufferTime="-1" '
             'roverPort="-1" rtspReliable="1" ignoreEmbeddedKLV="false"/></__video>')
    api.store(store_event("b-m-p-s-p-loc", video, uid="cot-cam"))
    v1 = etree.fromstring(api.client.simulate_get("/Marti/vcm").content)
    assert [f.findtext("uid") for f in v1] == ["cot-cam"]
    item = api.client.simulate_get("/Marti/api/video/cot-cam").json
    assert item["feeds"][0]["url"] == "rtsp://cam.example:554/live"


def test_v2_create_get_filter_update_delete(api: MartiApp) -> None:
    connection = {"uuid": "v2-cam", "active": True, "alias": "Drone",
                  "feeds": [{"uuid": "f-1", "active": True, "alias": "Drone",
                             "url": "srt://media.example:8890?streamid=read:drone"}]}
    result = post_v2(api, {"videoConnections": [connection]})
    assert result.status_code == 200, result.text
    item = api.client.simulate_get("/Marti/api/video/v2-cam").json
    assert item["feeds"][0]["url"] == "srt://media.example:8890?streamid=read:drone"
    rtsp = api.client.simulate_get("/Marti/api/video", params={"protocol": "rtsp"}).json
    assert rtsp == {"videoConnections": []}
    srt = api.client.simulate_get("/Marti/api/video", params={"protocol": "srt"}).json
    assert [c["uuid"] for c in srt["videoConnections"]] == ["v2-cam"]
    connection["feeds"][0]["url"] = "rtsp://media.example:8554/drone"
    updated = api.client.simulate_put("/Marti/api/video/v2-cam", json=connection)
    assert updated.status_code == 200, updated.text
    v1 = etree.fromstring(api.client.simulate_get("/Marti/vcm").content)
    assert (v1.findtext("feed/address"), v1.findtext("feed/port"),
            v1.findtext("feed/path")) == ("media.example", "8554", "/drone")
    assert api.client.simulate_delete("/Marti/api/video/v2-cam").status_code == 200
    assert_json_error(api.client.simulate_get("/Marti/api/video/v2-cam"), 404, "v2-cam")
    assert stored() == 0


def test_vcm_delete_by_id(api: MartiApp) -> None:
    post_vcm(api, f"<videoConnections>{FEED}</videoConnections>")
    assert api.client.simulate_delete("/Marti/vcm", params={"id": "cam-1"}).status_code == 200
    assert stored() == 0
    assert_json_error(api.client.simulate_delete("/Marti/vcm", params={"id": "cam-1"}),
                      404, "cam-1")


@pytest.mark.parametrize(("body", "detail"), [
    ("<videoConnections><feed>", "well-formed"),
    ("", "required"),
    ("<feeds/>", "expected <videoConnections>"),
    ("<videoConnections/>", "no <feed>"),
    ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     "<videoConnections><feed><uid>&b;</uid><address>x</address></feed></videoConnections>",
     "DOCTYPE"),
    ('<!DOCTYPE v SYSTEM "file:///etc/passwd"><videoConnections/>', "DOCTYPE"),
    (f"<videoConnections>{FEED.replace('8554', 'http')}</videoConnections>", "port"),
    (f"<videoConnections>{FEED.replace('8554', '70000')}</videoConnections>", "port"),
    (f"<videoConnections>{FEED.replace('10.0.0.5', '')}</videoConnections>", "address"),
    (f"<videoConnections>{FEED.replace('>rtsp<', '>rt sp<')}</videoConnections>", "protocol"),
    (f"<videoConnections>{FEED.replace('>1</rtspReliable', '>maybe</rtspReliable')}"
     "</videoConnections>", "rtspReliable"),
    # A bad feed after a good one: neither is stored.
    (f"<videoConnections>{FEED}{FEED.replace('cam-1', 'cam-2').replace('5000', 'x')}"
     "</videoConnections>", "feed[1].timeout"),
])
def test_vcm_bad_bodies_store_nothing(api: MartiApp, body: str, detail: str) -> None:
    assert_json_error(post_vcm(api, body), 400, detail)
    assert stored() == 0


def test_vcm_only_adds(api: MartiApp) -> None:
    result = post_vcm(api, f"<videoConnections>{FEED}</videoConnections>", action="setActive")
    assert_json_error(result, 400, "action")
    assert stored() == 0


def test_oversized_bodies_store_nothing(api: MartiApp) -> None:
    body = "<videoConnections>" + FEED * 2000 + "</videoConnections>"
    assert_json_error(post_vcm(api, body), 413, "bytes")
    connection = {"alias": "x" * 200, "feeds": [{"url": "rtsp://h/x"}]}
    assert_json_error(post_v2(api, {"videoConnections": [connection] * 2000}), 413, "bytes")
    assert stored() == 0


@pytest.mark.parametrize(("body", "detail"), [
    (b"{nope", "JSON"),
    ([], "videoConnections"),
    ({"videoConnections": []}, "videoConnections"),
    ({"videoConnections": ["x"]}, "videoConnections[0]"),
    ({"videoConnections": [{"alias": "a", "feeds": []}]}, "feeds"),
    ({"videoConnections": [{"alias": "a", "feeds": [{"url": "rtsp://a/1"},
                                                    {"url": "rtsp://a/2"}]}]}, "exactly one"),
    ({"videoConnections": [{"alias": "a", "feeds": [{"alias": "no url"}]}]}, "url"),
    ({"videoConnections": [{"alias": "a", "feeds": [{"url": "not a url"}]}]}, "url"),
    ({"videoConnections": [{"alias": "a", "feeds": [{"url": "rtsp://h:99999/x"}]}]}, "port"),
    ({"videoConnections": [{"alias": 5, "feeds": [{"url": "rtsp://h/x"}]}]}, "alias"),
    ({"videoConnections": [{"uuid": 7, "alias": "a", "feeds": [{"url": "rtsp://h/x"}]}]},
     "uuid"),
    ({"videoConnections": [{"alias": "ok", "feeds": [{"url": "rtsp://h/x"}]},
                           {"alias": "bad", "feeds": [{"url": ""}]}]}, "videoConnections[1]"),
])
def test_v2_bad_bodies_store_nothing(api: MartiApp, body: object, detail: str) -> None:
    assert_json_error(post_v2(api, body), 400, detail)
    assert stored() == 0


def test_feeds_are_scoped_to_the_callers_channels(api: MartiApp) -> None:
    api.who.caller = user_caller("alice", ("Red",), ("Red",))
    assert post_vcm(api, f"<videoConnections>{FEED}</videoConnections>").status_code == 200
    assert [f.findtext("uid") for f in etree.fromstring(
        api.client.simulate_get("/Marti/vcm").content)] == ["cam-1"]
    api.who.caller = user_caller("bob", ("Blue",), ("Blue",))
    assert api.client.simulate_get("/Marti/api/video").json == {"videoConnections": []}
    assert api.client.simulate_get("/Marti/api/video/cam-1").status_code == 404
    assert api.client.simulate_delete("/Marti/api/video/cam-1").status_code == 404
    # bob may not take the uid over either.
    hijack = post_vcm(api, f"<videoConnections>{FEED.replace('10.0.0.5', 'evil')}"
                      "</videoConnections>")
    assert_json_error(hijack, 403, "cam-1")
    assert VideoStream.get(VideoStream.uid == "cam-1").address == "10.0.0.5"


def test_posting_to_a_group_the_caller_does_not_write_is_refused(api: MartiApp) -> None:
    api.who.caller = user_caller("alice", ("Red",), ("Red", "Blue"))
    result = post_vcm(api, f"<videoConnections>{FEED}</videoConnections>", group="Blue")
    assert_json_error(result, 403, "Blue")
    assert stored() == 0
