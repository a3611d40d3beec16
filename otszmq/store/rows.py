"""Turn a batch of decoded records into table rows: pure Python, no database.

The writer applies a :class:`Rows` in one transaction. Grouping by table here lets it use one
multi-row statement per table instead of a statement per record, and settles the order of
events inside the batch up front: the newest report of a uid wins its upsert, a map item created
and then deleted in the same batch is only deleted, a device that reports after its disconnect
is connected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from otszmq.pacing import never_pause
from otszmq.store.groups import encode_groups
from otszmq.store.records import Record, RecordKind
from otszmq.store.symbols import symbol_from_type

Row = dict[str, Any]

UNKNOWN: Final = 9999999.0  # CoT's "unknown" for hae, ce, le, course, speed
EARTH_RADIUS_M: Final = 6_371_008.8  # mean radius

# Emergency types by CoT type, for alerts whose <emergency> has no type attribute.
ALERT_TYPES: Final = {
    "b-a-o-tbl": "911 Alert",
    "b-a-o-pan": "Ring The Bell",
    "b-a-o-opn": "In Contact",
    "b-a-g": "Geo-fence Breached",
    "b-a-o-c": "Custom",
}

_CASEVAC_INTS: Final = (
    "urgent", "priority", "routine", "litter", "ambulatory", "security", "hlz_marking",
    "us_military", "us_civilian", "nonus_military", "nonus_civilian", "epw", "child",
)
_CASEVAC_BOOLS: Final = (
    "casevac", "hoist", "extraction_equipment", "ventilator", "equipment_other",
    "terrain_slope", "terrain_rough", "terrain_loose", "terrain_other",
)
_CASEVAC_TEXTS: Final = (
    "title", "freq", "equipment_detail", "hlz_other", "terrain_slope_dir", "terrain_other_detail",
    "marked_by", "winds_are_from", "friendlies", "enemy", "hlz_remarks", "medline_remarks",
)


def number(value: Any) -> float | None:
    """A finite, known number from a value as sent; None for absent, junk, NaN or 9999999."""
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if not math.isfinite(result) or result == UNKNOWN else result


def integer(value: Any) -> int | None:
    result = number(value)
    return None if result is None or not -(2**31) <= result < 2**31 else int(result)


def boolean(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return True if text in ("true", "1") else False if text in ("false", "0") else None


def argb_hex(argb: int | None) -> str | None:
    """ATAK's signed 32-bit ARGB colour as ``#rrggbb``."""
    return None if argb is None else f"#{argb & 0xFFFFFF:06x}"


def destination(lat: float, lon: float, bearing: float, distance: float) -> tuple[float, float]:
    """The point ``distance`` metres from (lat, lon) along the great circle at ``bearing``."""
    delta = distance / EARTH_RADIUS_M
    theta = math.radians(bearing)
    phi1, lambda1 = math.radians(lat), math.radians(lon)
    phi2 = math.asin(
        math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta)
    )
    lambda2 = lambda1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * math.sin(phi2),
    )
    return math.degrees(phi2), (math.degrees(lambda2) + 540.0) % 360.0 - 180.0


def has_position(record: Record) -> bool:
    """A real position: present, finite, and not the 0,0 that clients send without a fix."""
    lat, lon = record.lat, record.lon
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return not (lat == 0.0 and lon == 0.0)


@dataclass
class Rows:
    """One batch, by table. Upserts are keyed by uid (last report wins), appends keep order."""

    cot: list[Row] = field(default_factory=list)
    points: list[Row] = field(default_factory=list)
    euds: dict[str, Row] = field(default_factory=dict)
    disconnected: set[str] = field(default_factory=set)  # EUD uids with no later report
    markers: dict[str, Row] = field(default_factory=dict)
    rb_lines: dict[str, Row] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)  # map items to remove
    casevacs: dict[str, Row] = field(default_factory=dict)
    videos: dict[str, Row] = field(default_factory=dict)
    rooms: dict[str, Row] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)
    chats: list[Row] = field(default_factory=list)
    alerts: list[Record] = field(default_factory=list)  # applied one by one, in order


def _newest(table: dict[str, Row], row: Row, time_key: str = "time") -> None:
    old = table.get(row["uid"])
    if old is None or row[time_key] >= old[time_key]:
        table[row["uid"]] = row


