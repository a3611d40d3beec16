"""Parse one CoT event, once, into a slotted :class:`CotEvent`.

A worker receives one framed event (bytes starting at ``<event``, no XML declaration) and turns
it into a :class:`CotEvent` that carries everything routing and storage need, plus the original
bytes untouched: no later stage parses or re-serialises the XML again (STYLE rule 6).

The hot path is :meth:`CotParser.parse`; the worker owns one :class:`CotParser` for its whole
life. :func:`parse_event` is the same parse for tests and tools, with a throw-away parser.

Field semantics (the same for every field read from an attribute): an absent attribute is
``None``, a present but empty one is ``""``. Elements are looked up among *direct* children only
(``event/point``, ``event/detail``, ``detail/contact`` ...); where the schema allows one element
and a sender repeats it, the first wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, cast

from lxml import etree

from otszmq.errors import CotParseError
from otszmq.safexml import hardened_parser

__all__ = [
    "Chat",
    "CotEvent",
    "CotParser",
    "Dest",
    "Link",
    "parse_cot_time",
    "parse_event",
]

# The xs:dateTime shapes CoT senders use: seconds always present, 0-9 fraction digits (ATAK sends
# 3, WinTAK 1-2, Python senders 6, some .NET senders 7), then 'Z', 'z', a '+hh:mm' offset or
# nothing (read as UTC, which is what CoT times are by definition). Anything else is garbage.
# NOTE: datetime.fromisoformat alone is not a validator: on 3.11 it also takes date-only strings,
# week dates, the basic format, any separator, ',' fractions, '+hhmm', and even junk such as
# "2015-10-15T20:30:Z" or "...T20:30:485Z". This pattern is the grammar; fromisoformat converts.
_TIME_SHAPE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)

# Longest attribute value quoted back in an error message: values come from the network and may
# be megabytes long, and each message is logged.
_MAX_QUOTED: Final = 64

# A chat's type and its receipts (b-t-f-d delivered, b-t-f-r read, ...) all sit below this type.
_CHAT_TYPE: Final = "b-t-f"

# Batch parsing (CotParser.parse_batch): one source's events are parsed as the children of a
# wrapper element, with a processing instruction of this target between every two of them.
_BATCH_TARGET: Final = "otszmq-next"
_BATCH_TARGET_BYTES: Final = _BATCH_TARGET.encode()
_BATCH_MARK: Final = b"<?" + _BATCH_TARGET_BYTES + b"?>"
_BATCH_OPEN: Final = b"<otszmq-batch>"
_BATCH_CLOSE: Final = b"</otszmq-batch>"
BATCH_MAX_EVENTS: Final = 64
"""Events parsed in one libxml2 call at most (past ~25 the saving per event stops growing)."""
BATCH_MAX_BYTES: Final = 128 * 1024
"""Bytes parsed in one libxml2 call at most."""
BATCH_MAX_EVENT_BYTES: Final = 8 * 1024
"""A larger event is parsed on its own: its parse costs far more than the fixed cost saved."""


# The small value objects stay frozen (hashable, safe to share between stages): with 3-7 fields
# that costs a fraction of a microsecond each, unlike the 25 of CotEvent below.
@dataclass(frozen=True, slots=True)
class Dest:
    """One ``detail/marti/dest``: an explicit destination of the event."""

    callsign: str | None
    uid: str | None
    mission: str | None


@dataclass(frozen=True, slots=True)
class Chat:
    """GeoChat fields from ``detail/__chat``; ``text`` is the ``detail/remarks`` text."""

    chatroom: str | None
    chat_id: str | None  # __chat@id: the room, or the recipient's uid in a direct chat
    parent: str | None  # RootContactGroup | TeamGroups | UserGroups
    sender_callsign: str | None
    message_id: str | None
    group_owner: str | None  # the attribute as sent ("true"/"false"), not a bool
    text: str | None


@dataclass(frozen=True, slots=True)
class Link:
    """One direct ``detail/link`` child (creator, route point, target of a ``t-x-d-d`` ...)."""

    uid: str | None
    type: str | None
    relation: str | None


# PERF: not frozen. A frozen dataclass sets each of these 25 fields through object.__setattr__;
# measured here 4.0 us a construction against 0.5 us, 13% of a whole SA parse. Treat an event
# as read-only all the same: it is shared by routing, storage and the bridge.
@dataclass(slots=True)
class CotEvent:
    """One parsed CoT event. Times are timezone-aware UTC; ``raw`` is the bytes as received."""

    uid: str
    type: str
    how: str
    time: datetime
    start: datetime
    stale: datetime
    # All five are None when the event has no <point> (t-x-takp-q, t-x-c-t from some clients);
    # hae/ce/le are also None when <point> lacks them. NaN is kept as NaN (9999999 = unknown).
    lat: float | None
    lon: float | None
    hae: float | None
    ce: float | None
    le: float | None
    callsign: str | None  # detail/contact@callsign
    endpoint: str | None  # detail/contact@endpoint
    group_name: str | None  # detail/__group@name (ATAK team colour, not a server group)
    group_role: str | None  # detail/__group@role
    takv_device: str | None
    takv_platform: str | None
    takv_os: str | None
    takv_version: str | None
    dests: tuple[Dest, ...]  # from every detail/marti element, in document order
    has_marti: bool  # a <marti> element was present, even an empty one (= broadcast)
    chat: Chat | None  # only when detail/__chat is present
    links: tuple[Link, ...]
    remarks: str | None  # detail/remarks text before any child element; <remarks/> -> None
    raw: bytes
    # STORE: parsed elements for the worker's store hook (otszmq.store.records), which reads
    # what routing does not need from them instead of parsing the bytes again: <detail> itself
    # (_medevac_, <emergency>, ...), and the position report's parts that the parser's walk
    # over <detail> meets anyway (saving the hook a second walk on every SA). Never serialised,
    # not compared, not shown; None when absent. PERF: a slot assignment each.
    detail: etree._Element | None = field(default=None, compare=False, repr=False)
    contact: etree._Element | None = field(default=None, compare=False, repr=False)
    track: etree._Element | None = field(default=None, compare=False, repr=False)
    status: etree._Element | None = field(default=None, compare=False, repr=False)
    video: etree._Element | None = field(default=None, compare=False, repr=False)  # __video

    @property
    def is_ping(self) -> bool:
        """A client keep-alive (``t-x-c-t``): answered with a pong, never routed."""
        return self.type == "t-x-c-t"

    @property
    def is_delete(self) -> bool:
        """A ``t-x-d-d``: the item to delete is ``links[0].uid``."""
        return self.type == "t-x-d-d"

    @property
    def is_chat(self) -> bool:
        """GeoChat (``b-t-f``) or one of its receipts (``b-t-f-d``, ``b-t-f-r`` ...)."""
        # NOTE: compared on whole hyphen-separated atoms, so a type like "b-t-fx" is not a chat.
        cot_type = self.type
        return cot_type == _CHAT_TYPE or cot_type.startswith("b-t-f-")

    @property
    def stale_epoch(self) -> float:
        """``stale`` as POSIX seconds, for cheap comparisons with ``time.time()``."""
        return self.stale.timestamp()


def _quote(value: str) -> str:
    """``repr`` of a value from the wire, cut short so one bad event cannot flood the log."""
    if len(value) > _MAX_QUOTED:
        return repr(value[:_MAX_QUOTED]) + "..."
    return repr(value)


def parse_cot_time(value: str, *, attribute: str = "time") -> datetime:
    """Parse a CoT timestamp into a timezone-aware UTC ``datetime``.

    Fractions of more than six digits are truncated to microseconds; an offset is converted to
    UTC. ``attribute`` only names the value in the error message.
    """
    if _TIME_SHAPE.fullmatch(value) is None:
        raise CotParseError(f"{attribute} is not a valid time: {_quote(value)}")
    # PERF: the shape is checked above, so the C fromisoformat only converts (and range-checks
    # month, day, hour ...). Measured here: about 1 us a call, against 3.5 us for the same regex
    # with groups feeding int() and datetime().
    if value[-1] == "z":  # fromisoformat takes only an upper-case Z
        value = value[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        if parsed.tzinfo is not UTC:
            # An offset other than +00:00; OverflowError if that crosses year 1 or 9999.
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise CotParseError(f"{attribute} is not a valid time: {_quote(value)} ({exc})") from exc
    return parsed


class CotParser:
    """Turns framed event bytes into :class:`CotEvent`; owned by one worker process.

    NOTE: the lxml parser lives here and not in a module-level constant because an lxml parser
    is mutable (it keeps its libxml2 parser context and error log between parses and serialises
    concurrent use with a lock): STYLE forbids module-level mutable state, and a worker that
    creates its own parser after the fork never shares one with another thread or process.
    """

    __slots__ = ("_xml_parser", "batch_fallbacks")

    def __init__(self) -> None:
        self._xml_parser = hardened_parser()
        self.batch_fallbacks = 0  # batches parsed again event by event (see parse_batch)

    def parse(self, data: bytes) -> CotEvent:
        """Parse one event; raise :class:`CotParseError` saying what was wrong."""
        return _parse(data, self._xml_parser)

    def parse_batch(self, payloads: Sequence[bytes]) -> list[CotEvent | CotParseError]:
        """Parse each of ``payloads``: its event, or the error :meth:`parse` would raise.

        PERF: a libxml2 parse has a fixed cost (parser context, document, root proxy) of about
        a third of an SA's; events parsed as the children of one wrapper element pay it once
        (measured here: 18.4 -> 15.8 us an SA with the extraction, in batches of 25). A batch
        that does not parse, or not into exactly its events, is parsed again event by event,
        so every result and error is the one :meth:`parse` gives.
        """
        results: list[CotEvent | CotParseError | None] = [None] * len(payloads)
        chunk: list[int] = []  # indices of the payloads of the next batch
        size = 0
        for index, data in enumerate(payloads):
            # What a client stream's frames always pass (the framer cuts from '<event' to
            # '>'): a declaration, a BOM or white space around an injected event, or an event
            # too big to gain anything, is parsed on its own instead of failing a batch.
            if (
                not data.startswith(b"<event")
                or data[-1:] != b">"
                or len(data) > BATCH_MAX_EVENT_BYTES
                or _BATCH_TARGET_BYTES in data
            ):
                results[index] = self._parse_or_error(data)
                continue
            if len(chunk) == BATCH_MAX_EVENTS or size + len(data) > BATCH_MAX_BYTES:
                self._parse_chunk(payloads, chunk, results)
                chunk, size = [], 0
            chunk.append(index)
            size += len(data)
        if chunk:
            self._parse_chunk(payloads, chunk, results)
        return cast(list[CotEvent | CotParseError], results)

    def _parse_or_error(self, data: bytes) -> CotEvent | CotParseError:
        try:
            return _parse(data, self._xml_parser)
        except CotParseError as exc:
            return exc

    def _parse_chunk(
        self,
        payloads: Sequence[bytes],
        chunk: list[int],
        results: list[CotEvent | CotParseError | None],
    ) -> None:
        """Parse the payloads at ``chunk`` into ``results``: in one parse if it proves sound."""
        roots = None
        if len(chunk) > 1:
            data = _BATCH_MARK.join([payloads[index] for index in chunk])
            try:
                wrapper = etree.fromstring(_BATCH_OPEN + data + _BATCH_CLOSE, self._xml_parser)
            except (etree.LxmlError, ValueError):
                wrapper = None
            roots = None if wrapper is None else _aligned_roots(wrapper, len(chunk))
            if roots is None:
                self.batch_fallbacks += 1
        if roots is None:
            for index in chunk:
                results[index] = self._parse_or_error(payloads[index])
            return
        for index, root in zip(chunk, roots, strict=True):
            try:
                results[index] = _event_from_root(root, payloads[index])
            except CotParseError as exc:
                results[index] = exc


def parse_event(data: bytes) -> CotEvent:
    """Parse one event with a throw-away parser (tests, tools); workers use :class:`CotParser`.

    PERF: a fresh parser (and libxml2 parser context) per call measured about 6 us more per
    event than :meth:`CotParser.parse`, some 20% of a whole SA parse.
    """
    return _parse(data, hardened_parser())


def _aligned_roots(wrapper: etree._Element, count: int) -> list[etree._Element] | None:
    """The ``count`` event roots of a batch document, if its children alternate event, marker,
    event ... with no text between them; else None.

    Why they are then what each payload parsed alone would give: no payload names the marker's
    target (CotParser.parse_batch checks), so the document's ``<?otszmq-next?>`` instructions
    are exactly the ones put between payloads. If all of them are children of the wrapper, the
    wrapper is the only open element at each, so every payload is balanced on its own: whole
    nodes at the top level. Children alternating event, marker, event ... with no text then
    mean each payload is exactly one ``<event>`` element, in a context (no namespace, entity
    or DTD declared) that is the same as a document of its own; and no payload can bring a
    DOCTYPE (one after the wrapper's start tag is not well-formed).
    """
    children = list(wrapper)
    if len(children) != 2 * count - 1:
        return None  # a marker inside an element: some payload is not balanced
    roots = children[::2]
    for root in roots:
        # A tail is text after an event: a payload holding more than its event ('>' may end
        # text). NOTE: nothing can come before one: every payload starts with '<event'.
        if root.tag != "event" or root.tail is not None:
            return None
    for marker in children[1::2]:
        # Another processing instruction in a marker's place: a payload's own, so some
        # payload spans more than one top-level node (and our marker is nested somewhere).
        if not isinstance(marker, etree._ProcessingInstruction) or marker.target != _BATCH_TARGET:
            return None
    return roots


def _missing(root: etree._Element) -> CotParseError:
    """The error for an event that lacks one of its required attributes (or has it empty)."""
    for name in ("uid", "type", "time", "start", "stale"):
        value = root.get(name)
        if value is None:
            return CotParseError(f"missing attribute {name!r}")
        if not value and name in ("uid", "type"):
            return CotParseError(f"attribute {name!r} is empty")
    return CotParseError("missing a required attribute")  # not reached: the caller checked


def _float(point: etree._Element, name: str) -> float | None:
    value = point.get(name)
    if value is None:
        return None
    try:
        # NOTE: float() also takes "nan", "NaN" (FreeTAKTest sends ce="nan") and "inf": NaN is
        # kept as NaN, the same as the 9999999 that means "unknown".
        return float(value)
    except ValueError as exc:
        raise CotParseError(f"point {name} is not a number: {_quote(value)}") from exc


def _degrees(point: etree._Element, name: str, limit: float) -> float:
    """A required lat or lon within [-limit, limit] (NaN passes: every comparison is false)."""
    value = point.get(name)
    if value is None:
        raise CotParseError(f"point is missing attribute {name!r}")
    try:
        degrees = float(value)
    except ValueError as exc:
        raise CotParseError(f"point {name} is not a number: {_quote(value)}") from exc
    if degrees < -limit or degrees > limit:
        raise CotParseError(f"point {name} out of range [-{limit:g}, {limit:g}]: {_quote(value)}")
    return degrees


_NO_POSITION: Final[tuple[None, None, None, None, None]] = (None, None, None, None, None)

# What _read_detail found: contact, __group, takv, __chat and remarks elements (or None), the
# marti dests, the links, whether a <marti> was present, then (STORE) the track, status and
# __video elements.
_DetailParts = tuple[
    etree._Element | None,
    etree._Element | None,
    etree._Element | None,
    etree._Element | None,
    etree._Element | None,
    tuple[Dest, ...],
    tuple[Link, ...],
    bool,
    etree._Element | None,
    etree._Element | None,
    etree._Element | None,
]
_NO_DETAIL: Final[_DetailParts] = (
    None, None, None, None, None, (), (), False, None, None, None,
)


def _event_root(data: bytes, xml_parser: etree.XMLParser) -> etree._Element:
    """Parse the bytes and check that they hold an ``<event>`` document without a DTD."""
    try:
        root = etree.fromstring(data, xml_parser)
    except (etree.LxmlError, ValueError) as exc:
        raise CotParseError(f"not well-formed XML: {exc}") from exc
    # Entities are neither loaded nor expanded, but a DTD has no business in CoT at all: refuse
    # it outright rather than reason about what libxml2 did with its internal subset.
    # NOTE: lxml-stubs 0.5 does not declare DocInfo.doctype ('' when there is no DOCTYPE).
    doctype: str = root.getroottree().docinfo.doctype  # type: ignore[union-attr]
    if doctype:
        raise CotParseError("a DOCTYPE is not allowed in a CoT event")
    if root.tag != "event":
        raise CotParseError(f"root element is {_quote(str(root.tag))}, expected 'event'")
    return root


def _position(
    point: etree._Element,
) -> tuple[float, float, float | None, float | None, float | None]:
    """lat, lon, hae, ce, le of a ``<point>``; lat and lon are required, hae/ce/le are not.

    PERF: the five read and converted in one function and one ``try``, an error worked out
    afterwards by :func:`_point_error`: 1.70 -> 1.50 us a ``<point>`` (timeit, side by side;
    a call and a ``try`` per value cost more than the conversions).
    """
    get = point.get
    lat_text, lon_text = get("lat"), get("lon")
    hae_text, ce_text, le_text = get("hae"), get("ce"), get("le")
    try:
        # float(None) raises TypeError: a missing lat or lon.
        lat = float(lat_text)  # type: ignore[arg-type]
        lon = float(lon_text)  # type: ignore[arg-type]
        hae = None if hae_text is None else float(hae_text)
        ce = None if ce_text is None else float(ce_text)
        le = None if le_text is None else float(le_text)
    except (TypeError, ValueError):
        raise _point_error(point) from None
    # NaN passes: every comparison with it is false.
    if lat < -90.0 or lat > 90.0 or lon < -180.0 or lon > 180.0:
        raise _point_error(point)
    return lat, lon, hae, ce, le


def _point_error(point: etree._Element) -> CotParseError:
    """The error for a ``<point>`` that :func:`_position` refused: the first of its attributes
    found wrong, checked one by one in the order lat, lon, hae, ce, le."""
    try:
        _degrees(point, "lat", 90.0)
        _degrees(point, "lon", 180.0)
        for name in ("hae", "ce", "le"):
            _float(point, name)
    except CotParseError as exc:
        return exc
    return CotParseError("point is not valid")  # not reached: the caller found an error


def _read_detail(detail: etree._Element) -> _DetailParts:
    """One walk over the children of ``<detail>``, picking out what routing and storage read."""
    contact = group = takv = chat = remarks = track = status = video = None
    dests: list[Dest] = []
    links: list[Link] = []
    has_marti = False
    for child in detail:
        tag = child.tag
        if tag == "contact":
            if contact is None:
                contact = child
        elif tag == "link":
            links.append(Link(child.get("uid"), child.get("type"), child.get("relation")))
        elif tag == "__group":
            if group is None:
                group = child
        elif tag == "takv":
            if takv is None:
                takv = child
        elif tag == "remarks":
            if remarks is None:
                remarks = child
        elif tag == "__chat":
            if chat is None:
                chat = child
        elif tag == "marti":
            # NOTE: dests of every <marti> are kept: an event addressed anywhere must not be
            # mistaken for a broadcast because a sender split its destinations.
            has_marti = True
            for dest in child:
                if dest.tag == "dest":
                    dests.append(Dest(dest.get("callsign"), dest.get("uid"), dest.get("mission")))
        # STORE: last in the chain, so the branches above cost what they did before.
        elif tag == "track":
            if track is None:
                track = child
        elif tag == "status":
            if status is None:
                status = child
        elif tag == "__video" and video is None:
            video = child
    return (
        contact, group, takv, chat, remarks, tuple(dests), tuple(links), has_marti, track,
        status, video,
    )


def _parse(data: bytes, xml_parser: etree.XMLParser) -> CotEvent:
    return _event_from_root(_event_root(data, xml_parser), data)


def _event_from_root(root: etree._Element, data: bytes) -> CotEvent:
    """The event of a parsed ``<event>`` root whose bytes are ``data``."""
    get = root.get
    uid = get("uid")
    cot_type = get("type")
    time_text = get("time")
    start_text = get("start")
    stale_text = get("stale")
    # PERF: one test on the common path; _missing works out which attribute was wrong.
    if not (uid and cot_type) or time_text is None or start_text is None or stale_text is None:
        raise _missing(root)
    time = parse_cot_time(time_text, attribute="time")
    # PERF: start is usually the very same string as time; parse it only once.
    start = time if start_text == time_text else parse_cot_time(start_text, attribute="start")
    stale = parse_cot_time(stale_text, attribute="stale")

    # PERF: one walk over the children instead of find() per element: find() goes through
    # ElementPath and costs ~2 us a call, more than walking all the children of an SA.
    point = detail = None
    for child in root:
        tag = child.tag
        if tag == "point":
            if point is None:
                point = child
        elif tag == "detail" and detail is None:
            detail = child

    lat, lon, hae, ce, le = _NO_POSITION if point is None else _position(point)
    (
        contact, group, takv, chat_element, remarks_element, dests, links, has_marti, track,
        status, video,
    ) = _NO_DETAIL if detail is None else _read_detail(detail)
    remarks = None if remarks_element is None else remarks_element.text
    chat = None
    if chat_element is not None:
        chat_get = chat_element.get
        chat = Chat(
            chatroom=chat_get("chatroom"),
            chat_id=chat_get("id"),
            parent=chat_get("parent"),
            sender_callsign=chat_get("senderCallsign"),
            message_id=chat_get("messageId"),
            group_owner=chat_get("groupOwner"),
            text=remarks,
        )

    # PERF: positional, in the field order of CotEvent: CPython matches keyword arguments
    # against the parameter names one by one, and 30 of them cost 1.6 us a call against 0.4
    # (test_cot's field-by-field tests catch a misplaced one).
    return CotEvent(
        uid, cot_type, get("how") or "", time, start, stale,
        lat, lon, hae, ce, le,
        None if contact is None else contact.get("callsign"),  # callsign
        None if contact is None else contact.get("endpoint"),  # endpoint
        None if group is None else group.get("name"),  # group_name
        None if group is None else group.get("role"),  # group_role
        None if takv is None else takv.get("device"),  # takv_device
        None if takv is None else takv.get("platform"),  # takv_platform
        None if takv is None else takv.get("os"),  # takv_os
        None if takv is None else takv.get("version"),  # takv_version
        dests, has_marti, chat, links, remarks, data,
        detail, contact, track, status, video,
    )
