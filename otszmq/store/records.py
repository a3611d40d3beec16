"""Store records: what the store writes about one event, built once from the parsed event.

Parse once (STYLE rule 6): the worker already holds the :class:`CotEvent` (and its lxml
``<detail>`` element), so it builds the record right after routing, and the store stage only
unpacks msgpack, never XML. This module is that format, sans-IO: :func:`record_kind`,
:func:`sheddable`, :func:`build_record` (or :func:`record_from_event`, all three at once) and
:class:`RecordPacker` or :func:`pack_records` (worker side), :func:`count_records`,
:func:`unpack_records` and :func:`decode_record` (store side). It imports neither peewee nor ZeroMQ.

Frames: ``[TOPIC_RECORD, records]``, each holding what a worker built over up to
``record_linger`` seconds (see :mod:`otszmq.wire`), where ``records`` is one msgpack array
``[RECORD_VERSION, skipped, [record, record, ...]]``: each record packed in C as the worker
builds it (:class:`RecordPacker`), the frame's head added when it goes. ``skipped`` is the
number of sheddable records the worker did not build since its previous frame, because the
store asked for fewer (SHED in otszmq.wire): with it the store knows what it could have had
(otszmq.store.shedding).

Record layout (``RECORD_VERSION`` 4; 3 had no ``skipped`` in the frame, 2 packed each record on
its own with the version in it, 1 had no ``groups``): a msgpack array with fixed positions::

    idx  field       msgpack type      meaning
    0    kind        str               a RecordKind: which tables the record feeds
    1    uid         str               event@uid
    2    type        str               event@type
    3    how         str               event@how ("" when absent)
    4    time        timestamp         event@time (msgpack's Timestamp extension, -1: UTC)
    5    start       timestamp         event@start
    6    stale       timestamp         event@stale
    7    sender_uid  str               the source connection's announced uid ("" before it
                                       announces, and for events the server made)
    8    lat         float | nil       point@lat; 8-12 are nil when the event has no <point>
    9    lon         float | nil
    10   hae         float | nil       9999999 (= unknown) and NaN are kept as sent
    11   ce          float | nil
    12   le          float | nil
    13   callsign    str | nil         detail/contact@callsign
    14   missions    [str]             detail/marti/dest@mission names
    15   raw         bin               the event's bytes as received (the store keeps them only
                                       when store_raw_xml is on; see NOTE below)
    16   detail      map | nil         kind-specific, below; str keys, values as sent (str) unless
                                       noted, absent attribute = nil
    17   groups      [str]             the channels the event was written to: the sender's
                                       (active) IN groups, sorted; the store keeps them so that
                                       listings show a caller only what its OUT groups read

Kind-specific ``detail`` maps::

    eud      device platform os version (takv), team role (__group), endpoint phone (contact),
             course speed (track), battery (status), video (map, when the SA carries __video)
    marker   icon (usericon@iconsetpath), color (color@argb), readiness (status@readiness),
             parent_uid parent_callsign relation (the first link), remarks, video
    chat     room (__chat@chatroom), room_id (__chat@id), parent, sender_callsign, message_id,
             group_owner, text (remarks), sender_uid (first link@uid), members ([str]: the
             chatgrp uid0, uid1, ... attributes)
    alert    alert_type (emergency@type), cancel (bool: emergency@cancel is true or the type is
             b-a-o-can), link_uid (first link@uid: the device that raised it)
    casevac  every _medevac_ attribute named in CASEVAC_FIELDS that is present, plus zmist
             ([map]: each zMistsMap/zMist's title z m i s t)
    rb_line  range bearing inclination range_units bearing_units north_ref color stroke_color
             stroke_weight labels_on (each a child element's @value)
    video    the __video map: url (__video@url) and ConnectionEntry's protocol address port
             path alias rover_port rtsp_reliable ignore_klv network_timeout buffer_time
    delete   target_uid target_type (the t-x-d-d's first link; target_uid falls back to uid)
    event    nil: only the CoT log and points take it

NOTE: the raw bytes always travel, whatever ``store_raw_xml`` says: that setting belongs to the
store stage (workers do not take store settings), and dropping ~600 bytes there costs less than a
second switch that must agree across processes.

PERF: the worker pays for this on its hot path. An SA record costs a few attribute reads on
elements the parser already picked out (no second walk over ``<detail>``) and a tuple, packed
at once. Values stay the strings lxml gives, and the store converts
them. Rarer kinds walk ``<detail>`` once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

import msgpack
from lxml import etree

from otszmq.errors import StoreError
from otszmq.workers.cot import CotEvent
from otszmq.workers.kinds import EventKind, classify

__all__ = [
    "CASEVAC_FIELDS",
    "RECORD_VERSION",
    "Record",
    "RecordFields",
    "RecordKind",
    "RecordPacker",
    "build_record",
    "count_records",
    "decode_record",
    "pack_records",
    "record_from_event",
    "record_kind",
    "sheddable",
    "unpack_records",
]

RECORD_VERSION: Final = 4
_FIELDS: Final = 18  # entries of one record's array


class RecordKind:
    """``Record.kind``: which tables a record feeds (every record also feeds the CoT log)."""

    EUD: Final = "eud"  # a device's own position report (a-* with takv or contact@endpoint)
    MARKER: Final = "marker"  # a-* placed by hand (no takv, no endpoint) and b-m-p-*
    CHAT: Final = "chat"  # b-t-f with <__chat>
    ALERT: Final = "alert"  # b-a-*: 911, ring the bell, in contact, geofence, cancel
    CASEVAC: Final = "casevac"  # b-r-f-h-c 9-line
    RB_LINE: Final = "rb_line"  # u-rb-* range and bearing line
    VIDEO: Final = "video"  # b-i-v video stream announcement
    DELETE: Final = "delete"  # t-x-d-d
    EVENT: Final = "event"  # anything else: CoT log and points only


KEPT_WHILE_SHEDDING: Final = frozenset({
    RecordKind.CHAT, RecordKind.ALERT, RecordKind.CASEVAC, RecordKind.RB_LINE, RecordKind.VIDEO,
    RecordKind.DELETE,
})
"""Kinds a worker records even while the store sheds (otszmq.wire: SHED): what people write
by hand, rare, and not made up for by the next report as a position is. Markers are kept only
when a person placed them (CoT ``how`` h-*, as ATAK, WinTAK and iTAK mark them): machine feeds
(ADS-B, AIS; how m-*) send theirs at a position report's rate."""

