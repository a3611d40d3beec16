"""Logging in and out of the admin API, and managing its users and groups.

``POST /api/login`` trades a user name and password for a bearer token (:mod:`otszmq.api.auth`);
``POST /api/logout`` revokes it; ``GET /api/me`` says who the token stands for. Users and groups
(``/api/users``, ``/api/groups``) are for administrators only.

Roles: the API says ``admin`` or ``user``; the database keeps TAK's ``administrator`` or
``user`` (:data:`otszmq.users.ROLES`). The changes themselves live in :mod:`otszmq.users`, shared
with ``otszmq user add``.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn, cast
from urllib.parse import quote

import falcon
from peewee import Database, fn

from otszmq.api.auth import REALM, admin_only, issue_token, revoke_token
from otszmq.api.body import Fields, json_object
from otszmq.api.errors import bad_request, not_found
from otszmq.api.marti import tak_time
from otszmq.api.params import bool_param, page_params, text_param
from otszmq.api.scope import caller_of
from otszmq.errors import OtszmqError
from otszmq.inject import Injector
from otszmq.pki.policy import validate_name
from otszmq.store.database import write_transaction
from otszmq.store.models import Group, GroupMembership, User
from otszmq.users import (
    ADMIN_ROLE,
    UserConflict,
    UserError,
    UserNotFound,
    add_group,
    add_user,
    channels_for,
    clean_group_names,
    delete_group,
    delete_user,
    hash_password,
    memberships,
    update_user,
    verify_password,
)

log = logging.getLogger(__name__)

API_ROLES: Final = ("admin", "user")
LOGIN_REFUSED: Final = "wrong user name or password"


def api_role(stored: str) -> str:
    return "admin" if stored == ADMIN_ROLE else "user"


def _refuse(exc: UserError, field: str) -> NoReturn:
    """The HTTP error of a refused change: 404, 409, or 400 naming ``field``."""
    if isinstance(exc, UserNotFound):
        not_found(str(exc))
    if isinstance(exc, UserConflict):
        raise falcon.HTTPConflict(title="Conflict", description=str(exc)) from exc
    bad_request(field, str(exc))


def _regroup(injector: Injector | None, usernames: Iterable[str]) -> None:
    """Apply changed channels to the users' connected streams at once (as ATAK's own channel
    toggles do); without a node (``None``) they apply at the next connect."""
    if injector is None:
        return
    for username in usernames:
        channels = channels_for(username)
        if channels is None:  # inactive: nothing of it is live to regroup
            continue
        if not injector.regroup(username, channels.groups_in, sorted(channels.groups_out)):
            log.warning("channels of %s saved but not applied live (ingest not accepting); "
                        "they apply on the next connect", username)


def _disconnect(injector: Injector | None, username: str, reason: str) -> None:
    """Close the user's live streams: its tokens already stopped working, and its next TLS
    handshake or stream login is refused, but an open stream would otherwise go on."""
    if injector is None:
        return
    if not injector.disconnect(username, reason):
        log.warning("user %s %s, but its live streams were not closed (ingest not accepting)",
                    username, reason)


def _group_field(fields: Fields, name: str) -> list[str] | None:
    """A list of group names, checked here so that a bad one is reported under its field."""
    names = fields.names(name)
    if names is not None:
        try:
            clean_group_names(names)
        except UserError as exc:
            bad_request(name, str(exc))
    return names


# -- tokens -----------------------------------------------------------------------------------


class Login:
    """``{"username", "password"}`` → ``{"token", "expires", "username", "role"}``.

    An unknown user, an inactive one, one without a password and a wrong password all get the
    same 401, in about the same time (argon2 runs against a decoy hash when there is no real
    one), so the answer does not tell which user names exist.
    """

    def __init__(self, database: Database, lifetime: timedelta) -> None:
        self._database = database
        self._lifetime = lifetime
        # PERF: made at the first refusal, not with the app: an argon2 hash takes ~0.1-0.5 s.
        self._decoy: str | None = None
        # NOTE: next() on a count is atomic under the GIL; gunicorn's threads share it.
        self._refused = itertools.count(1)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = Fields(json_object(req))
        username = fields.text("username", required=True)
        password = fields.text("password", required=True)
        fields.done()
        assert username is not None and password is not None  # required=True
        user = User.get_or_none(User.username == username)
        if user is not None and user.password_hash:
            stored = str(user.password_hash)
        else:
            if self._decoy is None:
                self._decoy = hash_password(secrets.token_urlsafe(16))
            stored = self._decoy
        matches = verify_password(stored, password)
        if user is None or not user.password_hash or not user.active or not matches:
            log.warning("api login refused for %r from %s (%d refused by this worker)",
                        username[:64], req.remote_addr, next(self._refused))
            raise falcon.HTTPUnauthorized(
                title="Unauthorized", description=LOGIN_REFUSED, challenges=[REALM])
        now = datetime.now(UTC)
        with write_transaction(self._database):
            token, expires = issue_token(user, self._lifetime, now)
            User.update(last_login=now).where(User.username == user.username).execute()
        log.info("api login: %s from %s", username, req.remote_addr)
        resp.set_header("Cache-Control", "no-store")  # RFC 6749 §5.1: tokens are not cached
        resp.media = {"token": token, "expires": tak_time(expires), "username": user.username,
                      "role": api_role(user.role)}


class Logout:
    """Revokes the token the request came with."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        hashed = getattr(req.context, "token_hash", None)
        if hashed is None:  # a client certificate on the HTTPS port: nothing to revoke
            bad_request("Authorization", "this request carries no bearer token to revoke")
        revoke_token(hashed)
        resp.media = {"status": "logged out"}


