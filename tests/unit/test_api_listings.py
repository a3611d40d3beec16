"""The admin listings and markers in-process (falcon.testing), over SQLite and PostgreSQL.

Items are stored through the store's real writer with the channels they were written to; the
callers are real users signed in with real tokens. What a caller sees must follow TAK's rule
(OUT groups meet the item's channels; admins see all), and every bad parameter is a 400 that
names it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import falcon.testing
import pytest
from peewee import Database

from otszmq.api.app import ApiConfig, ApiDeps, create_app
from otszmq.api.auth import issue_token
from otszmq.store.models import DataPackage, Marker
from otszmq.store.writer import RecordWriter
from otszmq.users import add_user
from tests.api_support import bearer
from tests.marti_support import RecordingInjector, assert_json_error
from tests.store_support import BACKENDS, T, database_url, migrated, record_of, store_event

# route -> the uid each group's item has there (see items_of)
ROUTES = {
    "/api/euds": "EUD", "/api/points": "EUD", "/api/cot": "EUD", "/api/chat": "CHAT",
    "/api/alerts": "ALERT", "/api/casevac": "MED", "/api/markers": "M",
    "/api/rb-lines": "RB", "/api/video": "CAM",
}


def items_of(group: str) -> list[bytes]:
    """One item of every stored kind, uids ending in ``-group``."""
    return [
        store_event("a-f-G-U-C", f'<contact callsign="EUD-{group}" endpoint="*:-1:stcp"/>'
                                 '<takv device="PIXEL" platform="ATAK-CIV"/>', uid=f"EUD-{group}"),
        store_event("b-m-p-s-m", f'<contact callsign="Marker {group}"/>', uid=f"M-{group}"),
        store_event("b-t-f", f'<__chat chatroom="Room {group}" id="room-{group}" '
                             f'senderCallsign="EUD-{group}"/><link uid="EUD-{group}"/>'
                             f'<remarks>hello {group}</remarks>', uid=f"CHAT-{group}"),
        store_event("b-a-o-tbl", f'<emergency type="911 Alert"/><link uid="EUD-{group}"/>',
                    uid=f"ALERT-{group}"),
        store_event("b-r-f-h-c", '<contact callsign="MED"/><_medevac_ title="MED" urgent="1">'
                                 '<zMistsMap><zMist title="Z1" z="a"/></zMistsMap></_medevac_>',
                    uid=f"MED-{group}"),
        store_event("u-rb-a", '<range value="1000"/><bearing value="90"/>'
                              f'<contact callsign="RB {group}"/>', uid=f"RB-{group}"),
        store_event("b-i-v", f'<__video url="rtsp://cam/{group}"/>', uid=f"CAM-{group}"),
    ]


def at(xml: bytes, stamp: str) -> bytes:
    """``xml`` with its time (and start) moved to ``stamp``."""
    return xml.replace(f'time="{T}" start="{T}"'.encode(),
                       f'time="{stamp}" start="{stamp}"'.encode())


@dataclass
class Api:
    client: falcon.testing.TestClient
    database: Database
    injector: RecordingInjector | None

    def store(self, events: Sequence[bytes], groups: Sequence[str]) -> None:
        """Write ``events`` as the store stage would, as sent to ``groups``."""
        records = [record_of(xml, "", groups) for xml in events]
        RecordWriter(self.database, store_raw_xml=True).write(records)

    def user(self, name: str, groups_in: Sequence[str] = (), groups_out: Sequence[str] = (),
             *, admin: bool = False) -> dict[str, str]:
        """A signed-in user's token headers.

        PERF: the token is issued directly, not through POST /api/login: a password costs an
        argon2 hash, seconds for a test's five users on a busy machine. The token is checked
        by the app's real middleware all the same.
        """
        user = add_user(self.database, name, groups_in=groups_in, groups_out=groups_out,
                        admin=admin)
        token, _ = issue_token(user, timedelta(hours=1), datetime.now(UTC))
        return bearer(token)

    def get(self, path: str, headers: dict[str, str], **params: str) -> falcon.testing.Result:
        return self.client.simulate_get(path, params=params, headers=headers)

    def uids(self, path: str, headers: dict[str, str], **params: str) -> list[str]:
        result = self.get(path, headers, **params)
        assert result.status_code == 200, result.text
        return [item["uid"] for item in result.json["results"]]


def make_api(backend: str, tmp_path, injector: RecordingInjector | None) -> Iterator[Api]:
    with database_url(backend, tmp_path) as url, migrated(url) as database:
        config = ApiConfig(data_dir=tmp_path, server_version="otszmq test", node_id="node-1")
        app = create_app(config, ApiDeps(database, injector=injector))
        yield Api(falcon.testing.TestClient(app), database, injector)


@pytest.fixture(params=BACKENDS)
def api(request, tmp_path) -> Iterator[Api]:
    yield from make_api(request.param, tmp_path, RecordingInjector())


@pytest.fixture
def sqlite_api(tmp_path) -> Iterator[Api]:
    yield from make_api("sqlite", tmp_path, RecordingInjector())


@pytest.fixture
def teams(api) -> dict[str, dict[str, str]]:
    """Red and Blue items stored; red, blue, a reader of both, a user with no channels (the
    anonymous channel) and an admin signed in."""
    api.store(items_of("red"), ["Red"])
    api.store(items_of("blue"), ["Blue"])
    return {
        "red": api.user("red", ["Red"], ["Red"]),
        "blue": api.user("blue", ["Blue"], ["Blue"]),
        "both": api.user("both", ["Red"], ["Red", "Blue"]),
        "nobody": api.user("nobody"),
        "admin": api.user("admin", admin=True),
    }


# -- scoping ----------------------------------------------------------------------------------


def test_each_caller_sees_only_what_its_out_groups_read(api, teams):
    for route, prefix in ROUTES.items():
        seen = {name: api.uids(route, headers) for name, headers in teams.items()}
        groups = {name: {uid.rsplit("-", 1)[1] for uid in uids} for name, uids in seen.items()}
        assert groups == {
            "red": {"red"}, "blue": {"blue"}, "both": {"red", "blue"}, "nobody": set(),
            "admin": {"red", "blue"},
        }, route
        # and the item itself, not only something of its group
        assert f"{prefix}-red" in seen["red"] and f"{prefix}-blue" in seen["admin"], route


def test_items_show_their_channels(api, teams):
    api.store([store_event("b-m-p-s-m", '<contact callsign="Shared"/>', uid="M-shared")],
              ["Red", "Blue"])
    body = api.get("/api/markers", teams["blue"], uid="M-shared").json
    assert body["total"] == 1
    assert body["results"][0]["groups"] == ["Blue", "Red"]
    assert api.get("/api/euds", teams["red"]).json["results"][0]["groups"] == ["Red"]


def test_anonymous_channel_items_are_seen_by_users_without_channels(api, teams):
    api.store([store_event("b-m-p-s-m", '<contact callsign="Anon"/>', uid="M-anon")],
              ["__ANON__"])
    assert api.uids("/api/markers", teams["nobody"]) == ["M-anon"]
    assert "M-anon" not in api.uids("/api/markers", teams["red"])


def test_rows_without_channels_are_for_admins_only(api, teams):
    # Rows stored before schema version 3 have none.
    Marker.update(groups=None).where(Marker.uid == "M-red").execute()
    assert api.uids("/api/markers", teams["red"]) == []
    assert "M-red" in api.uids("/api/markers", teams["admin"])


def test_listings_need_a_token(api):
    for route in [*ROUTES, "/api/packages"]:
        assert_json_error(api.client.simulate_get(route), 401, "Bearer")


# -- what each listing shows and filters --------------------------------------------------------


def test_points_filter_by_uid_callsign_time_type_and_bbox(api, teams):
    admin = teams["admin"]
    api.store([
        at(store_event("a-f-G-U-C", '<contact callsign="Mover" endpoint="*:-1:stcp"/>',
                       uid="MOVER", point='<point lat="10" lon="179.5" hae="1" ce="1" le="1"/>'),
           "2024-05-01T13:00:00Z"),
        at(store_event("a-f-G-U-C", '<contact callsign="Mover" endpoint="*:-1:stcp"/>',
                       uid="MOVER", point='<point lat="11" lon="-179.5" hae="1" ce="1" le="1"/>'),
           "2024-05-01T14:00:00Z"),
    ], ["Red"])
    body = api.get("/api/points", admin, uid="MOVER").json
    assert body["total"] == 2
    first = body["results"][0]  # newest first
    assert (first["lat"], first["lon"], first["time"]) == (11.0, -179.5,
                                                          "2024-05-01T14:00:00.000Z")
    assert api.uids("/api/points", admin, callsign="mov") == ["MOVER", "MOVER"]
    assert api.get("/api/points", admin, uid="MOVER",
                   since="2024-05-01T13:30:00Z").json["total"] == 1
    assert api.get("/api/points", admin, uid="MOVER",
                   until="2024-05-01T13:30:00+00:00").json["total"] == 1
    # A box across the antimeridian holds both; one on either side holds one.
    assert api.get("/api/points", admin, bbox="179,0,-179,20").json["total"] == 2
    assert api.get("/api/points", admin, bbox="170,0,180,20").json["total"] == 1
    assert api.get("/api/points", admin, type="a-f-G").json["total"] == 4  # 2 EUDs + MOVER x2
    assert api.get("/api/points", admin, type="a-f-G-U-C-I").json["total"] == 0


def test_cot_log_type_prefix_is_on_whole_atoms_and_xml_is_optional(api, teams):
    admin = teams["admin"]
    api.store([store_event("b-m-pq", "", uid="NOT-A-B-M-P")], ["Red"])
    assert set(api.uids("/api/cot", admin, type="b-m-p")) == {"M-red", "M-blue"}
    assert api.uids("/api/cot", admin, type="b-m-pq") == ["NOT-A-B-M-P"]
    assert api.uids("/api/cot", admin, type="B-M-P") == []  # CoT types are case-sensitive
    plain = api.get("/api/cot", admin, uid="M-red").json["results"][0]
    assert "xml" not in plain and plain["type"] == "b-m-p-s-m"
    with_xml = api.get("/api/cot", admin, uid="M-red", xml="true").json["results"][0]
    assert with_xml["xml"].startswith("<event") and 'uid="M-red"' in with_xml["xml"]


def test_chat_filters_by_room_id_or_name_and_sender(api, teams):
    admin = teams["admin"]
    assert api.uids("/api/chat", admin, room="room-red") == ["CHAT-red"]
    assert api.uids("/api/chat", admin, chatroom="Room blue") == ["CHAT-blue"]
    assert api.uids("/api/chat", admin, sender="EUD-blue") == ["CHAT-blue"]
    # Same time: the later stored comes first (newest first, then by row).
    assert api.uids("/api/chat", admin, sender="eud-") == ["CHAT-blue", "CHAT-red"]
    message = api.get("/api/chat", admin, room="room-red").json["results"][0]
    assert (message["room"], message["room_id"], message["text"]) == (
        "Room red", "room-red", "hello red")


def test_alerts_active_filter(api, teams):
    admin = teams["admin"]
    api.store([at(store_event("b-a-o-can", '<emergency cancel="true"/>', uid="ALERT-red"),
                  "2024-05-01T12:05:00Z")], ["Red"])
    assert api.uids("/api/alerts", admin, active="true") == ["ALERT-blue"]
    cancelled = api.get("/api/alerts", admin, active="false").json["results"]
    assert [(a["uid"], a["active"]) for a in cancelled] == [("ALERT-red", False)]
    assert cancelled[0]["cancel_time"] == "2024-05-01T12:05:00.000Z"
    assert api.get("/api/alerts", admin, alert_type="911 Alert").json["total"] == 2


def test_casevac_and_map_items_show_their_fields(api, teams):
    red = teams["red"]
    casevac = api.get("/api/casevac", red).json["results"][0]
    assert (casevac["urgent"], casevac["zmist"][0]["title"]) == (1, "Z1")
    line = api.get("/api/rb-lines", red).json["results"][0]
    assert (line["range"], line["bearing"]) == (1000.0, 90.0)
    video = api.get("/api/video", red).json["results"][0]
    assert video["url"] == "rtsp://cam/red"
    marker = api.get("/api/markers", red, callsign="marker RED").json["results"][0]
    assert (marker["uid"], marker["type"], marker["lat"]) == ("M-red", "b-m-p-s-m", 48.8566)


def test_pages_cover_every_row_once(api, teams):
    admin = teams["admin"]
    api.store([store_event("b-m-p-s-m", f'<contact callsign="P{i}"/>', uid=f"P-{i}")
               for i in range(5)], ["Red"])
    seen: list[str] = []
    for page in (1, 2, 3, 4):
        body = api.get("/api/markers", admin, page=str(page), per_page="2").json
        assert body["total"] == 7 and body["page"] == page and body["per_page"] == 2
        seen += [item["uid"] for item in body["results"]]
    assert sorted(seen) == sorted(["M-red", "M-blue", *(f"P-{i}" for i in range(5))])
    assert len(seen) == 7


def test_packages_are_listed_to_every_signed_in_caller(api, teams):
    DataPackage.create(hash="a" * 64, filename="plan.zip", name="Plan", size=10,
                       submission_time="2024-05-01 12:00:00.000000", keywords='["ops"]')
    DataPackage.create(hash="b" * 64, filename="other.zip", size=5,
                       submission_time="2024-05-02 12:00:00.000000")
    body = api.get("/api/packages", teams["nobody"]).json
    assert [p["hash"] for p in body["results"]] == ["b" * 64, "a" * 64]
    named = api.get("/api/packages", teams["red"], name="PLAN").json["results"]
    assert [(p["filename"], p["keywords"]) for p in named] == [("plan.zip", ["ops"])]
    assert api.get("/api/packages", teams["red"], since="2024-05-02").json["total"] == 1


@pytest.mark.parametrize(("route", "params", "field"), [
    ("/api/points", {"since": "yesterday"}, "since"),
    ("/api/points", {"until": "2024-13-01"}, "until"),
    ("/api/points", {"since": "2024-05-02", "until": "2024-05-01"}, "since"),
    ("/api/points", {"bbox": "1,2,3"}, "bbox"),
    ("/api/points", {"bbox": "a,b,c,d"}, "bbox"),
    ("/api/points", {"bbox": "0,50,10,40"}, "bbox"),
    ("/api/markers", {"bbox": "-200,0,10,10"}, "bbox"),
    ("/api/markers", {"bbox": "0,0,nan,10"}, "bbox"),
    ("/api/cot", {"type": "--"}, "type"),
    ("/api/cot", {"xml": "maybe"}, "xml"),
    ("/api/cot", {"per_page": "501"}, "per_page"),
    ("/api/chat", {"page": "0"}, "page"),
    ("/api/alerts", {"active": "sometimes"}, "active"),
    ("/api/casevac", {"callsign": "a\x00b"}, "callsign"),
    ("/api/video", {"per_page": "x"}, "per_page"),
    ("/api/packages", {"since": "soon"}, "since"),
    ("/api/rb-lines", {"uid": "x" * 2000}, "uid"),
])
def test_bad_parameters_are_400s_naming_them(sqlite_api, route, params, field):
    headers = sqlite_api.user("admin", admin=True)
    assert_json_error(sqlite_api.client.simulate_get(route, params=params, headers=headers),
                      400, field)