# The _medevac_ attributes kept: the 9 lines and the HLZ brief that ATAK's form fills in.
CASEVAC_FIELDS: Final = (
    "title", "casevac", "freq", "urgent", "priority", "routine", "hoist", "extraction_equipment",
    "ventilator", "equipment_none", "equipment_other", "equipment_detail", "litter", "ambulatory",
    "security", "hlz_marking", "hlz_other", "marked_by", "us_military", "us_civilian",
    "nonus_military", "nonus_civilian", "epw", "child", "terrain_none", "terrain_slope",
    "terrain_rough", "terrain_loose", "terrain_other", "terrain_slope_dir",
    "terrain_other_detail", "medline_remarks", "zone_prot_selection", "winds_are_from",
    "friendlies", "enemy", "hlz_remarks", "obstacles",
)

# ConnectionEntry attribute -> record key.
_VIDEO_ATTRIBUTES: Final = (
    ("protocol", "protocol"), ("address", "address"), ("port", "port"), ("path", "path"),
    ("alias", "alias"), ("roverPort", "rover_port"), ("rtspReliable", "rtsp_reliable"),
    ("ignoreEmbeddedKLV", "ignore_klv"), ("networkTimeout", "network_timeout"),
    ("bufferTime", "buffer_time"),
)

# Range-and-bearing child element (its @value) -> record key.
_RB_ELEMENTS: Final = {
    "range": "range", "bearing": "bearing", "inclination": "inclination",
    "rangeUnits": "range_units", "bearingUnits": "bearing_units", "northRef": "north_ref",
    "color": "color", "strokeColor": "stroke_color", "strokeWeight": "stroke_weight",
    "labels_on": "labels_on",
}

_NOT_STORED: Final = frozenset({EventKind.PING, EventKind.PONG, EventKind.PROTOCOL})
# PERF: a module name is read in ~6 ns, an Enum member through its class in ~70 (CPython 3.11).
_SA: Final = EventKind.SA
_CHAT: Final = EventKind.CHAT


class Record(NamedTuple):
    """A decoded record, as the store's writer reads it. Times are timezone-aware UTC."""

    kind: str
    uid: str
    type: str
    how: str
    time: datetime
    start: datetime
    stale: datetime
    sender_uid: str
    lat: float | None
    lon: float | None
    hae: float | None
    ce: float | None
    le: float | None
    callsign: str | None
    missions: tuple[str, ...]
    raw: bytes
    detail: dict[str, Any]  # {} when the record has none
    groups: tuple[str, ...] = ()  # sorted IN groups of the sender