class Me:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = caller_of(req)
        resp.media = {
            "username": caller.name, "role": "admin" if caller.admin else "user",
            "groups_in": sorted(caller.groups_in), "groups_out": sorted(caller.groups_out),
            "via": caller.via,
        }


# -- users ------------------------------------------------------------------------------------


def user_item(user: User, groups: dict[str, list[str]] | None) -> dict[str, Any]:
    groups = groups or {"IN": [], "OUT": []}
    return {
        "username": user.username, "role": api_role(user.role), "active": user.active,
        "has_password": bool(user.password_hash), "created_at": tak_time(user.created_at),
        "last_login": tak_time(user.last_login),
        "groups_in": groups["IN"], "groups_out": groups["OUT"],
    }


def _one_user(username: str) -> dict[str, Any]:
    user = User.get_or_none(User.username == username)
    if user is None:
        not_found(f"no user {username!r}")
    return user_item(user, memberships([user]).get(username))


@falcon.before(admin_only)
class UserList:
    """GET: ``page``, ``per_page``, ``username`` (substring, any case), ``role``, ``active``.
    POST: ``{"username", "password"?, "role"?, "groups_in"?, "groups_out"?}``; no password
    makes a certificate-only user."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page, per_page = page_params(req)
        query = User.select()
        username = text_param(req, "username")
        if username:
            query = query.where(fn.LOWER(User.username).contains(username.lower()))
        role = text_param(req, "role")
        if role is not None:
            if role not in API_ROLES:
                bad_request("role", f"must be one of {', '.join(API_ROLES)}, got {role!r}")
            query = query.where(User.role == (ADMIN_ROLE if role == "admin" else "user"))
        if req.get_param("active") not in (None, ""):
            query = query.where(User.active == bool_param(req, "active", True))
        total = query.count()
        users = list(query.order_by(User.username).paginate(page, per_page))
        groups = memberships(users)
        resp.media = {
            "results": [user_item(user, groups.get(str(user.username))) for user in users],
            "total": total, "page": page, "per_page": per_page,
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = Fields(json_object(req))
        username = fields.text("username", required=True)
        assert username is not None  # required=True
        try:
            validate_name(username)
        except OtszmqError as exc:
            bad_request("username", str(exc))
        password = fields.text("password")
        role = fields.choice("role", API_ROLES) or "user"
        groups_in = _group_field(fields, "groups_in") or []
        groups_out = _group_field(fields, "groups_out") or []
        fields.done()
        try:
            add_user(self._database, username, password=password, admin=role == "admin",
                     groups_in=groups_in, groups_out=groups_out)
        except UserError as exc:
            _refuse(exc, "username")
        log.info("api: %s added user %s (%s)", caller_of(req).name, username, role)
        resp.status = falcon.HTTP_201
        resp.location = f"/api/users/{quote(username, safe='')}"
        resp.media = _one_user(username)


@falcon.before(admin_only)
class UserItem:
    """GET, PATCH (``password``, ``role``, ``active``, ``groups_in``, ``groups_out``; each
    optional, lists replace; new groups apply to the user's live streams), DELETE."""

    def __init__(self, database: Database, injector: Injector | None) -> None:
        self._database = database
        self._injector = injector

    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        resp.media = _one_user(username)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        fields = Fields(json_object(req))
        password = fields.text("password")
        role = fields.choice("role", API_ROLES)
        active = fields.flag("active")
        groups_in = _group_field(fields, "groups_in")
        groups_out = _group_field(fields, "groups_out")
        fields.done()
        if (password, role, active, groups_in, groups_out) == (None,) * 5:
            bad_request("body", "names nothing to change (password, role, active, groups_in, "
                                "groups_out)")
        try:
            update_user(self._database, username, password=password,
                        admin=None if role is None else role == "admin", active=active,
                        groups_in=groups_in, groups_out=groups_out)
        except UserError as exc:
            _refuse(exc, "body")
        log.info("api: %s changed user %s", caller_of(req).name, username)
        if active is False:
            _disconnect(self._injector, username, "deactivated")
        elif groups_in is not None or groups_out is not None:
            _regroup(self._injector, [username])
        resp.media = _one_user(username)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        try:
            delete_user(self._database, username)
        except UserError as exc:
            _refuse(exc, "username")
        log.info("api: %s deleted user %s", caller_of(req).name, username)
        _disconnect(self._injector, username, "deleted")
        resp.status = falcon.HTTP_204


# -- groups -----------------------------------------------------------------------------------


def _member_counts(groups: list[Group]) -> dict[tuple[str, str], int]:
    """Members of each group by (group name, direction); one query for all."""
    if not groups:
        return {}
    query = (GroupMembership
             .select(Group.name, GroupMembership.direction, fn.COUNT(GroupMembership.user))
             .join(Group).where(GroupMembership.group.in_(groups))
             .group_by(Group.name, GroupMembership.direction).tuples())
    # NOTE: peewee's stubs type a tuples() query as rows of the model.
    rows = cast(Iterable[tuple[str, str, int]], query)
    return {(str(name), str(direction)): int(count) for name, direction, count in rows}


def group_item(group: Group, counts: dict[tuple[str, str], int]) -> dict[str, Any]:
    name = str(group.name)
    return {
        "name": name, "description": group.description,
        "created_at": tak_time(group.created_at),
        "members_in": counts.get((name, "IN"), 0),
        "members_out": counts.get((name, "OUT"), 0),
    }


@falcon.before(admin_only)
class GroupList:
    """GET: ``page``, ``per_page``, ``name`` (substring, any case), with member counts.
    POST: ``{"name", "description"?}``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page, per_page = page_params(req)
        query = Group.select()
        name = text_param(req, "name")
        if name:
            query = query.where(fn.LOWER(Group.name).contains(name.lower()))
        total = query.count()
        groups = list(query.order_by(Group.name).paginate(page, per_page))
        counts = _member_counts(groups)
        resp.media = {
            "results": [group_item(group, counts) for group in groups],
            "total": total, "page": page, "per_page": per_page,
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = Fields(json_object(req))
        name = fields.text("name", required=True)
        description = fields.text("description")
        fields.done()
        assert name is not None  # required=True
        try:
            group = add_group(self._database, name, description)
        except UserError as exc:
            _refuse(exc, "name")
        log.info("api: %s added group %s", caller_of(req).name, group.name)
        resp.status = falcon.HTTP_201
        resp.location = f"/api/groups/{quote(str(group.name), safe='')}"
        resp.media = group_item(group, {})


@falcon.before(admin_only)
class GroupItem:
    """DELETE: the group goes, and with it every membership (applied to live streams)."""

    def __init__(self, database: Database, injector: Injector | None) -> None:
        self._database = database
        self._injector = injector

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        members = {str(row.user.username) for row in GroupMembership.select(
            GroupMembership, User).join(User).switch(GroupMembership).join(Group).where(
            Group.name == name)}
        try:
            delete_group(self._database, name)
        except UserError as exc:
            _refuse(exc, "name")
        log.info("api: %s deleted group %s (%d members)", caller_of(req).name, name,
                 len(members))
        _regroup(self._injector, sorted(members))
        resp.status = falcon.HTTP_204
