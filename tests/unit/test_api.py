"""The Falcon app in-process (falcon.testing) against a temp SQLite database: Marti routes,
the admin API and the JSON error contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from otszmq.api.app import ApiConfig, ApiDeps, create_app
from otszmq.stats import NoStats
from otszmq.store.database import open_database
from otszmq.store.migrations import migrate
from otszmq.store.models import MODELS, Eud, User
from tests.api_support import login, make_user

UPLOAD_LIMIT = 4096


def make_client(tmp_path: Path, counters: Any = None) -> falcon.testing.TestClient:
    database = open_database(f"sqlite:///{tmp_path / 'api.db'}")
    database.bind(MODELS)
    migrate(database)
    database.close()
    config = ApiConfig(data_dir=tmp_path, upload_max_bytes=UPLOAD_LIMIT,
                       server_version="otszmq test", node_id="node-1")
    return falcon.testing.TestClient(create_app(config, ApiDeps(database, counters=counters)))


@pytest.fixture
def client(tmp_path: Path) -> falcon.testing.TestClient:
    return make_client(tmp_path)


def signed_in(client: falcon.testing.TestClient) -> dict[str, str]:
    """An administrator's token headers: every /api route but health, login and the document
    needs one."""
    make_user(User._meta.database, "admin", admin=True)
    return login(client, "admin")


def add_eud(uid: str, callsign: str, status: str = "Connected",
            when: datetime | None = None) -> None:
    Eud.create(uid=uid, callsign=callsign, team="Cyan", role="Team Member", device="Pixel",
               platform="ATAK-CIV", os="34", version="5.2",
               last_event_time=when or datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
               last_status=status,
               groups=",__ANON__,")  # written by a plain-TCP client: anonymous callers see it


def assert_error(result: falcon.testing.Result, status: int, detail_part: str) -> None:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json")
    body = result.json
    assert set(body) == {"error", "detail"}
    assert detail_part in body["detail"], body


# -- Marti ------------------------------------------------------------------------------------


def test_version_is_plain_text(client):
    result = client.simulate_get("/Marti/api/version")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    assert result.text == "otszmq test"


def test_version_config_shape(client):
    result = client.simulate_get("/Marti/api/version/config", host="tak.example")
    assert result.json == {
        "version": "3", "type": "ServerConfig", "nodeId": "node-1",
        "data": {"version": "otszmq test", "api": "3", "hostname": "tak.example"},
    }


def test_client_endpoints_shape_and_filters(client):
    add_eud("ANDROID-1", "ALPHA")
    add_eud("ANDROID-2", "BRAVO", status="Disconnected")
    add_eud("ANDROID-3", "CHARLIE", when=datetime.now(UTC) - timedelta(seconds=5))
    body = client.simulate_get("/Marti/api/clientEndPoints").json
    assert body["version"] == "3"
    assert body["type"] == "com.bbn.marti.remote.ClientEndpoint"
    assert body["nodeId"] == "node-1"
    assert [e["uid"] for e in body["data"]] == ["ANDROID-1", "ANDROID-2", "ANDROID-3"]
    first = body["data"][0]
    assert first == {
        "callsign": "ALPHA", "uid": "ANDROID-1", "username": "", "team": "Cyan",
        "role": "Team Member", "lastEventTime": "2024-05-01T12:00:00.123Z",
        "lastStatus": "Connected", "groups": [],
    }
    connected = client.simulate_get(
        "/Marti/api/clientEndPoints", params={"showCurrentlyConnectedClients": "true"}).json
    assert [e["uid"] for e in connected["data"]] == ["ANDROID-1", "ANDROID-3"]
    recent = client.simulate_get("/Marti/api/clientEndPoints", params={"secAgo": "60"}).json
    assert [e["uid"] for e in recent["data"]] == ["ANDROID-3"]


@pytest.mark.parametrize("params", [{"secAgo": "soon"}, {"secAgo": "-1"},
                                    {"showCurrentlyConnectedClients": "maybe"}])
def test_client_endpoints_rejects_bad_parameters(client, params):
    result = client.simulate_get("/Marti/api/clientEndPoints", params=params)
    assert_error(result, 400, next(iter(params)))


def test_contacts_all_is_a_bare_list(client):
    add_eud("ANDROID-1", "ALPHA")
    assert client.simulate_get("/Marti/api/contacts/all").json == [{
        "filterGroups": None, "notes": "", "callsign": "ALPHA", "team": "Cyan",
        "role": "Team Member", "takv": "Pixel ATAK-CIV 34 5.2", "uid": "ANDROID-1",
    }]


# -- errors -----------------------------------------------------------------------------------


def test_unknown_route_is_json_404(client):
    assert_error(client.simulate_get("/Marti/api/nothing-here"), 404, "/Marti/api/nothing-here")


def test_wrong_method_is_json_405(client):
    result = client.simulate_delete("/api/health")
    assert result.status_code == 405
    assert set(result.json) == {"error", "detail"}


def test_errors_are_json_even_when_xml_is_preferred(client):
    result = client.simulate_get("/nope", headers={"Accept": "application/xml"})
    assert_error(result, 404, "/nope")


# -- admin ------------------------------------------------------------------------------------


def test_health(client):
    assert client.simulate_get("/api/health").json == {"status": "ok"}


def test_status_without_pipeline(tmp_path):
    def silent() -> list[dict[str, Any]]:
        raise NoStats("no stats heard")

    client = make_client(tmp_path, counters=silent)
    add_eud("A", "ALPHA")
    add_eud("B", "BRAVO", status="Disconnected")
    body = client.simulate_get("/api/status", headers=signed_in(client)).json
    assert body["status"] == "ok"
    assert body["euds"] == {"total": 2, "connected": 1}
    assert body["database_bytes"] > 0
    assert body["uptime_seconds"] >= 0
    assert body["processes"] == []
    assert "no stats" in body["counters_error"]


def test_status_with_counters_and_without(tmp_path):
    snapshot = {"name": "worker-1", "role": "worker", "counters": {"events_in": 3}}
    client = make_client(tmp_path, counters=lambda: [snapshot])
    headers = signed_in(client)
    assert client.simulate_get("/api/status", headers=headers).json["processes"] == [snapshot]
    skipped = client.simulate_get("/api/status", params={"counters": "false"},
                                  headers=headers).json
    assert skipped["processes"] is None


def test_euds_paginated_and_filtered(client):
    for index in range(7):
        add_eud(f"uid-{index}", f"Callsign-{index}")
    add_eud("other", "ZULU")
    headers = signed_in(client)
    body = client.simulate_get("/api/euds", params={"page": "2", "per_page": "3"},
                               headers=headers).json
    assert body["total"] == 8 and body["page"] == 2 and body["per_page"] == 3
    assert [e["uid"] for e in body["results"]] == ["uid-3", "uid-4", "uid-5"]
    by_callsign = client.simulate_get("/api/euds", params={"callsign": "callsign"},
                                      headers=headers).json
    assert by_callsign["total"] == 7
    by_uid = client.simulate_get("/api/euds", params={"uid": "other"}, headers=headers).json
    assert [e["callsign"] for e in by_uid["results"]] == ["ZULU"]
    assert by_uid["results"][0]["last_status"] == "Connected"


@pytest.mark.parametrize(("params", "field"), [
    ({"per_page": "501"}, "per_page"), ({"per_page": "0"}, "per_page"),
    ({"page": "0"}, "page"), ({"page": "two"}, "page"), ({"callsign": "a\x00b"}, "callsign"),
])
def test_euds_rejects_bad_parameters(client, params, field):
    result = client.simulate_get("/api/euds", params=params, headers=signed_in(client))
    assert_error(result, 400, field)