Detail = dict[str, Any]
_Element = etree._Element


def _video(video: _Element) -> Detail:
    """The map of one ``__video`` element (and its first ``ConnectionEntry``)."""
    out: Detail = {"url": video.get("url")}
    for entry in video:
        if entry.tag == "ConnectionEntry":
            get = entry.get
            for attribute, key in _VIDEO_ATTRIBUTES:
                out[key] = get(attribute)
            break
    return out


def _eud(event: CotEvent, detail: _Element | None) -> Detail:
    # PERF: no walk over <detail>: the parser kept the elements an SA needs (the hottest kind).
    contact, track, status = event.contact, event.track, event.status
    out: Detail = {
        "device": event.takv_device, "platform": event.takv_platform, "os": event.takv_os,
        "version": event.takv_version, "team": event.group_name, "role": event.group_role,
        "endpoint": event.endpoint, "phone": None if contact is None else contact.get("phone"),
        "course": None if track is None else track.get("course"),
        "speed": None if track is None else track.get("speed"),
        "battery": None if status is None else status.get("battery"),
    }
    if event.video is not None:
        out["video"] = _video(event.video)
    return out


def _marker(event: CotEvent, detail: _Element | None) -> Detail:
    link = event.links[0] if event.links else None
    status = event.status
    out: Detail = {
        "icon": None, "color": None, "remarks": event.remarks,
        "readiness": None if status is None else status.get("readiness"),
        "parent_uid": None if link is None else link.uid, "parent_callsign": None,
        "relation": None if link is None else link.relation,
    }
    if detail is None:
        return out
    for child in detail:
        tag = child.tag
        if tag == "usericon":
            out["icon"] = child.get("iconsetpath")
        elif tag == "color":
            out["color"] = child.get("argb")
        elif tag == "link" and out["parent_callsign"] is None:
            out["parent_callsign"] = child.get("parent_callsign")
    if event.video is not None:
        out["video"] = _video(event.video)
    return out


def _chat(event: CotEvent, detail: _Element | None) -> Detail:
    chat = event.chat
    assert chat is not None  # record_kind() only picks CHAT when <__chat> is present
    members: list[str] = []
    if detail is not None:
        for child in detail:
            if child.tag == "__chat":
                for part in child:
                    if part.tag == "chatgrp":
                        # uid0, uid1, ... in attribute order; "id" names the room, not a member.
                        # ATAK names the room itself as a member of "All Chat Rooms".
                        members.extend(
                            str(value) for name, value in part.items()
                            if str(name).startswith("uid") and value != chat.chat_id
                        )
                        break
                break
    return {
        "room": chat.chatroom, "room_id": chat.chat_id, "parent": chat.parent,
        "sender_callsign": chat.sender_callsign, "message_id": chat.message_id,
        "group_owner": chat.group_owner, "text": chat.text,
        "sender_uid": event.links[0].uid if event.links else None, "members": members,
    }


def _alert(event: CotEvent, detail: _Element | None) -> Detail:
    alert_type = None
    cancel = event.type == "b-a-o-can"
    if detail is not None:
        for child in detail:
            if child.tag == "emergency":
                alert_type = child.get("type")
                cancel = cancel or (child.get("cancel") or "").lower() == "true"
                break
    return {
        "alert_type": alert_type, "cancel": cancel,
        "link_uid": event.links[0].uid if event.links else None,
    }


def _casevac(event: CotEvent, detail: _Element | None) -> Detail:
    out: Detail = {}
    if detail is None:
        return out
    for child in detail:
        if child.tag != "_medevac_":
            continue
        get = child.get
        for name in CASEVAC_FIELDS:
            value = get(name)
            if value is not None:
                out[name] = value
        zmists: list[Detail] = []
        for part in child:
            if part.tag == "zMistsMap":
                zmists.extend(
                    {key: zmist.get(key) for key in ("title", "z", "m", "i", "s", "t")}
                    for zmist in part if zmist.tag == "zMist"
                )
        out["zmist"] = zmists
        break
    return out


def _rb_line(event: CotEvent, detail: _Element | None) -> Detail:
    out: Detail = dict.fromkeys(_RB_ELEMENTS.values())
    if detail is None:
        return out
    for child in detail:
        key = _RB_ELEMENTS.get(child.tag) if isinstance(child.tag, str) else None
        if key is not None:
            out[key] = child.get("value")
    return out


