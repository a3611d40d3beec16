"""``/Marti/api/cot/xml/{uid}`` and ``.../all``: stored CoT events of one uid, as XML.

TAK Server's CotApi (reference/missions.md #29-30, peers.md §3): the single form answers the
latest stored event of the uid (an XML declaration, then the ``<event>``, with ``<marti>``
removed: TAK Server detaches destinations before it stores), 404 when the caller can see none;
``/all`` answers ``<events>`` wrapping the uid's history, filtered by ``secago`` (seconds) or
``start``/``end`` (ISO 8601), ``secago`` winning. ATAK asks for these to fetch mission items it
missed and for its timeline; CloudTAK (node-tak ``query.ts``) for an item's history.

Events come from the store's CoT log (table ``cot``), scoped to the caller's channels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final, cast

import falcon
from lxml import etree
from peewee import Field

from otszmq.api.errors import bad_request, not_found
from otszmq.api.marti import ONE_YEAR, tak_time
from otszmq.api.params import int_param, time_param
from otszmq.api.scope import caller_of, visible
from otszmq.api.xmlbody import XmlRejected, parse_xml
from otszmq.store.models import CotLog, Point

log = logging.getLogger(__name__)

XML_DECLARATION: Final = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
MAX_HISTORY: Final = 5000
"""Events one ``/all`` answer holds at most: the newest of the window (the body stays a few
MiB; a client wanting more narrows ``start``/``end``)."""
UNKNOWN: Final = "9999999.0"  # CoT's "not known" for hae, ce and le
# The implicit auto-increment id: among events with the same time, the one stored last wins.
_COT_ID: Final = cast(Field, CotLog._meta.primary_key)


def event_xml(row: CotLog, point: Point | None) -> str:
    """One stored event as XML without a declaration, ``<marti>`` removed.

    The CoT log keeps the event's bytes only when the store's ``store_raw_xml`` setting is on
    (the default). Without them, or if they do not parse (they did once, in a worker), the
    event is rebuilt from the stored fields: uid, type, how, times, callsign, and the position
    the store kept for that uid at that time. Such an event carries no other detail.
    """
    if row.xml:
        try:
            root = parse_xml(row.xml.encode("utf-8"))
        except XmlRejected as exc:
            log.warning("cot row of uid %s at %s: stored XML unreadable, rebuilt: %s",
                        row.uid, row.time, exc)
        else:
            for marti in root.findall("detail/marti"):
                marti.getparent().remove(marti)  # type: ignore[union-attr]  # a detail's child
            return etree.tostring(root, encoding="unicode")
    return _rebuilt(row, point)


def _rebuilt(row: CotLog, point: Point | None) -> str:
    event = etree.Element("event", {
        "version": "2.0", "uid": row.uid, "type": row.type, "how": row.how or "h-e",
        "time": tak_time(row.time) or "", "start": tak_time(row.start) or "",
        "stale": tak_time(row.stale) or "",
    })
    if point is None:
        etree.SubElement(event, "point", {
            "lat": "0.0", "lon": "0.0", "hae": UNKNOWN, "ce": UNKNOWN, "le": UNKNOWN})
    else:
        etree.SubElement(event, "point", {
            "lat": repr(point.lat), "lon": repr(point.lon),
            **{name: UNKNOWN if value is None else repr(value)
               for name, value in (("hae", point.hae), ("ce", point.ce), ("le", point.le))},
        })
    detail = etree.SubElement(event, "detail")
    if row.callsign:
        etree.SubElement(detail, "contact", {"callsign": row.callsign})
    return etree.tostring(event, encoding="unicode")


def _points_by_time(uid: str, rows: Iterable[CotLog]) -> dict[datetime, Point]:
    """The stored positions of ``uid`` at the times of the rows that need rebuilding."""
    times = {row.time for row in rows if not row.xml}
    if not times:
        return {}
    query = Point.select().where((Point.uid == uid) & Point.time.in_(sorted(times)))
    return {point.time: point for point in query}


def _send_xml(resp: falcon.Response, body: str) -> None:
    resp.content_type = falcon.MEDIA_XML
    resp.text = XML_DECLARATION + body


class CotXml:
    """``GET /Marti/api/cot/xml/{uid}``: the latest stored event of the uid."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, uid: str) -> None:
        query = CotLog.select().where(CotLog.uid == uid)
        row = (
            visible(query, CotLog.groups, caller_of(req))
            .order_by(CotLog.time.desc(), _COT_ID.desc())
            .first()
        )
        if row is None:
            not_found(f"no stored event with uid {uid!r} in a channel you read")
        _send_xml(resp, event_xml(row, _points_by_time(uid, [row]).get(row.time)))


class CotXmlHistory:
    """``GET /Marti/api/cot/xml/{uid}/all[?secago=|start=&end=]``: the uid's stored events,
    oldest first; an empty ``<events></events>`` when none match (CloudTAK reads that as "no
    history"; a 404 would be an error to it)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, uid: str) -> None:
        sec_ago = int_param(req, "secago", 0, 0, 100 * ONE_YEAR)
        start, end = time_param(req, "start"), time_param(req, "end")
        if sec_ago:
            start, end = datetime.now(UTC) - timedelta(seconds=sec_ago), None
        if start is not None and end is not None and start > end:
            bad_request("start", f"must not be after end ({start.isoformat()} > {end.isoformat()})")
        query = CotLog.select().where(CotLog.uid == uid)
        if start is not None:
            query = query.where(CotLog.time >= start)
        if end is not None:
            query = query.where(CotLog.time <= end)
        newest = list(
            visible(query, CotLog.groups, caller_of(req))
            .order_by(CotLog.time.desc(), _COT_ID.desc())
            .limit(MAX_HISTORY)
        )
        newest.reverse()
        points = _points_by_time(uid, newest)
        events = "\n".join(event_xml(row, points.get(row.time)) for row in newest)
        _send_xml(resp, f"<events>{events}</events>")