def collect(
    records: Iterable[Record], *, store_raw_xml: bool, pace: Callable[[], None] = never_pause
) -> Rows:
    """The rows of a batch; ``pace`` is called once per record (otszmq.pacing)."""
    rows = Rows()
    # PERF: a batch holds many reports of few devices on few channels. Each distinct channel
    # set is encoded once, and an EUD's row is built once, from its newest report.
    encoded: dict[tuple[str, ...], str | None] = {}
    newest_eud: dict[str, tuple[Record, str | None]] = {}
    for record in records:
        pace()
        # Every row of the record carries the channels it was written to (store.groups).
        if record.groups not in encoded:
            encoded[record.groups] = encode_groups(record.groups)
        groups = encoded[record.groups]
        rows.cot.append(_cot_row(record, store_raw_xml, groups))
        positioned = has_position(record)
        detail = record.detail
        if positioned and record.kind != RecordKind.DELETE:
            rows.points.append(_point_row(record, groups))
        kind = record.kind
        if kind == RecordKind.EUD:
            best = newest_eud.get(record.uid)
            if best is None or record.time >= best[0].time:
                newest_eud[record.uid] = (record, groups)
            rows.disconnected.discard(record.uid)
        elif kind == RecordKind.MARKER:
            _newest(rows.markers, _marker_row(record, groups))
            rows.deleted.discard(record.uid)
        elif kind == RecordKind.RB_LINE:
            _newest(rows.rb_lines, _rb_row(record, groups))
            rows.deleted.discard(record.uid)
        elif kind == RecordKind.CASEVAC:
            _newest(rows.casevacs, _casevac_row(record, groups))
        elif kind == RecordKind.CHAT:
            _chat_rows(rows, record, groups)
        elif kind == RecordKind.ALERT:
            rows.alerts.append(record)
        elif kind == RecordKind.DELETE:
            target = str(detail.get("target_uid") or record.uid)
            for table in (rows.markers, rows.rb_lines):
                table.pop(target, None)
            rows.deleted.add(target)
            # The EUD's own reports in this batch came before its goodbye.
            if target in newest_eud:
                _eud_rows(rows, newest_eud.pop(target))["last_status"] = "Disconnected"
            else:
                rows.disconnected.add(target)
        video = detail.get("video")
        if isinstance(video, dict):
            _newest(rows.videos, _video_row(record, video, groups))
    for newest in newest_eud.values():
        _eud_rows(rows, newest)
    return rows


def _eud_rows(rows: Rows, newest: tuple[Record, str | None]) -> Row:
    """Put the row of an EUD's newest report in ``rows.euds`` unless the row already there (its
    goodbye, from an earlier report) is newer; return the row kept."""
    record, groups = newest
    row = _eud_row(record, has_position(record), groups)
    _newest(rows.euds, row, "last_event_time")
    return rows.euds[record.uid]


def _cot_row(record: Record, store_raw_xml: bool, groups: str | None) -> Row:
    return {
        "uid": record.uid, "type": record.type, "how": record.how, "time": record.time,
        "start": record.start, "stale": record.stale, "sender_uid": record.sender_uid or None,
        "callsign": record.callsign, "missions": ",".join(record.missions) or None,
        "xml": record.raw.decode("utf-8", "replace") if store_raw_xml else None,
        "groups": groups,
    }


def _point_row(record: Record, groups: str | None) -> Row:
    detail = record.detail
    return {
        "uid": record.uid, "type": record.type, "sender_uid": record.sender_uid or None,
        "lat": record.lat, "lon": record.lon, "hae": number(record.hae), "ce": number(record.ce),
        "le": number(record.le), "course": number(detail.get("course")),
        "speed": number(detail.get("speed")), "battery": number(detail.get("battery")),
        "time": record.time, "groups": groups,
    }


def _eud_row(record: Record, positioned: bool, groups: str | None) -> Row:
    detail = record.detail
    row: Row = {
        key: detail.get(key)
        for key in ("device", "os", "platform", "version", "phone", "endpoint", "team", "role")
    }
    row.update(
        uid=record.uid, callsign=record.callsign, last_event_time=record.time,
        last_status="Connected", last_lat=record.lat if positioned else None,
        last_lon=record.lon if positioned else None, groups=groups,
    )
    return row


def _marker_row(record: Record, groups: str | None) -> Row:
    detail = record.detail
    symbol = symbol_from_type(record.type)
    argb = integer(detail.get("color"))
    return {
        "uid": record.uid, "type": record.type, "callsign": record.callsign,
        "affiliation": None if symbol is None else symbol.affiliation,
        "battle_dimension": None if symbol is None else symbol.battle_dimension,
        "mil_std_2525c": None if symbol is None else symbol.sidc,
        "iconset_path": detail.get("icon"), "color_argb": argb, "color_hex": argb_hex(argb),
        "parent_uid": detail.get("parent_uid"), "parent_callsign": detail.get("parent_callsign"),
        "relation": detail.get("relation"), "readiness": boolean(detail.get("readiness")),
        "remarks": detail.get("remarks"), "sender_uid": record.sender_uid or None,
        "lat": record.lat, "lon": record.lon, "hae": number(record.hae), "time": record.time,
        "stale": record.stale, "groups": groups,
    }