def _video_event(event: CotEvent, detail: _Element | None) -> Detail:
    return {} if event.video is None else {"video": _video(event.video)}


def _delete(event: CotEvent, detail: _Element | None) -> Detail:
    link = event.links[0] if event.links else None
    target = link.uid if link is not None and link.uid else event.uid
    return {"target_uid": target, "target_type": None if link is None else link.type}


# Per-kind detail readers: adding a kind is adding a row (a RecordKind with no reader has none).
_READERS: Final[dict[str, Callable[[CotEvent, _Element | None], Detail]]] = {
    RecordKind.EUD: _eud,
    RecordKind.MARKER: _marker,
    RecordKind.CHAT: _chat,
    RecordKind.ALERT: _alert,
    RecordKind.CASEVAC: _casevac,
    RecordKind.RB_LINE: _rb_line,
    RecordKind.VIDEO: _video_event,
    RecordKind.DELETE: _delete,
}

_BY_EVENT_KIND: Final = {
    EventKind.MARKER: RecordKind.MARKER,
    EventKind.ALERT: RecordKind.ALERT,
    EventKind.CASEVAC: RecordKind.CASEVAC,
    EventKind.RANGE_BEARING: RecordKind.RB_LINE,
    EventKind.VIDEO: RecordKind.VIDEO,
    EventKind.DELETE: RecordKind.DELETE,
}


def record_kind(event: CotEvent) -> str | None:
    """The RecordKind of an event, or None for what is never stored (pings, negotiation)."""
    kind = classify(event.type)
    if kind is _SA:
        # OTS's rule: a device reports itself with <takv> or a contact endpoint; any other
        # a-* (a 2525 marker, a track from ADS-B/AIS) is an item on the map.
        device = event.takv_platform is not None or event.takv_device is not None
        return RecordKind.EUD if device or event.endpoint else RecordKind.MARKER
    if kind is _CHAT:
        # Receipts (b-t-f-d, b-t-f-r) and a b-t-f without <__chat> are logged only.
        return RecordKind.CHAT if event.chat is not None and event.type == "b-t-f" else (
            RecordKind.EVENT
        )
    if kind in _NOT_STORED:
        return None
    return _BY_EVENT_KIND.get(kind, RecordKind.EVENT)


def sheddable(kind: str, event: CotEvent) -> bool:
    """Whether a record of this kind may go unbuilt while the store sheds (otszmq.wire: SHED):
    all but KEPT_WHILE_SHEDDING, and markers a person placed (CoT ``how`` h-*)."""
    if kind == RecordKind.MARKER:
        return not event.how.startswith("h")
    return kind not in KEPT_WHILE_SHEDDING


RecordFields = tuple[Any, ...]
"""One record as the worker builds it: the layout above, in order."""


def build_record(
    kind: str, event: CotEvent, sender_uid: str, groups: Sequence[str] = ()
) -> RecordFields:
    """The record of a routed event of this ``kind`` (:func:`record_kind`).

    ``groups``: the channels the event was written to (the source's IN groups). Never raises
    for an event :class:`~otszmq.workers.cot.CotParser` accepted: every value is read as sent
    and interpreted by the store.
    """
    reader = _READERS.get(kind)
    detail = None if reader is None else reader(event, event.detail)
    return (
        kind, event.uid, event.type, event.how, event.time, event.start, event.stale,
        sender_uid, event.lat, event.lon, event.hae, event.ce, event.le, event.callsign,
        [dest.mission for dest in event.dests if dest.mission] if event.dests else (),
        event.raw, detail, sorted(groups),
    )


def record_from_event(
    event: CotEvent, sender_uid: str, groups: Sequence[str] = ()
) -> RecordFields | None:
    """The record of a routed event, or None when the store keeps nothing of it (tests,
    tools; a worker calls the three steps itself to shed some)."""
    kind = record_kind(event)
    return None if kind is None else build_record(kind, event, sender_uid, groups)


