"""``/api/markers``: list the map's markers, place one, remove one, through the pipeline.

A marker made here is a CoT event like any client's: it is injected into the node
(:class:`otszmq.inject.Injector`), written to the caller's IN groups, routed to the clients that
read them and stored by the store stage. The API never writes the ``marker`` table itself, so
clients and the store agree on what exists. Removing is a ``t-x-d-d`` for the uid, the same
way: clients drop it from their maps and the store deletes its row.

Both answer 202 (accepted: the event is queued, not yet stored), and 503 when the API runs
without a node or the node does not take the event.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import falcon
from lxml import etree

from otszmq import servercot
from otszmq.api.caller import Caller
from otszmq.api.errors import bad_request, not_found
from otszmq.api.listings import MarkerList
from otszmq.api.scope import caller_of, require_user, visible
from otszmq.store.groups import decode_groups
from otszmq.store.models import Eud, Marker
from otszmq.workers.kinds import EventKind, classify

if TYPE_CHECKING:
    from otszmq.inject import Injector

MAX_BODY: Final = 64 * 1024
MAX_UID: Final = 255
MAX_CALLSIGN: Final = 255
MAX_REMARKS: Final = 4096
MAX_STALE_MINUTES: Final = 525_600  # a year
DEFAULT_TYPE: Final = "a-u-G"  # unknown ground item: ATAK's default 2525 marker
DEFAULT_STALE_MINUTES: Final = 1440
HOW: Final = "h-g-i-g-o"  # placed by a human on a map, as ATAK marks its own markers
UNKNOWN: Final = "9999999.0"  # CoT's "not known" for hae, ce and le

_FIELDS: Final = frozenset(
    {"uid", "callsign", "name", "lat", "lon", "type", "remarks", "stale_minutes"}
)
# A uid also names the item in DELETE /api/markers/{uid}: letters, digits and ._:@- only.
_UID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
_COT_TYPE: Final = re.compile(r"[A-Za-z0-9._]+(-[A-Za-z0-9._]+)*")
_MAP_ITEM_KINDS: Final = frozenset({EventKind.SA, EventKind.MARKER})


@dataclass(frozen=True)
class NewMarker:
    uid: str
    callsign: str
    lat: float
    lon: float
    type: str
    remarks: str | None
    stale_minutes: int


def _text(body: dict[str, Any], name: str, limit: int, *, multiline: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        bad_request(name, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        bad_request(name, f"must be at most {limit} characters, got {len(value)}")
    allowed = "\n\r\t" if multiline else ""
    if any((ord(ch) < 32 and ch not in allowed) or 0x7F <= ord(ch) < 0xA0 for ch in value):
        bad_request(name, "must not contain NUL or control characters")
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        bad_request(name, "is required")
    # bool is an int to Python, never a coordinate to anyone.
    if isinstance(value, bool) or not isinstance(value, int | float):
        bad_request(name, f"must be a number, got {json.dumps(value)}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        bad_request(name, f"must be between {low:g} and {high:g}, got {value}")
    return number


def _stale_minutes(body: dict[str, Any]) -> int:
    value = body.get("stale_minutes", DEFAULT_STALE_MINUTES)
    if isinstance(value, bool) or not isinstance(value, int):
        bad_request("stale_minutes", f"must be a whole number of minutes, got {json.dumps(value)}")
    if not 1 <= value <= MAX_STALE_MINUTES:
        bad_request("stale_minutes", f"must be between 1 and {MAX_STALE_MINUTES}, got {value}")
    return value


def parse_marker(body: Any) -> NewMarker:
    """A validated marker from a JSON body; a 400 naming the first bad field otherwise."""
    if not isinstance(body, dict):
        bad_request("body", "must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        bad_request(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    uid = _text(body, "uid", MAX_UID)
    if uid is not None and not _UID.fullmatch(uid):
        bad_request("uid", "must be letters, digits and . _ : @ - (starting with a letter "
                           "or digit)")
    if "callsign" in body and "name" in body:
        bad_request("name", "give callsign or name, not both")
    field = "callsign" if "callsign" in body else "name"
    callsign = _text(body, field, MAX_CALLSIGN)
    if callsign is None or not callsign.strip():
        bad_request("callsign", "is required (or give it as name)")
    cot_type = _text(body, "type", 64) or DEFAULT_TYPE
    if not _COT_TYPE.fullmatch(cot_type) or classify(cot_type) not in _MAP_ITEM_KINDS:
        bad_request("type", f"must be a map item's CoT type (a-... or b-m-p-...), got "
                            f"{cot_type!r}")
    return NewMarker(
        uid=uid or str(uuid.uuid4()), callsign=callsign,
        lat=_number(body, "lat", -90.0, 90.0), lon=_number(body, "lon", -180.0, 180.0),
        type=cot_type, remarks=_text(body, "remarks", MAX_REMARKS, multiline=True),
        stale_minutes=_stale_minutes(body),
    )


def marker_event(marker: NewMarker, now: datetime | None = None) -> bytes:
    """The CoT event of ``marker`` (built with lxml: every value is escaped)."""
    now = now or datetime.now(UTC)
    start = servercot.cot_time(now)
    event = etree.Element("event", {
        "version": "2.0", "uid": marker.uid, "type": marker.type, "how": HOW,
        "time": start, "start": start,
        "stale": servercot.cot_time(now + timedelta(minutes=marker.stale_minutes)),
    })
    etree.SubElement(event, "point", {
        "lat": repr(marker.lat), "lon": repr(marker.lon), "hae": UNKNOWN, "ce": UNKNOWN,
        "le": UNKNOWN,
    })
    detail = etree.SubElement(event, "detail")
    etree.SubElement(detail, "contact", {"callsign": marker.callsign})
    if marker.remarks:
        etree.SubElement(detail, "remarks").text = marker.remarks
    # ATAK keeps an <archive/> item across restarts, like a marker its user placed.
    etree.SubElement(detail, "archive")
    return etree.tostring(event)


def _read_json(req: falcon.Request) -> Any:
    length = req.content_length
    if length is not None and length > MAX_BODY:
        bad_request("body", f"must be at most {MAX_BODY} bytes, got {length}")
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        bad_request("body", f"must be at most {MAX_BODY} bytes")
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        bad_request("body", f"must be JSON: {exc}")


def _injected(injector: Injector | None, event: bytes, groups_in: list[str]) -> None:
    if injector is None:
        raise falcon.HTTPServiceUnavailable(
            title="Pipeline Unavailable",
            description="this API runs without a node: markers cannot be sent")
    if not injector.send([event], groups_in=groups_in):
        raise falcon.HTTPServiceUnavailable(
            title="Pipeline Unavailable",
            description="the node did not take the event (ingest down or its queue full); "
                        "retry later")


def _accepted(resp: falcon.Response, uid: str) -> None:
    resp.status = falcon.HTTP_202
    resp.media = {"uid": uid}


class Markers(MarkerList):
    """``GET``: the marker listing. ``POST`` (JSON ``callsign`` or ``name``, ``lat``, ``lon``;
    optional ``uid``, ``type`` (default a-u-G), ``remarks``, ``stale_minutes`` (default a day)):
    places or moves a marker."""

    def __init__(self, injector: Injector | None) -> None:
        self._injector = injector

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = caller_of(req)
        require_user(caller, "placing a marker")
        marker = parse_marker(_read_json(req))
        self._check_uid_free(marker.uid, caller)
        _injected(self._injector, marker_event(marker), sorted(caller.groups_in))
        _accepted(resp, marker.uid)

    @staticmethod
    def _check_uid_free(uid: str, caller: Caller) -> None:
        """A uid may be reused to move one's own marker, never to overwrite a device or a
        marker of channels the caller does not read (clients would redraw it)."""
        if Eud.select().where(Eud.uid == uid).exists():
            raise falcon.HTTPConflict(title="Conflict",
                                      description=f"uid: {uid!r} is an EUD's uid")
        taken = Marker.select().where(Marker.uid == uid)
        if taken.exists() and not visible(taken, Marker.groups, caller).exists():
            raise falcon.HTTPConflict(
                title="Conflict", description=f"uid: {uid!r} is a marker you cannot change")


class MarkerItem:
    """``DELETE /api/markers/{uid}``: remove a marker the caller can see (a ``t-x-d-d``)."""

    def __init__(self, injector: Injector | None) -> None:
        self._injector = injector

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uid: str) -> None:
        caller = caller_of(req)
        require_user(caller, "removing a marker")
        query = Marker.select(Marker.type, Marker.groups).where(Marker.uid == uid)
        marker = visible(query, Marker.groups, caller).first()
        if marker is None:
            not_found(f"no marker with uid {uid!r} in a channel you read")
        groups = _delete_groups(caller, set(decode_groups(marker.groups)))
        _injected(self._injector, servercot.delete(uid, marker.type), groups)
        _accepted(resp, uid)


def _delete_groups(caller: Caller, marker_groups: set[str]) -> list[str]:
    """Where a delete is written: the marker's channels, so every client that drew it hears
    it; a user only those of them it writes to (403 if none), an admin all of them."""
    if caller.admin:
        return sorted(marker_groups or caller.groups_in)
    groups = marker_groups & caller.groups_in
    if not groups:
        raise falcon.HTTPForbidden(
            title="Forbidden",
            description="you read this marker's channels but write to none of them")
    return sorted(groups)
