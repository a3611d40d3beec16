"""Tokens and roles of the admin API, in-process (falcon.testing) over SQLite and PostgreSQL:
login, the bearer-token middleware, logout, expiry, 403 for non-admins, and the users and groups
routes, with bad input refused by a 400 naming the field and nothing stored."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest
from peewee import Database

from otszmq.api import errors
from otszmq.api.accounts import Logout, Me
from otszmq.api.app import ApiConfig, ApiDeps, create_app
from otszmq.api.auth import PUBLIC_PATHS, TokenAuth
from otszmq.api.caller import ANONYMOUS_CALLER, Caller
from otszmq.config import load_settings
from otszmq.errors import ConfigError
from otszmq.store.migrations import LATEST, MIGRATIONS, current_version, migrate
from otszmq.store.models import ApiToken, Group, GroupMembership, User
from tests.api_support import PASSWORD, bearer, login, make_user, use_cheap_hashing
from tests.store_support import BACKENDS, database_url, migrated

TOKEN_HOURS = 2.0
WRONG_LOGIN = "wrong user name or password"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_cheap_hashing(monkeypatch)


@dataclass
class Api:
    client: falcon.testing.TestClient
    database: Database


@pytest.fixture(params=BACKENDS)
def api(request, tmp_path: Path) -> Iterator[Api]:
    with database_url(request.param, tmp_path) as url, migrated(url) as database:
        config = ApiConfig(data_dir=tmp_path, server_version="otszmq test",
                           token_hours=TOKEN_HOURS)
        yield Api(falcon.testing.TestClient(create_app(config, ApiDeps(database))), database)


@pytest.fixture
def admin(api: Api) -> dict[str, str]:
    make_user(api.database, "root", admin=True)
    return login(api.client, "root")


@pytest.fixture
def user(api: Api) -> dict[str, str]:
    make_user(api.database, "alice", groups_in=["Red"], groups_out=["Red", "Blue"])
    return login(api.client, "alice")


def assert_error(result: falcon.testing.Result, status: int, detail_part: str) -> None:
    assert result.status_code == status, result.text
    assert set(result.json) == {"error", "detail"}, result.json
    assert detail_part in result.json["detail"], result.json


def assert_unauthorized(result: falcon.testing.Result, detail_part: str) -> None:
    assert_error(result, 401, detail_part)
    assert result.headers["www-authenticate"].startswith("Bearer"), result.headers


def post_json(api: Api, path: str, body: Any, headers: dict[str, str] | None = None
              ) -> falcon.testing.Result:
    return api.client.simulate_post(path, json=body, headers=headers)


# -- login and tokens -------------------------------------------------------------------------


def test_login_gives_a_token_that_opens_the_api(api: Api):
    make_user(api.database, "alice", groups_in=["Red"], groups_out=["Red", "Blue"])
    before = datetime.now(UTC)
    result = post_json(api, "/api/login", {"username": "alice", "password": PASSWORD})
    assert result.status_code == 200, result.text
    body = result.json
    assert set(body) == {"token", "expires", "username", "role"}
    assert (body["username"], body["role"]) == ("alice", "user")
    assert result.headers["cache-control"] == "no-store"
    expires = datetime.fromisoformat(body["expires"].replace("Z", "+00:00"))
    assert timedelta(hours=TOKEN_HOURS) - timedelta(seconds=5) <= expires - before
    assert expires - before <= timedelta(hours=TOKEN_HOURS) + timedelta(seconds=5)
    me = api.client.simulate_get("/api/me", headers=bearer(body["token"]))
    assert me.json == {"username": "alice", "role": "user", "groups_in": ["Red"],
                       "groups_out": ["Blue", "Red"], "via": "token"}
    status = api.client.simulate_get("/api/status", params={"counters": "false"},
                                     headers=bearer(body["token"]))
    assert status.status_code == 200 and status.json["status"] == "ok"
    assert User.get(User.username == "alice").last_login is not None


def test_only_the_tokens_hash_is_stored(api: Api):
    make_user(api.database, "alice")
    token = post_json(api, "/api/login", {"username": "alice", "password": PASSWORD}).json["token"]
    row = ApiToken.get()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.token_hash, str(row.user)}
    assert row.expires_at > row.created_at


@pytest.mark.parametrize("who", ["wrong password", "unknown user", "inactive user",
                                 "certificate-only user"])
def test_refused_logins_look_alike_and_store_nothing(api: Api, who: str):
    make_user(api.database, "alice")
    make_user(api.database, "gone")
    User.update(active=False).where(User.username == "gone").execute()
    make_user(api.database, "bob", password="")  # no password: certificate only
    username, password = {
        "wrong password": ("alice", "not the password"),
        "unknown user": ("mallory", PASSWORD),
        "inactive user": ("gone", PASSWORD),
        "certificate-only user": ("bob", PASSWORD),
    }[who]
    result = post_json(api, "/api/login", {"username": username, "password": password})
    assert_unauthorized(result, WRONG_LOGIN)
    assert result.json == {"error": "Unauthorized", "detail": WRONG_LOGIN}
    assert ApiToken.select().count() == 0


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"", "body"),
    (b'["alice", "pw"]', "body"),
    (b'{"password": "pw"}', "username"),
    (b'{"username": "alice"}', "password"),
    (b'{"username": 7, "password": "pw"}', "username"),
    (b'{"username": "alice", "password": ["pw"]}', "password"),
    (b'{"username": "alice", "password": "pw", "remember": true}', "remember"),
])
def test_malformed_login_is_a_400_naming_the_field(api: Api, body: bytes, field: str):
    make_user(api.database, "alice")
    result = api.client.simulate_post("/api/login", body=body,
                                      headers={"Content-Type": "application/json"})
    assert_error(result, 400, field)
    assert ApiToken.select().count() == 0


def test_oversized_login_body_is_a_413(api: Api):
    result = api.client.simulate_post(
        "/api/login", body=b'{"username": "' + b"a" * 70_000 + b'", "password": "x"}')
    assert_error(result, 413, "body")


@pytest.mark.parametrize(("headers", "detail"), [
    ({}, "Authorization: Bearer"),
    ({"Authorization": "Basic YWxpY2U6cHc="}, "Bearer <token>"),
    ({"Authorization": "Bearer"}, "Bearer <token>"),
    ({"Authorization": "Bearer not/a token!"}, "malformed"),
    ({"Authorization": "Bearer " + "x" * 500}, "malformed"),
    ({"Authorization": "Bearer " + "A" * 43}, "invalid or revoked"),
])
def test_missing_malformed_and_unknown_tokens_are_401(api: Api, headers, detail):
    for path in ("/api/status", "/api/euds", "/api/me", "/api/users", "/api/no-such-route"):
        result = api.client.simulate_get(path, headers=headers)
        assert_unauthorized(result, detail)
    challenge = api.client.simulate_get("/api/me", headers=headers).headers["www-authenticate"]
    # RFC 6750: a request without credentials gets the bare challenge, a bad token an error.
    assert ("invalid_token" in challenge) == bool(headers)


def test_an_expired_token_is_401_and_deleted(api: Api, user: dict[str, str]):
    assert api.client.simulate_get("/api/me", headers=user).status_code == 200
    ApiToken.update(expires_at=datetime.now(UTC) - timedelta(seconds=1)).execute()
    assert_unauthorized(api.client.simulate_get("/api/me", headers=user), "expired")
    assert ApiToken.select().count() == 0
    assert_unauthorized(api.client.simulate_get("/api/me", headers=user), "invalid or revoked")


def test_a_login_clears_expired_tokens(api: Api, user: dict[str, str]):
    ApiToken.update(expires_at=datetime.now(UTC) - timedelta(hours=1)).execute()
    login(api.client, "alice")
    assert ApiToken.select().count() == 1
    assert ApiToken.get().expires_at > datetime.now(UTC)


def test_logout_revokes_only_the_presented_token(api: Api, user: dict[str, str]):
    other = login(api.client, "alice")
    result = api.client.simulate_post("/api/logout", headers=user)
    assert result.status_code == 200 and result.json == {"status": "logged out"}
    assert_unauthorized(api.client.simulate_get("/api/me", headers=user), "invalid or revoked")
    assert_unauthorized(api.client.simulate_post("/api/logout", headers=user), "revoked")
    assert api.client.simulate_get("/api/me", headers=other).status_code == 200


def test_a_deactivated_users_token_stops_working(api: Api, user: dict[str, str]):
    User.update(active=False).where(User.username == "alice").execute()
    assert_unauthorized(api.client.simulate_get("/api/me", headers=user), "invalid or revoked")


def test_last_used_is_recorded(api: Api, user: dict[str, str]):
    assert ApiToken.get().last_used is None
    api.client.simulate_get("/api/me", headers=user)
    assert ApiToken.get().last_used is not None


def test_public_routes_need_no_token(api: Api):
    assert api.client.simulate_get("/api/health").json == {"status": "ok"}
    assert api.client.simulate_get("/api/openapi.json").status_code == 200
    assert api.client.simulate_get("/api/health/").status_code == 200
    assert api.client.simulate_get("/Marti/api/version").text == "otszmq test"


# -- roles ------------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/api/users"), ("POST", "/api/users"), ("GET", "/api/users/root"),
    ("PATCH", "/api/users/root"), ("DELETE", "/api/users/root"), ("GET", "/api/groups"),
    ("POST", "/api/groups"), ("DELETE", "/api/groups/Red"),
]


def test_users_get_403_on_admin_routes_and_change_nothing(api: Api, user, admin):
    users, groups = User.select().count(), Group.select().count()
    for method, path in ADMIN_ROUTES:
        result = api.client.simulate_request(method, path, headers=user,
                                             json={"username": "x", "name": "x"})
        assert_error(result, 403, "administrators")
    assert (User.select().count(), Group.select().count()) == (users, groups)
    assert api.client.simulate_get("/api/users", headers=admin).status_code == 200
    assert api.client.simulate_get("/api/groups", headers=admin).status_code == 200


# -- users ------------------------------------------------------------------------------------


def test_user_round_trip(api: Api, admin: dict[str, str]):
    created = post_json(api, "/api/users", {
        "username": "bravo", "password": "first password", "role": "user",
        "groups_in": ["Red"], "groups_out": ["Red", "Blue"]}, admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/users/bravo"
    item = created.json
    assert {k: item[k] for k in ("username", "role", "active", "has_password", "groups_in",
                                 "groups_out")} == {
        "username": "bravo", "role": "user", "active": True, "has_password": True,
        "groups_in": ["Red"], "groups_out": ["Blue", "Red"]}
    assert api.client.simulate_get("/api/users/bravo", headers=admin).json == item
    bravo = login(api.client, "bravo", "first password")

    changed = api.client.simulate_patch("/api/users/bravo", headers=admin, json={
        "role": "admin", "groups_in": ["Blue"], "groups_out": []})
    assert changed.status_code == 200, changed.text
    assert changed.json["role"] == "admin"
    assert (changed.json["groups_in"], changed.json["groups_out"]) == (["Blue"], [])
    # The role is read per request: bravo's token is an admin's now.
    assert api.client.simulate_get("/api/users", headers=bravo).status_code == 200

    new_password = api.client.simulate_patch("/api/users/bravo", headers=admin,
                                             json={"password": "second password"})
    assert new_password.status_code == 200
    assert_unauthorized(api.client.simulate_get("/api/me", headers=bravo), "revoked")
    assert post_json(api, "/api/login", {"username": "bravo", "password": "first password"}
                     ).status_code == 401
    bravo = login(api.client, "bravo", "second password")

    off = api.client.simulate_patch("/api/users/bravo", headers=admin, json={"active": False})
    assert off.json["active"] is False
    assert_unauthorized(api.client.simulate_get("/api/me", headers=bravo), "revoked")
    assert post_json(api, "/api/login", {"username": "bravo", "password": "second password"}
                     ).status_code == 401

    deleted = api.client.simulate_delete("/api/users/bravo", headers=admin)
    assert deleted.status_code == 204 and not deleted.content
    assert_error(api.client.simulate_get("/api/users/bravo", headers=admin), 404, "bravo")
    assert_error(api.client.simulate_delete("/api/users/bravo", headers=admin), 404, "bravo")
    assert User.select().where(User.username == "bravo").count() == 0
    assert GroupMembership.select().count() == 0


def test_a_user_without_password_is_certificate_only(api: Api, admin: dict[str, str]):
    created = post_json(api, "/api/users", {"username": "eud-7", "groups_in": ["Red"]}, admin)
    assert created.status_code == 201
    assert created.json["has_password"] is False and created.json["role"] == "user"


@pytest.mark.parametrize(("body", "field"), [
    ({"username": 5}, "username"),
    ({"password": "pw"}, "username"),
    ({"username": "../etc"}, "username"),
    ({"username": "bravo", "role": "root"}, "role"),
    ({"username": "bravo", "role": True}, "role"),
    ({"username": "bravo", "password": 1234}, "password"),
    ({"username": "bravo", "groups_in": "Red"}, "groups_in"),
    ({"username": "bravo", "groups_out": ["Red", 3]}, "groups_out"),
    ({"username": "bravo", "groups_in": ["bad\u0000group"]}, "groups_in"),
    ({"username": "bravo", "colour": "red"}, "colour"),
    ("bravo", "body"),
])
def test_bad_new_users_are_400_and_store_nothing(api: Api, admin: dict[str, str], body, field):
    users, groups = User.select().count(), Group.select().count()
    assert_error(post_json(api, "/api/users", body, admin), 400, field)
    assert (User.select().count(), Group.select().count()) == (users, groups)


def test_malformed_json_is_400_and_stores_nothing(api: Api, admin: dict[str, str]):
    result = api.client.simulate_post("/api/users", body=b'{"username": "bravo"',
                                      headers=admin)
    assert_error(result, 400, "body")
    assert User.select().where(User.username == "bravo").count() == 0


@pytest.mark.parametrize(("body", "field"), [
    ({}, "nothing to change"),
    ({"active": "no"}, "active"),
    ({"role": "superuser"}, "role"),
    ({"groups_in": [1]}, "groups_in"),
    ({"password": ""}, "password"),
    ({"username": "renamed"}, "username"),
])
def test_bad_changes_are_400_and_change_nothing(api: Api, admin, body, field):
    make_user(api.database, "bravo", groups_in=["Red"])
    before = api.client.simulate_get("/api/users/bravo", headers=admin).json
    result = api.client.simulate_patch("/api/users/bravo", json=body, headers=admin)
    assert_error(result, 400, field)
    assert api.client.simulate_get("/api/users/bravo", headers=admin).json == before


def test_duplicate_user_is_409(api: Api, admin: dict[str, str]):
    assert post_json(api, "/api/users", {"username": "bravo"}, admin).status_code == 201
    assert_error(post_json(api, "/api/users", {"username": "bravo"}, admin), 409, "exists")
    assert_error(api.client.simulate_patch("/api/users/nobody", json={"active": True},
                                           headers=admin), 404, "nobody")


def test_the_last_active_admin_stays(api: Api, admin: dict[str, str]):
    for change in ({"role": "user"}, {"active": False}):
        result = api.client.simulate_patch("/api/users/root", json=change, headers=admin)
        assert_error(result, 409, "last active administrator")
    assert_error(api.client.simulate_delete("/api/users/root", headers=admin), 409, "last")
    root = User.get(User.username == "root")
    assert (root.role, root.active) == ("administrator", True)
    make_user(api.database, "second", admin=True)
    result = api.client.simulate_patch("/api/users/root", json={"role": "user"}, headers=admin)
    assert result.status_code == 200 and result.json["role"] == "user"


def test_users_are_paginated_and_filtered(api: Api, admin: dict[str, str]):
    for index in range(5):
        make_user(api.database, f"user-{index}", groups_out=[f"G{index}"])
    User.update(active=False).where(User.username == "user-4").execute()
    page = api.client.simulate_get("/api/users", params={"page": "2", "per_page": "2"},
                                   headers=admin).json
    assert (page["total"], page["page"], page["per_page"]) == (6, 2, 2)
    assert [u["username"] for u in page["results"]] == ["user-1", "user-2"]
    assert page["results"][0]["groups_out"] == ["G1"]
    admins = api.client.simulate_get("/api/users", params={"role": "admin"}, headers=admin).json
    assert [u["username"] for u in admins["results"]] == ["root"]
    inactive = api.client.simulate_get("/api/users", params={"active": "false"},
                                       headers=admin).json
    assert [u["username"] for u in inactive["results"]] == ["user-4"]
    named = api.client.simulate_get("/api/users", params={"username": "USER-3"},
                                    headers=admin).json
    assert [u["username"] for u in named["results"]] == ["user-3"]
    for params, field in (({"role": "root"}, "role"), ({"active": "maybe"}, "active"),
                          ({"per_page": "501"}, "per_page")):
        assert_error(api.client.simulate_get("/api/users", params=params, headers=admin),
                     400, field)


# -- groups -----------------------------------------------------------------------------------


def test_group_round_trip(api: Api, admin: dict[str, str]):
    created = post_json(api, "/api/groups", {"name": "Red", "description": "red team"}, admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/groups/Red"
    assert {k: created.json[k] for k in ("name", "description", "members_in", "members_out")
            } == {"name": "Red", "description": "red team", "members_in": 0, "members_out": 0}
    assert_error(post_json(api, "/api/groups", {"name": "Red"}, admin), 409, "exists")
    make_user(api.database, "alice", groups_in=["Red"], groups_out=["Red", "Blue"])
    make_user(api.database, "bob", groups_out=["Red"])
    listed = api.client.simulate_get("/api/groups", headers=admin).json
    assert listed["total"] == 2
    assert [(g["name"], g["members_in"], g["members_out"]) for g in listed["results"]] == [
        ("Blue", 0, 1), ("Red", 1, 2)]
    named = api.client.simulate_get("/api/groups", params={"name": "bl"}, headers=admin).json
    assert [g["name"] for g in named["results"]] == ["Blue"]

    deleted = api.client.simulate_delete("/api/groups/Red", headers=admin)
    assert deleted.status_code == 204
    assert Group.select().where(Group.name == "Red").count() == 0
    alice = api.client.simulate_get("/api/users/alice", headers=admin).json
    assert (alice["groups_in"], alice["groups_out"]) == ([], ["Blue"])
    assert_error(api.client.simulate_delete("/api/groups/Red", headers=admin), 404, "Red")
    assert_error(api.client.simulate_delete("/api/groups/__ANON__", headers=admin), 409,
                 "__ANON__")


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"), ({"name": " "}, "name"), ({"name": 3}, "name"),
    ({"name": "x" * 101}, "name"), ({"name": "Red", "description": 5}, "description"),
    ({"name": "Red", "members": []}, "members"),
])
def test_bad_groups_are_400_and_store_nothing(api: Api, admin: dict[str, str], body, field):
    assert_error(post_json(api, "/api/groups", body, admin), 400, field)
    assert Group.select().count() == 0


# -- the middleware and the schema --------------------------------------------------------------


class CallerName:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"name": req.context.caller.name, "via": req.context.caller.via}


class SetCaller:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.caller = Caller("cert-user", False, frozenset(), frozenset(), "certificate")


@pytest.mark.parametrize(("middleware", "expected"), [
    ([TokenAuth()], {"name": ANONYMOUS_CALLER.name, "via": "anonymous"}),
    ([SetCaller(), TokenAuth()], {"name": "cert-user", "via": "certificate"}),
])
def test_other_paths_get_a_caller_and_keep_one_already_set(middleware, expected):
    app = falcon.App(middleware=middleware)
    app.add_route("/Marti/whoami", CallerName())
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/Marti/whoami").json == expected


def test_a_certificate_caller_keeps_its_identity_on_api_but_has_no_token_to_revoke():
    app = falcon.App(middleware=[SetCaller(), TokenAuth()])
    errors.install(app)
    app.add_route("/api/me", Me())
    app.add_route("/api/logout", Logout())
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/api/me").json["via"] == "certificate"
    assert_error(client.simulate_post("/api/logout"), 400, "no bearer token")


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_2_adds_the_token_table_to_a_version_1_database(backend, tmp_path):
    with database_url(backend, tmp_path) as url, migrated(url) as database:
        # Make it a version-1 database made before api_token existed.
        database.drop_tables([ApiToken])
        database.execute_sql("DELETE FROM schema_version WHERE version > 1")
        assert current_version(database) == 1
        assert migrate(database) == LATEST
        assert "api_token" in database.get_tables()
        assert [number for number, _, _ in MIGRATIONS][:2] == [1, 2]


def test_token_lifetime_setting():
    assert load_settings({}, env={}).api_token_hours == 24.0
    assert load_settings({"api_token_hours": "0.5"}, env={}).api_token_hours == 0.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match="api_token_hours"):
            load_settings({"api_token_hours": bad}, env={})


def test_openapi_marks_exactly_the_public_routes(api: Api):
    document = api.client.simulate_get("/api/openapi.json").json
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "a token from POST /api/login"}
    assert document["security"] == [{"bearerAuth": []}]
    public = {path for path, operations in document["paths"].items()
              for operation in operations.values() if operation.get("security") == []}
    assert public == PUBLIC_PATHS


class RecordingInjector:
    """Stands in for the node's inject path: records the regroups the API asks for."""

    def __init__(self) -> None:
        self.regroups: list[tuple[str, tuple[str, ...], list[str]]] = []

    def regroup(self, user: str, groups_in, groups_out) -> bool:
        self.regroups.append((user, tuple(groups_in), list(groups_out)))
        return True


def test_group_changes_reach_live_streams(tmp_path: Path):
    injector = RecordingInjector()
    with migrated(f"sqlite:///{tmp_path / 'api.db'}") as database:
        app = create_app(ApiConfig(data_dir=tmp_path),
                         ApiDeps(database, injector=injector))  # type: ignore[arg-type]
        client = falcon.testing.TestClient(app)
        make_user(database, "root", admin=True)
        make_user(database, "alice", groups_in=["Red"], groups_out=["Red"])
        admin = login(client, "root")
        assert client.simulate_patch("/api/users/alice", json={"active": True},
                                     headers=admin).status_code == 200
        assert injector.regroups == []  # no channel changed
        assert client.simulate_patch("/api/users/alice", json={"groups_out": ["Red", "Blue"]},
                                     headers=admin).status_code == 200
        assert injector.regroups == [("alice", ("Red",), ["Blue", "Red"])]
        assert client.simulate_delete("/api/groups/Red", headers=admin).status_code == 204
        assert injector.regroups[-1] == ("alice", ("__ANON__",), ["Blue"])