class RecordPacker:
    """Packs records one by one as they are built; :meth:`frame` makes a frame of them.

    PERF: a record is packed as soon as it is built, while its values are still in the CPU's
    caches (the same ~0.6 us a record as packing a list of them), and waits as ~950 packed
    bytes rather than as a tuple of Python objects: a worker holds its records for up to
    ``record_linger`` (otszmq.workers.service), and built objects held that long went cold;
    measured, the workers' CPU rose with them.
    """

    __slots__ = ("_packer", "count")

    def __init__(self) -> None:
        # PERF: datetimes go in as msgpack Timestamps, packed in C (faster than timestamp()
        # calls, and exact to the microsecond both ways).
        self._packer = msgpack.Packer(autoreset=False, datetime=True)
        self.count = 0  # records packed since the last frame

    def add(self, record: RecordFields) -> None:
        self._packer.pack(record)
        self.count += 1

    def frame(self, skipped: int = 0) -> bytes:
        """The record frame of the records added since the last frame, saying how many
        sheddable ones were skipped; starts the next frame empty."""
        packer = self._packer
        with packer.getbuffer() as body:
            frame = b"".join((_frame_head(self.count, skipped), body))
        packer.reset()
        self.count = 0
        return frame


def _frame_head(count: int, skipped: int) -> bytes:
    """What precedes a frame's ``count`` packed records: ``[RECORD_VERSION, skipped, [``."""
    packer = msgpack.Packer()
    return b"".join((
        packer.pack_array_header(3), packer.pack(RECORD_VERSION), packer.pack(skipped),
        packer.pack_array_header(count),
    ))


def pack_records(records: Sequence[RecordFields], skipped: int = 0) -> bytes:
    """One record frame for these records, saying how many sheddable ones were skipped."""
    packer = RecordPacker()
    for record in records:
        packer.add(record)
    return packer.frame(skipped)


_NOT_A_BATCH: Final = "records: expected [version, skipped, [record, ...]]"


def _check_version(version: object) -> None:
    if version != RECORD_VERSION:
        raise StoreError(f"records: version {version!r}, expected {RECORD_VERSION}")


def _skipped(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreError(f"records: skipped must be an int >= 0, got {value!r}")
    return value


def count_records(data: bytes) -> tuple[int, int]:
    """The numbers of records in a frame and of records its worker skipped, read from its
    header: the records stay packed.

    :class:`StoreError` if the frame does not begin as a record batch of this version (what
    follows the header is checked by :func:`unpack_records`, later). PERF: ~5 us a frame,
    where unpacking costs ~2.6 us a record.
    """
    unpacker = msgpack.Unpacker()
    try:
        unpacker.feed(data)
        if unpacker.read_array_header() != 3:
            raise StoreError(_NOT_A_BATCH)
        _check_version(unpacker.unpack())
        skipped = _skipped(unpacker.unpack())
        count: int = unpacker.read_array_header()
    except (ValueError, msgpack.UnpackException) as exc:
        raise StoreError(f"records: not a record batch: {exc}") from exc
    return count, skipped


def unpack_records(data: bytes) -> list[Any]:
    """The records of one frame, unpacked but not yet checked (see :func:`decode_record`).

    :class:`StoreError` if the frame is not a record batch of this version; then none of its
    records can be trusted.
    """
    try:
        batch = msgpack.unpackb(data, use_list=True, timestamp=3)  # 3: aware UTC datetimes
    except (ValueError, OverflowError, msgpack.UnpackException) as exc:
        raise StoreError(f"records: not msgpack: {exc}") from exc
    if not isinstance(batch, list) or len(batch) != 3 or not isinstance(batch[2], list):
        raise StoreError(_NOT_A_BATCH)
    _check_version(batch[0])
    _skipped(batch[1])
    return batch[2]


def _datetime(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    return value


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def decode_record(items: Any) -> Record:
    """Check one unpacked record; :class:`StoreError` if it is not one this store can read."""
    if not isinstance(items, list) or len(items) != _FIELDS:
        raise StoreError(f"record: expected an array of {_FIELDS} items")
    detail = items[16]
    try:
        if not isinstance(items[1], str) or not isinstance(items[15], bytes):
            raise TypeError("uid must be a string and raw must be bytes")
        if detail is not None and not isinstance(detail, dict):
            raise TypeError("detail must be a map")
        if not isinstance(items[17], list) or not all(isinstance(g, str) for g in items[17]):
            raise TypeError("groups must be an array of strings")
        return Record(
            str(items[0]), items[1], str(items[2]), str(items[3]), _datetime(items[4]),
            _datetime(items[5]), _datetime(items[6]), str(items[7]), _opt_float(items[8]),
            _opt_float(items[9]), _opt_float(items[10]), _opt_float(items[11]),
            _opt_float(items[12]), None if items[13] is None else str(items[13]),
            tuple(str(m) for m in items[14]), items[15], detail or {}, tuple(items[17]),
        )
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise StoreError(f"record: bad field: {exc}") from exc
