"""Channels over Marti: ``/Marti/api/groups/all``, ``/groups/active`` and ``/groupCacheEnabled``.

A TAK channel is a group the user belongs to in a direction: IN (its events go there) or OUT
(it receives the group's events), each with an on/off toggle (``GroupMembership.enabled``).
ATAK's channel screen lists ``groups/all`` and sends the whole list back, toggled, with
``PUT groups/active``; the change takes effect on the user's live streams at once.

Shapes (TAK Server's GroupsApi and SubscriptionApi, as ATAK, iTAK and node-tak read them;
reference/peers.md §3): ``groups/all`` is an ApiResponse of type
``com.bbn.marti.remote.groups.Group`` whose ``data`` holds one entry per membership:
``{"name", "direction": "IN"|"OUT", "created": "yyyy-MM-dd", "type": "SYSTEM", "bitpos": int,
"active": bool[, "description"]}``. ATAK drops the *whole* list if one entry lacks ``name``,
``direction``, ``created``, ``type`` or ``bitpos``, so none is ever left out. The PUT body is a
JSON list of the same objects (ATAK sends ``created`` back as epoch milliseconds; only
``name``, ``direction`` and ``active`` are read), with ``?clientUid=`` naming the device.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import falcon

from otszmq.api.caller import Caller
from otszmq.api.errors import bad_request
from otszmq.api.marti import api_response
from otszmq.api.params import bool_param, text_param
from otszmq.api.scope import caller_of, require_user
from otszmq.api.xmlbody import read_limited
from otszmq.store.models import Group, GroupMembership, User
from otszmq.users import ANON_GROUP, channels_for

if TYPE_CHECKING:
    from otszmq.api.app import ApiConfig
    from otszmq.inject import Injector

log = logging.getLogger(__name__)

GROUP_TYPE: Final = "com.bbn.marti.remote.groups.Group"
ANON_BITPOS: Final = 2  # TAK Server's bit for __ANON__
DIRECTIONS: Final = ("IN", "OUT")
MAX_BODY: Final = 64 * 1024
MAX_ENTRIES: Final = 1000
MAX_GROUP_NAME: Final = 100  # otszmq.users refuses longer names


@dataclass(frozen=True)
class Channel:
    """One membership of the caller, as TAK lists it."""

    name: str
    direction: str
    active: bool
    created: datetime | None
    bitpos: int
    description: str | None

    def to_json(self) -> dict[str, Any]:
        created = (self.created or datetime.now(UTC)).astimezone(UTC)
        body: dict[str, Any] = {
            "name": self.name, "direction": self.direction,
            "created": created.strftime("%Y-%m-%d"), "type": "SYSTEM",
            "bitpos": self.bitpos, "active": self.active,
        }
        if self.description is not None:  # node-tak's schema takes a string or nothing
            body["description"] = self.description
        return body


def _bitpos(group: Group) -> int:
    """The group's bit in ATAK's group vectors: set by an admin, else one derived from the
    row id (past __ANON__'s 2), so that every entry has one."""
    if group.bitpos is not None:
        return int(group.bitpos)
    if group.name == ANON_GROUP:
        return ANON_BITPOS
    return 2 + int(group.get_id())  # type: ignore[no-untyped-call]  # peewee stubs


def _anonymous_channels() -> list[Channel]:
    """What a caller without memberships has: __ANON__ both ways, as TAK Server and OTS do."""
    group = Group.get_or_none(Group.name == ANON_GROUP)
    created = group.created_at if group is not None else None
    description = group.description if group is not None else None
    return [Channel(ANON_GROUP, direction, True, created, ANON_BITPOS, description)
            for direction in DIRECTIONS]


def channels_of(caller: Caller) -> list[Channel]:
    """The caller's memberships, by name then IN before OUT; __ANON__ when it has none."""
    user = User.get_or_none(User.username == caller.name) if caller.name else None
    if user is None:
        return _anonymous_channels()
    rows = (
        GroupMembership.select(GroupMembership, Group)
        .join(Group)
        .where(GroupMembership.user == user)
        .order_by(Group.name, GroupMembership.direction)
    )
    channels = [
        Channel(str(row.group.name), str(row.direction), bool(row.enabled),
                row.group.created_at, _bitpos(row.group), row.group.description)
        for row in rows
    ]
    return channels or _anonymous_channels()


class GroupsAll:
    """``GET /Marti/api/groups/all[?useCache=&sendLatestSA=]``: every membership of the
    caller. ``useCache`` (TAK Server's LDAP cache) and ``sendLatestSA`` are accepted and
    change nothing: memberships are always read from the database."""

    def __init__(self, config: ApiConfig) -> None:
        self._config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        bool_param(req, "useCache", False)
        bool_param(req, "sendLatestSA", False)
        data = [channel.to_json() for channel in channels_of(caller_of(req))]
        resp.media = api_response(self._config, GROUP_TYPE, data)


class GroupCacheEnabled:
    """``GET /Marti/api/groups/groupCacheEnabled``: ATAK asks it before offering channels."""

    def __init__(self, config: ApiConfig) -> None:
        self._config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = api_response(self._config, "java.lang.Boolean", True)


@dataclass(frozen=True)
class Toggle:
    name: str
    direction: str
    active: bool


def parse_toggles(raw: bytes) -> list[Toggle]:
    """The PUT body: a JSON list of ``{name, direction, active}`` (other keys ignored).

    ``direction`` ``BOTH`` (which some servers list) toggles both. Any malformed entry refuses
    the whole body, naming the entry.
    """
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        bad_request("body", f"not valid JSON: {exc}")
    if not isinstance(body, list):
        bad_request("body", "must be a JSON list of {name, direction, active} objects")
    if len(body) > MAX_ENTRIES:
        bad_request("body", f"at most {MAX_ENTRIES} entries, got {len(body)}")
    toggles: list[Toggle] = []
    for index, entry in enumerate(body):
        where = f"body[{index}]"
        if not isinstance(entry, dict):
            bad_request(where, "must be an object with name, direction and active")
        name, direction, active = entry.get("name"), entry.get("direction"), entry.get("active")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_GROUP_NAME:
            bad_request(f"{where}.name", f"must be a group name of 1 to {MAX_GROUP_NAME} "
                        f"characters, got {name!r}")
        if not isinstance(direction, str) or direction.upper() not in (*DIRECTIONS, "BOTH"):
            bad_request(f"{where}.direction", f"must be IN, OUT or BOTH, got {direction!r}")
        if not isinstance(active, bool):
            bad_request(f"{where}.active", f"must be true or false, got {active!r}")
        wanted = DIRECTIONS if direction.upper() == "BOTH" else (direction.upper(),)
        toggles.extend(Toggle(name.strip(), each, active) for each in wanted)
    return toggles


class GroupsActive:
    """``GET`` the caller's active memberships; ``PUT`` toggles them and regroups the user's
    connected streams at once (through the node's inject path).

    NOTE: memberships belong to the user, not the device: ``clientUid`` is accepted and
    logged, and every stream of the user changes (what OTS does when CloudTAK sends none).
    Entries naming a membership the user does not have change nothing and are listed in the
    answer's ``unknown``.
    """

    def __init__(self, config: ApiConfig, injector: Injector | None) -> None:
        self._config = config
        self._injector = injector

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = [c.to_json() for c in channels_of(caller_of(req)) if c.active]
        resp.media = api_response(self._config, GROUP_TYPE, data)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = caller_of(req)
        require_user(caller, "changing channels")
        client_uid = text_param(req, "clientUid")
        toggles = parse_toggles(read_limited(req, MAX_BODY))
        if self._injector is None:
            raise falcon.HTTPServiceUnavailable(
                title="No Node", description="this API runs without a node to apply channels to")
        user = User.get_or_none((User.username == caller.name) & (User.active == True))  # noqa: E712
        if user is None:
            raise falcon.HTTPForbidden(
                title="Forbidden", description=f"user {caller.name!r} is not an active user")
        updated, unknown = self._apply(user, toggles)
        channels = channels_for(caller.name)
        assert channels is not None  # the user is active: checked above
        groups_out = sorted(channels.groups_out)
        live = self._injector.regroup(caller.name, channels.groups_in, groups_out)
        if not live:
            log.warning("channels of %s saved but not applied live (ingest not accepting); "
                        "they apply on the next connect", caller.name)
        log.info("channels of %s (clientUid %s): %d changed, in %s, out %s",
                 caller.name, client_uid or "-", updated, channels.groups_in, groups_out)
        resp.media = {
            "groupsIn": list(channels.groups_in), "groupsOut": groups_out,
            "updated": updated, "unknown": unknown, "live": live,
        }

    @staticmethod
    def _apply(user: User, toggles: list[Toggle]) -> tuple[int, list[dict[str, str]]]:
        """Set ``enabled`` of each named membership, all in one transaction."""
        updated = 0
        unknown: list[dict[str, str]] = []
        database = GroupMembership._meta.database
        with database.atomic():
            for toggle in toggles:
                group = Group.get_or_none(Group.name == toggle.name)
                count = 0 if group is None else (
                    GroupMembership.update(enabled=toggle.active)
                    .where((GroupMembership.user == user)
                           & (GroupMembership.group == group)
                           & (GroupMembership.direction == toggle.direction))
                    .execute()
                )
                if count:
                    updated += int(count)
                else:
                    unknown.append({"name": toggle.name, "direction": toggle.direction})
        return updated, unknown
