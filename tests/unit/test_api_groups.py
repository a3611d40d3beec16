"""Channels over Marti in-process, over SQLite and PostgreSQL: ``groups/all`` in TAK's shape,
``PUT groups/active`` toggling memberships and asking the node to regroup the user's streams,
and bad bodies refused with nothing changed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from otszmq.store.models import GroupMembership
from otszmq.users import add_user, channels_for
from tests.marti_support import (
    MartiApp,
    RecordingInjector,
    assert_json_error,
    marti_app,
    user_caller,
)
from tests.store_support import BACKENDS

GROUP_KEYS = {"name", "direction", "created", "type", "bitpos", "active"}


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MartiApp]:
    with marti_app(request.param, tmp_path, injector=RecordingInjector()) as app:
        yield app


@pytest.fixture
def alice(api: MartiApp) -> MartiApp:
    """alice writes to Red, reads Red and Blue, and is the caller."""
    add_user(api.database, "alice", groups_in=["Red"], groups_out=["Red", "Blue"])
    api.who.caller = user_caller("alice", ("Red",), ("Red", "Blue"))
    return api


def put_active(api: MartiApp, body: object, **params: str) -> object:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return api.client.simulate_put("/Marti/api/groups/active", body=raw, params=params,
                                   headers={"Content-Type": "application/json"})


def enabled_rows() -> set[tuple[str, str, bool]]:
    query = GroupMembership.select()
    return {(str(m.group.name), str(m.direction), bool(m.enabled)) for m in query}


def assert_tak_group(entry: dict[str, object]) -> None:
    """Every key ATAK needs is there with its type (it drops the whole list otherwise)."""
    assert GROUP_KEYS <= set(entry) <= GROUP_KEYS | {"description"}, entry
    assert entry["direction"] in ("IN", "OUT")
    assert entry["type"] == "SYSTEM"
    assert isinstance(entry["bitpos"], int) and isinstance(entry["active"], bool)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(entry["created"]))


def test_anonymous_caller_has_anon_both_ways(api: MartiApp) -> None:
    body = api.client.simulate_get("/Marti/api/groups/all", params={"useCache": "true"}).json
    assert (body["version"], body["type"], body["nodeId"]) == (
        "3", "com.bbn.marti.remote.groups.Group", "node-1")
    for entry in body["data"]:
        assert_tak_group(entry)
    assert [(e["name"], e["direction"], e["bitpos"], e["active"]) for e in body["data"]] == [
        ("__ANON__", "IN", 2, True), ("__ANON__", "OUT", 2, True)]


def test_user_lists_each_membership(alice: MartiApp) -> None:
    body = alice.client.simulate_get("/Marti/api/groups/all").json
    for entry in body["data"]:
        assert_tak_group(entry)
    assert [(e["name"], e["direction"], e["active"]) for e in body["data"]] == [
        ("Blue", "OUT", True), ("Red", "IN", True), ("Red", "OUT", True)]
    bits = {e["name"]: e["bitpos"] for e in body["data"]}
    assert bits["Blue"] != bits["Red"] and 2 not in bits.values()


def test_put_toggles_memberships_and_regroups_live(alice: MartiApp) -> None:
    listed = alice.client.simulate_get("/Marti/api/groups/all").json["data"]
    for entry in listed:  # ATAK sends the list back, toggled, created as epoch millis
        entry["created"] = 1706691425000
        entry["active"] = entry["name"] != "Blue"
    result = put_active(alice, listed, clientUid="ANDROID-alice")
    assert result.status_code == 200, result.text
    assert result.json == {"groupsIn": ["Red"], "groupsOut": ["Red"], "updated": 3,
                           "unknown": [], "live": True}
    assert ("Blue", "OUT", False) in enabled_rows()
    assert alice.injector.regroups == [("alice", ("Red",), ("Red",))]
    active = alice.client.simulate_get("/Marti/api/groups/active").json["data"]
    assert [(e["name"], e["direction"]) for e in active] == [("Red", "IN"), ("Red", "OUT")]
    everything = alice.client.simulate_get("/Marti/api/groups/all").json["data"]
    assert ("Blue", "OUT", False) in {(e["name"], e["direction"], e["active"])
                                       for e in everything}


def test_all_out_channels_off_falls_back_to_anon(alice: MartiApp) -> None:
    result = put_active(alice, [{"name": "Red", "direction": "OUT", "active": False},
                                {"name": "Blue", "direction": "OUT", "active": False}])
    assert result.json["groupsOut"] == ["__ANON__"]
    assert alice.injector.regroups == [("alice", ("Red",), ("__ANON__",))]


def test_both_direction_and_unknown_groups(alice: MartiApp) -> None:
    result = put_active(alice, [{"name": "Red", "direction": "BOTH", "active": False},
                                {"name": "Green", "direction": "IN", "active": True}])
    assert result.status_code == 200, result.text
    assert result.json["updated"] == 2
    assert result.json["unknown"] == [{"name": "Green", "direction": "IN"}]
    assert {("Red", "IN", False), ("Red", "OUT", False)} <= enabled_rows()


def test_saved_even_when_the_node_does_not_take_the_regroup(alice: MartiApp) -> None:
    alice.injector.accept = False
    result = put_active(alice, [{"name": "Blue", "direction": "OUT", "active": False}])
    assert result.status_code == 200
    assert result.json["live"] is False
    assert ("Blue", "OUT", False) in enabled_rows()


def test_anonymous_put_is_refused(api: MartiApp) -> None:
    add_user(api.database, "alice", groups_in=["Red"], groups_out=["Red"])
    before = enabled_rows()
    result = put_active(api, [{"name": "Red", "direction": "OUT", "active": False}])
    assert_json_error(result, 403, "signed-in user")
    assert enabled_rows() == before
    assert api.injector.regroups == []


def test_put_for_an_inactive_or_unknown_user_is_refused(api: MartiApp) -> None:
    api.who.caller = user_caller("ghost", ("Red",), ("Red",))
    result = put_active(api, [{"name": "Red", "direction": "OUT", "active": False}])
    assert_json_error(result, 403, "ghost")
    assert api.injector.regroups == []


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"", "body"),
    ({"name": "Red"}, "body"),
    (["Red"], "body[0]"),
    ([{"direction": "OUT", "active": False}], "body[0].name"),
    ([{"name": "", "direction": "OUT", "active": False}], "body[0].name"),
    ([{"name": "Red", "direction": "SIDEWAYS", "active": False}], "body[0].direction"),
    ([{"name": "Red", "direction": 1, "active": False}], "body[0].direction"),
    ([{"name": "Red", "direction": "OUT", "active": "false"}], "body[0].active"),
    # A bad entry after a good one: the good one is not applied either.
    ([{"name": "Red", "direction": "OUT", "active": False}, {"name": "Blue"}],
     "body[1].direction"),
])
def test_bad_bodies_change_nothing(alice: MartiApp, body: object, field: str) -> None:
    before = enabled_rows()
    assert_json_error(put_active(alice, body), 400, field)
    assert enabled_rows() == before
    assert alice.injector.regroups == []


def test_oversized_body_is_refused(alice: MartiApp) -> None:
    entry = {"name": "Red", "direction": "OUT", "active": True, "description": "x" * 1000}
    before = enabled_rows()
    assert_json_error(put_active(alice, [entry] * 100), 413, "bytes")
    assert enabled_rows() == before


def test_without_a_node_put_is_unavailable_and_changes_nothing(tmp_path: Path) -> None:
    with marti_app("sqlite", tmp_path, injector=None) as api:
        add_user(api.database, "alice", groups_in=["Red"], groups_out=["Red"])
        api.who.caller = user_caller("alice", ("Red",), ("Red",))
        before = enabled_rows()
        result = put_active(api, [{"name": "Red", "direction": "OUT", "active": False}])
        assert_json_error(result, 503, "node")
        assert enabled_rows() == before
        assert channels_for("alice") is not None


def test_group_cache_enabled(api: MartiApp) -> None:
    body = api.client.simulate_get("/Marti/api/groups/groupCacheEnabled").json
    assert body["type"] == "java.lang.Boolean" and body["data"] is True
