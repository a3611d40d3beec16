"""Admin listings under ``/api``: what the store kept, paginated, filtered, scoped to the caller.

Every route answers one page (:mod:`otszmq.api.paging`: ``page``, ``per_page``) of rows that
pass its filters and that the caller may read: rows written to a channel its OUT groups read,
every row for admins (:mod:`otszmq.api.scope`). Data packages carry no channels: every caller
that reaches the route (authentication decides who does) sees them all, as ``/Marti/sync``
shows them.

Filters shared by the routes: ``uid`` (exact), ``callsign`` / ``name`` (substring, any case),
``type`` (a CoT type prefix on whole atoms: ``a-f`` matches ``a-f`` and ``a-f-G``, not
``a-fx``), ``since`` / ``until`` (ISO 8601, inclusive), ``bbox`` (``west,south,east,north``).
A bad value is a 400 naming the parameter; nothing is queried.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeAlias, cast

import falcon
from peewee import Field, ModelSelect, fn

from otszmq.api.errors import bad_request
from otszmq.api.marti import tak_time
from otszmq.api.paging import page_of
from otszmq.api.params import (
    bbox_param,
    bool_param,
    page_params,
    text_param,
    time_param,
)
from otszmq.api.scope import caller_of, visible
from otszmq.api.sync import keywords_of
from otszmq.store.groups import decode_groups
from otszmq.store.models import (
    Alert,
    BaseModel,
    Casevac,
    ChatRoom,
    CotLog,
    DataPackage,
    Eud,
    GeoChat,
    Marker,
    Point,
    RangeBearingLine,
    VideoStream,
)

Item = dict[str, Any]
Query: TypeAlias = "ModelSelect[Any]"  # peewee's class is generic in its stubs only


def row_id(model: type[BaseModel]) -> Field:
    """The model's integer primary key (peewee adds ``id``; its stubs do not show it)."""
    return cast(Field, model._meta.primary_key)


# -- filters ----------------------------------------------------------------------------------


def type_prefix(column: Field, prefix: str) -> Any:
    """``column`` is ``prefix`` or starts with ``prefix-`` (whole CoT atoms, case-sensitive).

    NOTE: SUBSTR rather than LIKE: SQLite's LIKE ignores case, and CoT types do not.
    """
    prefix = prefix.rstrip("-")
    return (column == prefix) | (fn.SUBSTR(column, 1, len(prefix) + 1) == prefix + "-")


def contains_text(column: Field, text: str) -> Any:
    """Substring, any case (as /api/euds's ``callsign``); LIKE wildcards in ``text`` are literal."""
    return fn.LOWER(column).contains(text.lower())


def exact(req: falcon.Request, query: Query, name: str, column: Field) -> Query:
    value = text_param(req, name)
    return query if value is None else query.where(column == value)


def substring(req: falcon.Request, query: Query, name: str, column: Field) -> Query:
    value = text_param(req, name)
    return query if not value else query.where(contains_text(column, value))


def cot_type(req: falcon.Request, query: Query, column: Field) -> Query:
    value = text_param(req, "type")
    if value is None:
        return query
    if not value.strip("-"):
        bad_request("type", f"must be a CoT type prefix such as a-f-G, got {value!r}")
    return query.where(type_prefix(column, value))


def time_window(req: falcon.Request, query: Query, column: Field) -> Query:
    """``since`` <= column <= ``until``, either bound optional."""
    since, until = time_param(req, "since"), time_param(req, "until")
    if since is not None and until is not None and since > until:
        bad_request("since", f"must not be after until ({since.isoformat()} > "
                             f"{until.isoformat()})")
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column <= until)
    return query


def within(req: falcon.Request, query: Query, lat: Field, lon: Field) -> Query:
    """``bbox``: rows whose position lies inside (edges included); rows with none are out."""
    box = bbox_param(req)
    if box is None:
        return query
    query = query.where(lat.between(box.south, box.north))
    if box.west <= box.east:
        return query.where(lon.between(box.west, box.east))
    return query.where((lon >= box.west) | (lon <= box.east))  # across the antimeridian


# -- items ------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    return tak_time(value) if isinstance(value, datetime) else value