def _rb_row(record: Record, groups: str | None) -> Row:
    detail = record.detail
    distance, bearing = number(detail.get("range")), number(detail.get("bearing"))
    end: tuple[float | None, float | None] = (None, None)
    if has_position(record) and distance is not None and bearing is not None:
        assert record.lat is not None and record.lon is not None
        # NOTE: the bearing is taken as true; ATAK's north_ref says how it was displayed.
        end = destination(record.lat, record.lon, bearing, distance)
    return {
        "uid": record.uid, "callsign": record.callsign, "sender_uid": record.sender_uid or None,
        "range": distance, "bearing": bearing, "inclination": number(detail.get("inclination")),
        "range_units": integer(detail.get("range_units")),
        "bearing_units": integer(detail.get("bearing_units")),
        "north_ref": integer(detail.get("north_ref")), "color": integer(detail.get("color")),
        "stroke_color": integer(detail.get("stroke_color")),
        "stroke_weight": number(detail.get("stroke_weight")),
        "labels_on": boolean(detail.get("labels_on")), "anchor_lat": record.lat,
        "anchor_lon": record.lon, "end_lat": end[0], "end_lon": end[1], "time": record.time,
        "stale": record.stale, "groups": groups,
    }


def _casevac_row(record: Record, groups: str | None) -> Row:
    detail = record.detail
    row: Row = {name: integer(detail.get(name)) for name in _CASEVAC_INTS}
    row.update({name: boolean(detail.get(name)) for name in _CASEVAC_BOOLS})
    row.update({name: detail.get(name) for name in _CASEVAC_TEXTS})
    zmist = detail.get("zmist")
    row.update(
        uid=record.uid, sender_uid=record.sender_uid or None, callsign=record.callsign,
        time=record.time, lat=record.lat, lon=record.lon,
        zmist=json.dumps(zmist) if zmist else None, groups=groups,
    )
    return row


def _video_url(video: Row) -> str | None:
    for candidate in (video.get("url"), video.get("address")):
        if candidate and "://" in str(candidate):
            return str(candidate)
    protocol, address = video.get("protocol"), video.get("address")
    if not (protocol and address):
        return None
    port = integer(video.get("port"))
    suffix = f":{port}" if port is not None and port > 0 else ""
    return f"{protocol}://{address}{suffix}{video.get('path') or ''}"


def _video_row(record: Record, video: Row, groups: str | None) -> Row:
    return {
        "uid": record.uid, "name": video.get("alias") or record.callsign,
        "protocol": video.get("protocol"), "address": video.get("address"),
        "port": integer(video.get("port")), "path": video.get("path"), "url": _video_url(video),
        "rover_port": integer(video.get("rover_port")),
        "rtsp_reliable": boolean(video.get("rtsp_reliable")),
        "ignore_klv": boolean(video.get("ignore_klv")),
        "network_timeout": integer(video.get("network_timeout")),
        "buffer_time": integer(video.get("buffer_time")),
        "sender_uid": record.sender_uid or None, "time": record.time, "groups": groups,
    }


def _chat_rows(rows: Rows, record: Record, groups: str | None) -> None:
    detail = record.detail
    room_id = str(detail.get("room_id") or detail.get("room") or "All Chat Rooms")
    rows.rooms.setdefault(room_id, {
        "room_id": room_id, "name": str(detail.get("room") or room_id),
        "parent": detail.get("parent"), "group_owner": boolean(detail.get("group_owner")),
    })
    for member in detail.get("members") or ():
        rows.members.add((room_id, str(member)))
    positioned = has_position(record)
    rows.chats.append({
        "uid": record.uid, "message_id": detail.get("message_id"), "room": room_id,
        "sender_uid": detail.get("sender_uid") or record.sender_uid or None,
        "sender_callsign": detail.get("sender_callsign"), "text": detail.get("text"),
        "time": record.time, "lat": record.lat if positioned else None,
        "lon": record.lon if positioned else None, "groups": groups,
    })


def alert_type(record: Record) -> str:
    return str(record.detail.get("alert_type") or ALERT_TYPES.get(record.type) or record.type)


def is_cancel(record: Record) -> bool:
    return bool(record.detail.get("cancel"))


def sender_of(record: Record) -> str | None:
    return record.detail.get("link_uid") or record.sender_uid or None
