"""The OpenAPI paths and schemas of the listings and markers (:mod:`otszmq.api.listings`,
:mod:`otszmq.api.markers`).

Merged into the admin API's document by :mod:`otszmq.api.openapi`; kept apart so that each file
stays the size of what it describes.
"""

from __future__ import annotations

from typing import Any, Final

from otszmq.api.openapi_parts import error, ok, query, ref
from otszmq.api.params import DEFAULT_PER_PAGE, MAX_PER_PAGE


def _text(name: str, description: str) -> dict[str, Any]:
    return query(name, {"type": "string"}, description)


_BAD = error("a parameter or the body is invalid; the detail names it")
_UNAVAILABLE = error("the API runs without a node, or the node did not take the event")
_TIME = {"type": "string", "format": "date-time"}
_PAGE = [
    query("page", {"type": "integer", "minimum": 1, "default": 1}, "page"),
    query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE,
                        "default": DEFAULT_PER_PAGE}, "rows per page"),
]
_WINDOW = [
    query("since", _TIME, "at or after this time (ISO 8601; no zone means UTC)"),
    query("until", _TIME, "at or before this time (ISO 8601; no zone means UTC)"),
]
_UID = _text("uid", "exact uid")
_CALLSIGN = _text("callsign", "substring, case-insensitive")
_TYPE = _text("type", "CoT type prefix on whole atoms: a-f matches a-f and a-f-G, not a-fx")
_BBOX = _text("bbox", "west,south,east,north in degrees; west > east crosses the antimeridian")
_GROUPS = {"type": "array", "items": {"type": "string"},
           "description": "the channels the item was written to (empty: unknown, admins only)"}


def _item(properties: dict[str, Any], required: tuple[str, ...] = ("uid",)) -> dict[str, Any]:
    return {"type": "object", "properties": {**properties, "groups": _GROUPS},
            "required": [*required, "groups"]}


def _strings(*names: str) -> dict[str, Any]:
    return {name: {"type": "string", "nullable": True} for name in names}


def _numbers(*names: str) -> dict[str, Any]:
    return {name: {"type": "number", "nullable": True} for name in names}


def _listing(operation_id: str, summary: str, item: str, parameters: list[dict[str, Any]]
             ) -> dict[str, Any]:
    page = {"type": "object", "properties": {
        "results": {"type": "array", "items": ref(item)}, "total": {"type": "integer"},
        "page": {"type": "integer"}, "per_page": {"type": "integer"},
    }, "required": ["results", "total", "page", "per_page"]}
    return {"get": {
        "summary": summary + "; only what the caller's channels read (admins: all), paginated",
        "operationId": operation_id, "parameters": [*_PAGE, *parameters],
        "responses": {"200": ok(page), "400": _BAD},
    }}


_ACCEPTED = ok({"type": "object", "properties": {"uid": {"type": "string"}},
                 "required": ["uid"]}, "queued into the pipeline (stored shortly after)")