def columns_item(row: BaseModel, skip: Sequence[str] = ()) -> Item:
    """Every column of ``row`` by field name (times in TAK's form), ``groups`` as a list."""
    item: Item = {}
    for field in type(row)._meta.sorted_fields:
        name = field.name
        if name == "id" or name in skip:
            continue
        item[name] = _json_value(getattr(row, name))
    if "groups" in item:
        item["groups"] = decode_groups(item["groups"])
    return item


def cot_item(row: CotLog) -> Item:
    item = columns_item(row, skip=("xml",))
    item["missions"] = row.missions.split(",") if row.missions else []
    return item


def cot_item_with_xml(row: CotLog) -> Item:
    item = cot_item(row)
    item["xml"] = row.xml
    return item


def chat_item(row: GeoChat) -> Item:
    item = columns_item(row, skip=("room",))
    item["room_id"] = row.room.room_id
    item["room"] = row.room.name
    return item


def alert_item(row: Alert) -> Item:
    item = columns_item(row)
    item["id"] = cast(Any, row).id  # peewee's implicit key, missing from its stubs
    item["active"] = row.cancel_time is None
    return item


def casevac_item(row: Casevac) -> Item:
    item = columns_item(row)
    try:
        item["zmist"] = json.loads(row.zmist) if row.zmist else []
    except ValueError:
        item["zmist"] = []  # not written by the store: show none rather than fail the page
    return item


def package_item(row: DataPackage) -> Item:
    item = columns_item(row)
    item["keywords"] = keywords_of(row)
    return item


# -- routes -----------------------------------------------------------------------------------


class Listing:
    """A paginated GET over one model: subclasses say how to filter, sort and show a row."""

    model: ClassVar[type[BaseModel]]
    scoped: ClassVar[bool] = True  # False: no channels (data packages)

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        raise NotImplementedError

    def order(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def item(self, row: Any) -> Item:
        return columns_item(row)

    def item_for(self, req: falcon.Request) -> Callable[[Any], Item]:
        """How rows show for this request (a parameter may add fields)."""
        return self.item

    def select(self, req: falcon.Request) -> Query:
        return self.model.select()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = page_params(req)
        item = self.item_for(req)
        query = self.filtered(req, self.select(req))
        if self.scoped:
            query = visible(query, self.model._meta.fields["groups"], caller_of(req))
        resp.media = page_of(query, self.order(), item, *page)


class PointList(Listing):
    """Positions, newest first: ``uid``, ``callsign`` (of the EUD or marker), ``type``,
    ``since``/``until``, ``bbox``."""

    model = Point

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        query = exact(req, query, "uid", Point.uid)
        callsign = text_param(req, "callsign")
        if callsign:
            # Points carry no callsign: match the uids whose EUD or marker has it.
            named = (
                Eud.select(Eud.uid).where(contains_text(Eud.callsign, callsign))
                | Marker.select(Marker.uid).where(contains_text(Marker.callsign, callsign))
            )
            query = query.where(Point.uid.in_(named))
        query = cot_type(req, query, Point.type)
        query = time_window(req, query, Point.time)
        return within(req, query, Point.lat, Point.lon)

    def order(self) -> tuple[Any, ...]:
        return (Point.time.desc(), row_id(Point).desc())


class CotList(Listing):
    """The CoT log, newest first: ``uid``, ``type``, ``sender_uid``, ``callsign``,
    ``since``/``until``; ``xml=true`` adds each event's XML (when the store kept it)."""

    model = CotLog

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        query = exact(req, query, "uid", CotLog.uid)
        query = exact(req, query, "sender_uid", CotLog.sender_uid)
        query = substring(req, query, "callsign", CotLog.callsign)
        query = cot_type(req, query, CotLog.type)
        return time_window(req, query, CotLog.time)

    def order(self) -> tuple[Any, ...]:
        return (CotLog.time.desc(), row_id(CotLog).desc())

    def item_for(self, req: falcon.Request) -> Callable[[Any], Item]:
        return cot_item_with_xml if bool_param(req, "xml", False) else cot_item


class ChatList(Listing):
    """Chat messages, newest first: ``room`` (a room's id or name), ``sender`` (the sender's
    uid, or a substring of its callsign), ``since``/``until``."""

    model = GeoChat

    def select(self, req: falcon.Request) -> Query:
        return GeoChat.select(GeoChat, ChatRoom).join(ChatRoom)

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        room = text_param(req, "room") or text_param(req, "chatroom")
        if room:
            query = query.where((ChatRoom.room_id == room) | (ChatRoom.name == room))
        sender = text_param(req, "sender")
        if sender:
            query = query.where(
                (GeoChat.sender_uid == sender) | contains_text(GeoChat.sender_callsign, sender))
        return time_window(req, query, GeoChat.time)

    def order(self) -> tuple[Any, ...]:
        return (GeoChat.time.desc(), row_id(GeoChat).desc())

    def item(self, row: Any) -> Item:
        return chat_item(row)


class AlertList(Listing):
    """Emergencies, newest first: ``active=true`` (not cancelled) or ``false`` (cancelled),
    ``uid``, ``alert_type`` (exact: "911 Alert"), ``since``/``until`` (start time)."""

    model = Alert

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        if req.get_param("active") not in (None, ""):
            active = bool_param(req, "active", True)
            query = query.where(
                Alert.cancel_time.is_null() if active else Alert.cancel_time.is_null(False))
        query = exact(req, query, "uid", Alert.uid)
        query = exact(req, query, "alert_type", Alert.alert_type)
        return time_window(req, query, Alert.start_time)

    def order(self) -> tuple[Any, ...]:
        return (Alert.start_time.desc(), row_id(Alert).desc())

    def item(self, row: Any) -> Item:
        return alert_item(row)


class CasevacList(Listing):
    """9-line requests, newest first: ``uid``, ``callsign``, ``since``/``until``."""

    model = Casevac

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        query = exact(req, query, "uid", Casevac.uid)
        query = substring(req, query, "callsign", Casevac.callsign)
        return time_window(req, query, Casevac.time)

    def order(self) -> tuple[Any, ...]:
        return (Casevac.time.desc(), Casevac.uid)

    def item(self, row: Any) -> Item:
        return casevac_item(row)


class MarkerList(Listing):
    """Map markers by callsign: ``uid``, ``callsign``, ``type``, ``since``/``until``,
    ``bbox``."""

    model = Marker

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        query = exact(req, query, "uid", Marker.uid)
        query = substring(req, query, "callsign", Marker.callsign)
        query = cot_type(req, query, Marker.type)
        query = time_window(req, query, Marker.time)
        return within(req, query, Marker.lat, Marker.lon)

    def order(self) -> tuple[Any, ...]:
        return (Marker.callsign, Marker.uid)


class RangeBearingList(Listing):
    """Range-and-bearing lines by callsign: ``uid``, ``callsign``, ``since``/``until``."""

    model = RangeBearingLine

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        query = exact(req, query, "uid", RangeBearingLine.uid)
        query = substring(req, query, "callsign", RangeBearingLine.callsign)
        return time_window(req, query, RangeBearingLine.time)

    def order(self) -> tuple[Any, ...]:
        return (RangeBearingLine.callsign, RangeBearingLine.uid)


class VideoStreamList(Listing):
    """Video streams by name: ``uid``, ``name``, ``since``/``until``."""

    model = VideoStream

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        query = exact(req, query, "uid", VideoStream.uid)
        query = substring(req, query, "name", VideoStream.name)
        return time_window(req, query, VideoStream.time)

    def order(self) -> tuple[Any, ...]:
        return (VideoStream.name, VideoStream.uid)


class PackageList(Listing):
    """Data packages, newest first: ``hash``, ``name`` (of the package or its file),
    ``creator_uid``, ``tool``, ``since``/``until`` (submission time). Not scoped: packages
    have no channels."""

    model = DataPackage
    scoped = False

    def filtered(self, req: falcon.Request, query: Query) -> Query:
        query = exact(req, query, "hash", DataPackage.hash)
        name = text_param(req, "name")
        if name:
            query = query.where(contains_text(DataPackage.name, name)
                                | contains_text(DataPackage.filename, name))
        query = exact(req, query, "creator_uid", DataPackage.creator_uid)
        query = exact(req, query, "tool", DataPackage.tool)
        return time_window(req, query, DataPackage.submission_time)

    def order(self) -> tuple[Any, ...]:
        return (DataPackage.submission_time.desc(), DataPackage.hash)

    def item(self, row: Any) -> Item:
        return package_item(row)