PATHS: Final[dict[str, Any]] = {
    "/api/points": _listing("listPoints", "Positions, newest first", "Point", [
        _UID, _text("callsign", "substring of the EUD's or marker's callsign"), _TYPE,
        *_WINDOW, _BBOX]),
    "/api/cot": _listing("listCot", "The CoT log, newest first", "CotEvent", [
        _UID, _text("sender_uid", "exact uid of the sending device"), _CALLSIGN, _TYPE,
        *_WINDOW, query("xml", {"type": "boolean", "default": False},
                         "add each event's XML (when the store kept it)")]),
    "/api/chat": _listing("listChat", "Chat messages, newest first", "ChatMessage", [
        _text("room", "a room's id or name (alias: chatroom)"), _text("chatroom", "as room"),
        _text("sender", "the sender's uid, or a substring of its callsign"), *_WINDOW]),
    "/api/alerts": _listing("listAlerts", "Emergencies, newest first", "Alert", [
        query("active", {"type": "boolean"}, "true: not cancelled; false: cancelled"),
        _UID, _text("alert_type", "exact, e.g. 911 Alert"), *_WINDOW]),
    "/api/casevac": _listing("listCasevac", "9-line MEDEVAC requests, newest first",
                             "Casevac", [_UID, _CALLSIGN, *_WINDOW]),
    "/api/markers": {
        **_listing("listMarkers", "Map markers by callsign", "Marker",
                   [_UID, _CALLSIGN, _TYPE, *_WINDOW, _BBOX]),
        "post": {
            "summary": "Place (or move one's own) marker: a CoT event sent to the caller's "
                       "IN channels, stored by the pipeline",
            "operationId": "createMarker",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": ref("NewMarker")}}},
            "responses": {"202": _ACCEPTED, "400": _BAD,
                          "403": error("anonymous callers may not place markers"),
                          "409": error("the uid is an EUD's, or a marker the caller cannot "
                                        "change"),
                          "503": _UNAVAILABLE},
        },
    },
    "/api/markers/{uid}": {"delete": {
        "summary": "Remove a marker the caller can see: a t-x-d-d to its channels",
        "operationId": "deleteMarker",
        "parameters": [{"name": "uid", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"202": _ACCEPTED,
                      "403": error("anonymous, or the caller writes to none of the "
                                    "marker's channels"),
                      "404": error("no such marker in a channel the caller reads"),
                      "503": _UNAVAILABLE},
    }},
    "/api/rb-lines": _listing("listRangeBearingLines", "Range-and-bearing lines by callsign",
                              "RangeBearingLine", [_UID, _CALLSIGN, *_WINDOW]),
    "/api/video": _listing("listVideoStreams", "Video streams by name", "VideoStream",
                           [_UID, _text("name", "substring, case-insensitive"), *_WINDOW]),
    "/api/packages": {"get": {
        "summary": "Data packages, newest first (they have no channels: every caller sees "
                   "them), paginated",
        "operationId": "listPackages",
        "parameters": [*_PAGE, _text("hash", "exact SHA-256"),
                       _text("name", "substring of the name or file name"),
                       _text("creator_uid", "exact"), _text("tool", "exact"), *_WINDOW],
        "responses": {"200": ok({"type": "object", "properties": {
            "results": {"type": "array", "items": ref("DataPackage")},
            "total": {"type": "integer"}, "page": {"type": "integer"},
            "per_page": {"type": "integer"}}}), "400": _BAD},
    }},
}

_MAP_ITEM_TIMES = {"time": _TIME, "stale": _TIME}

SCHEMAS: Final[dict[str, Any]] = {
    "Point": _item({
        "uid": {"type": "string"}, "type": {"type": "string"}, "time": _TIME,
        **_strings("sender_uid"), "lat": {"type": "number"}, "lon": {"type": "number"},
        **_numbers("hae", "ce", "le", "course", "speed", "battery"),
    }),
    "CotEvent": _item({
        "uid": {"type": "string"}, "type": {"type": "string"}, "how": {"type": "string"},
        "time": _TIME, "start": _TIME, "stale": _TIME, **_strings("sender_uid", "callsign"),
        "missions": {"type": "array", "items": {"type": "string"}},
        "xml": {"type": "string", "nullable": True, "description": "with xml=true only"},
    }),
    "ChatMessage": _item({
        "uid": {"type": "string"}, "room_id": {"type": "string"}, "room": {"type": "string"},
        **_strings("message_id", "sender_uid", "sender_callsign", "text"), "time": _TIME,
        **_numbers("lat", "lon"),
    }),
    "Alert": _item({
        "id": {"type": "integer"}, "uid": {"type": "string"}, "alert_type": {"type": "string"},
        **_strings("sender_uid", "callsign"), "start_time": _TIME,
        "cancel_time": {**_TIME, "nullable": True}, "active": {"type": "boolean"},
        **_numbers("lat", "lon"),
    }, ("id", "uid", "active")),
    "Casevac": _item({
        "uid": {"type": "string"}, "time": _TIME, **_strings("sender_uid", "callsign", "title"),
        **_numbers("lat", "lon"),
        "zmist": {"type": "array", "items": {"type": "object"}},
    }),
    "Marker": _item({
        "uid": {"type": "string"}, "type": {"type": "string"}, **_MAP_ITEM_TIMES,
        **_strings("callsign", "affiliation", "battle_dimension", "mil_std_2525c",
                   "iconset_path", "color_hex", "parent_uid", "parent_callsign", "relation",
                   "remarks", "sender_uid"),
        "color_argb": {"type": "integer", "nullable": True},
        "readiness": {"type": "boolean", "nullable": True}, **_numbers("lat", "lon", "hae"),
    }),
    "RangeBearingLine": _item({
        "uid": {"type": "string"}, **_MAP_ITEM_TIMES, **_strings("callsign", "sender_uid"),
        **_numbers("range", "bearing", "inclination", "anchor_lat", "anchor_lon", "end_lat",
                   "end_lon", "stroke_weight"),
    }),
    "VideoStream": _item({
        "uid": {"type": "string"}, "time": _TIME,
        **_strings("name", "protocol", "address", "path", "url", "sender_uid"),
        "port": {"type": "integer", "nullable": True},
    }),
    "DataPackage": {"type": "object", "properties": {
        "hash": {"type": "string"}, "filename": {"type": "string"},
        **_strings("name", "creator_uid", "submission_user", "mime_type", "tool"),
        "submission_time": _TIME, "expiration": {**_TIME, "nullable": True},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "size": {"type": "integer"}, "install_on_enrollment": {"type": "boolean"},
        "install_on_connection": {"type": "boolean"},
    }, "required": ["hash", "filename", "size", "submission_time"]},
    "NewMarker": {"type": "object", "additionalProperties": False, "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]*$",
                "maxLength": 255, "description": "default: a new UUID"},
        "callsign": {"type": "string", "maxLength": 255},
        "name": {"type": "string", "maxLength": 255, "description": "callsign's alias"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "type": {"type": "string", "default": "a-u-G",
                 "description": "a map item's CoT type: a-... or b-m-p-..."},
        "remarks": {"type": "string", "maxLength": 4096},
        "stale_minutes": {"type": "integer", "minimum": 1, "maximum": 525600,
                          "default": 1440},
    }, "required": ["lat", "lon"]},
}
