"""TAK Protocol Version 1 on a stream: ``0xbf`` + varint framing, and XML <-> protobuf.

A TLS client that accepts the ``t-x-takp`` negotiation (:mod:`otszmq.ingest.negotiation`) speaks
*stream messages* from then on, in both directions: the magic byte ``0xbf``, the payload length
as a protobuf unsigned varint, and one serialised ``TakMessage`` (the schema is takproto's, from
ATAK's ``takproto/*.proto``).

Design (the rest of the pipeline stays XML-only):

- :class:`ProtoFramer` is the sans-IO twin of :class:`~otszmq.ingest.framing.XmlFramer`:
  ``feed(bytes) -> payloads``, bounded by ``max_event_size``. A length over the bound raises
  :class:`FrameTooLarge` as soon as the varint says so (nothing is buffered for it). Bytes where a
  magic byte should be are garbage: skipped up to the next ``0xbf`` and counted, as ATAK's own
  reader does; more than ``max_event_size`` garbage bytes without a good frame in between raise
  :class:`UnexpectedData` (the peer is not speaking the protocol at all).
- :class:`TakCodec` converts one payload to CoT XML bytes on the way in (so workers, routing and
  the store never see protobuf) and routed CoT XML to a whole stream message on the way out. The
  ingest service encodes each routed event at most once, on its first protobuf recipient, and
  hands the same bytes to every other protobuf recipient (``IngestService._deliver``).

The detail mapping follows ``detail.proto``: a ``<contact>``, ``<__group>``,
``<precisionlocation>``, ``<status>``, ``<takv>`` or ``<track>`` element becomes its typed
message only when that is lossless (it appears once, has exactly the message's attributes, all
non-empty and of the right type, and no content); anything else travels whole, serialised, in
``xmlDetail``. Decoding merges the typed messages back, except where ``xmlDetail`` holds the same
element (then xmlDetail wins, as the .proto comments require).

NOTE: takproto's own ``xml2proto`` is not used for the mapping: it splits elements (a
``<contact phone=...>`` loses its phone), drops the detail of multi-line GeoChats, and accepts
fewer time shapes than our workers; and takproto has no protobuf -> XML direction at all. Only its
generated message classes are used.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
from lxml import etree
from takproto.proto import TakMessage

from otszmq.errors import CotParseError, FrameTooLarge, UnexpectedData
from otszmq.ingest.framing import StreamFramer
from otszmq.safexml import hardened_parser
from otszmq.servercot import cot_time
from otszmq.workers.cot import parse_cot_time

__all__ = ["MAGIC", "ProtoFramer", "TakCodec", "encode_varint", "stream_message"]

MAGIC: Final = 0xBF
_MAGIC_BYTE: Final = b"\xbf"
_VARINT_MAX_BYTES: Final = 10  # a 64-bit value; anything longer is not a varint
_UNKNOWN: Final = 9999999.0  # CoT's "unknown" for hae/ce/le when an event has no point
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_UINT32_MAX: Final = (1 << 32) - 1
_MAX_QUOTED: Final = 64


def encode_varint(value: int) -> bytes:
    """A protobuf unsigned varint (7 bits a byte, least significant first)."""
    if value < 0:
        raise ValueError(f"a varint cannot hold a negative value: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def stream_message(payload: bytes) -> bytes:
    """One TAK protocol stream message: ``0xbf``, varint length, payload."""
    return _MAGIC_BYTE + encode_varint(len(payload)) + payload


class ProtoFramer(StreamFramer[bytes]):
    """Split one connection's TAK protocol stream into payloads (``TakMessage`` bytes).

    ``skipped`` counts garbage bytes passed over and ``resyncs`` the runs of them. After an error
    the framer is dead: every later :meth:`feed` raises the same kind of error.
    """

    __slots__ = ("_garbage_run", "resyncs", "skipped")

    def __init__(self, max_event_size: int = 1 << 20) -> None:
        if max_event_size < 1:
            raise ValueError(f"max_event_size must be positive, got {max_event_size}")
        super().__init__(max_event_size)  # _buf: an unfinished message, from its magic byte
        self._garbage_run = 0  # garbage bytes since the last good message
        self.skipped = 0
        self.resyncs = 0


    def _feed(self, data: bytes) -> list[bytes]:
        payloads: list[bytes] = []
        origin = self._fed - len(self._buf)  # stream offset of view[0]
        view: bytes | bytearray
        if self._buf:
            self._buf += data
            view = self._buf
        else:
            view = data
        n = len(view)
        pos = 0
        while pos < n:
            if view[pos] != MAGIC:
                found = view.find(_MAGIC_BYTE, pos)
                end = n if found < 0 else found
                self._skip(end - pos, origin + pos)
                pos = end
                continue
            header_end, length = self._header(view, pos, origin)
            if header_end < 0:  # a bad varint: the magic byte was garbage
                self._skip(1, origin + pos)
                pos += 1
                continue
            if header_end == 0:  # the header is not complete yet
                break
            end = header_end + length
            if end > n:
                break
            # PERF: slicing `bytes` is the one copy; a bytearray slice needs bytes() on top.
            payload = view[header_end:end]
            payloads.append(payload if isinstance(payload, bytes) else bytes(payload))
            self._garbage_run = 0
            pos = end
        if view is self._buf:
            if pos:
                del self._buf[:pos]
        elif pos < n:
            self._buf = bytearray(memoryview(data)[pos:])
        return payloads

    def _header(self, view: bytes | bytearray, pos: int, origin: int) -> tuple[int, int]:
        """Parse the varint after the magic at ``pos``: (index past it, length).

        Returns (0, 0) if the varint is not complete yet and (-1, 0) if it is not a varint.
        Raises :class:`FrameTooLarge` as soon as the length is known to exceed the limit.
        """
        length = shift = 0
        i = pos + 1
        n = len(view)
        while i < n:
            byte = view[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if length > self._max:
                raise FrameTooLarge(
                    f"TAK protocol message at stream byte {origin + pos} declares more than "
                    f"max_event_size={self._max} bytes"
                )
            if not byte & 0x80:
                return i, length
            shift += 7
            if i - pos > _VARINT_MAX_BYTES:
                return -1, 0
        return 0, 0

    def _skip(self, count: int, at: int) -> None:
        if not self._garbage_run:
            self.resyncs += 1
        self._garbage_run += count
        self.skipped += count
        if self._garbage_run > self._max:
            raise UnexpectedData(
                f"{self._garbage_run} bytes without a TAK protocol message (0xbf) up to stream "
                f"byte {at + count}: not a TAK protocol stream"
            )


# Converters of an attribute value to its typed field: None when that would lose something.
def _text(value: str) -> str | None:
    return value or None


def _uint32(value: str) -> int | None:
    if value.isascii() and value.isdigit() and int(value) <= _UINT32_MAX:
        return int(value)
    return None


def _double(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


_Convert = Callable[[str], object | None]
# detail child tag -> (Detail field, its attributes, all required, and their converter).
_TYPED: Final[dict[str, tuple[str, tuple[str, ...], _Convert]]] = {
    "contact": ("contact", ("endpoint", "callsign"), _text),
    "__group": ("group", ("name", "role"), _text),
    "precisionlocation": ("precisionLocation", ("geopointsrc", "altsrc"), _text),
    "status": ("status", ("battery",), _uint32),
    "takv": ("takv", ("device", "platform", "os", "version"), _text),
    "track": ("track", ("speed", "course"), _double),
}
_EVENT_TEXT: Final = ("type", "access", "qos", "opex", "uid", "how")
_EVENT_TIMES: Final = (("time", "sendTime"), ("start", "startTime"), ("stale", "staleTime"))
_POINT: Final = ("lat", "lon", "hae", "ce", "le")


# What must be escaped in a double-quoted attribute value (tab, CR and LF would be normalised to
# spaces by a parser, so they are escaped too).
_ATTR_SPECIAL: Final = re.compile(r'[&<>"\t\n\r]')
_ATTR_ESCAPES: Final = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;",
    "\r": "&#13;",
})


def _attr(value: str) -> str:
    """``value`` as a double-quoted XML attribute value.

    PERF: most values need no escaping; one C regex search tells, instead of quoteattr's chain
    of replaces (it was the biggest part of decode after the parse).
    """
    if _ATTR_SPECIAL.search(value) is None:
        return f'"{value}"'
    return f'"{value.translate(_ATTR_ESCAPES)}"'


def _quote(value: str) -> str:
    return repr(value[:_MAX_QUOTED]) + ("..." if len(value) > _MAX_QUOTED else "")


class TakCodec:
    """CoT XML <-> TAK protocol v1, for one ingest process.

    NOTE: it owns an lxml parser (mutable, so not module state); the ingest service owns one
    codec for its whole life. Both directions raise :class:`CotParseError` saying what was wrong;
    such an error costs that one event.
    """

    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser = hardened_parser()

    # -- XML -> protobuf (routed events to protobuf clients) -----------------------------

    def encode(self, xml: bytes) -> bytes:
        """A routed CoT event as one whole stream message (``0xbf``, varint, payload)."""
        return stream_message(self.message(xml).SerializeToString())

    def message(self, xml: bytes) -> Any:
        """The ``TakMessage`` of one CoT event (takproto's classes are untyped)."""
        root = self._parse(xml, "event")
        if root.tag != "event":
            raise CotParseError(f"root element is {_quote(str(root.tag))}, expected 'event'")
        message = TakMessage()
        event = message.cotEvent
        for name in _EVENT_TEXT:
            value = root.get(name)
            if value:
                setattr(event, name, value)
        for name, field in _EVENT_TIMES:
            value = root.get(name)
            if value is not None:
                setattr(event, field, _epoch_ms(value, name))
        point = root.find("point")
        for name in _POINT:
            value = point.get(name) if point is not None else None
            setattr(event, name, _point_value(value, name))
        detail = root.find("detail")
        if detail is not None:
            _encode_detail(detail, event.detail)
        return message

    # -- protobuf -> XML (events from protobuf clients) ----------------------------------

    def decode(self, payload: bytes) -> bytes | None:
        """The CoT XML of one payload, or None for a message without an event (TakControl)."""
        message = TakMessage()
        try:
            message.ParseFromString(payload)
        except DecodeError as exc:
            raise CotParseError(f"not a TAK protocol v1 message: {exc}") from exc
        if not message.HasField("cotEvent"):
            return None
        event = message.cotEvent
        parts = [
            f'<event version="2.0" uid={_attr(event.uid)} type={_attr(event.type)}'
        ]
        for name in ("how", "access", "qos", "opex"):
            value = getattr(event, name)
            if value:
                parts.append(f" {name}={_attr(value)}")
        for name, field in _EVENT_TIMES:
            parts.append(f' {name}="{_cot_time_ms(getattr(event, field), name)}"')
        parts.append("><point")
        for name in _POINT:
            parts.append(f' {name}="{getattr(event, name)!r}"')
        parts.append("/>")
        if event.HasField("detail"):
            parts.append(f"<detail>{self._decode_detail(event.detail)}</detail>")
        parts.append("</event>")
        return "".join(parts).encode()

    def _decode_detail(self, detail: Any) -> str:
        xml_detail: str = detail.xmlDetail
        in_xml: set[str] = set()
        if xml_detail:
            # Checked here so that a broken fragment costs this event alone, with a clear error.
            fragment = self._parse(f"<detail>{xml_detail}</detail>".encode(), "xmlDetail")
            in_xml = {child.tag for child in fragment if isinstance(child.tag, str)}
        parts = []
        for tag, (field, names, _) in _TYPED.items():
            if tag in in_xml or not detail.HasField(field):
                continue
            typed = getattr(detail, field)
            attrs = "".join(
                f" {name}={_attr(_attr_text(getattr(typed, name)))}" for name in names
            )
            parts.append(f"<{tag}{attrs}/>")
        parts.append(xml_detail)
        return "".join(parts)

    def _parse(self, data: bytes, what: str) -> Any:
        try:
            root = etree.fromstring(data, self._parser)
        except (etree.LxmlError, ValueError) as exc:
            raise CotParseError(f"{what} is not well-formed XML: {exc}") from exc
        doctype: str = root.getroottree().docinfo.doctype  # type: ignore[union-attr]
        if doctype:
            raise CotParseError(f"a DOCTYPE is not allowed in {what}")
        return root


def _encode_detail(detail: Any, out: Any) -> None:
    children = [child for child in detail if isinstance(child.tag, str)]
    counts = Counter(child.tag for child in children)
    rest = []
    for child in children:
        if counts[child.tag] == 1 and _to_typed(child, out):
            continue
        rest.append(etree.tostring(child, encoding="unicode", with_tail=False))
    if rest:
        out.xmlDetail = "".join(rest)


def _to_typed(element: Any, detail: Any) -> bool:
    """Fill the typed message of ``element`` if that loses nothing; True if it did."""
    spec = _TYPED.get(element.tag)
    if spec is None or len(element) or (element.text and element.text.strip()):
        return False
    field, names, convert = spec
    attrib = element.attrib
    if len(attrib) != len(names):
        return False
    values = []
    for name in names:
        raw = attrib.get(name)
        value = convert(raw) if raw is not None else None
        if value is None:
            return False
        values.append(value)
    typed = getattr(detail, field)
    for name, value in zip(names, values, strict=True):
        setattr(typed, name, value)
    return True


def _epoch_ms(value: str, name: str) -> int:
    ms = (parse_cot_time(value, attribute=name) - _EPOCH) // _MS
    if ms < 0:
        raise CotParseError(f"{name} is before 1970, which TAK protocol cannot carry: {value!r}")
    return ms


def _cot_time_ms(ms: int, name: str) -> str:
    try:
        return cot_time(_EPOCH + ms * _MS)
    except OverflowError as exc:
        raise CotParseError(f"{name} is out of range: {ms} ms since 1970") from exc


def _point_value(value: str | None, name: str) -> float:
    if value is None:
        return 0.0 if name in ("lat", "lon") else _UNKNOWN
    try:
        return float(value)
    except ValueError as exc:
        raise CotParseError(f"point {name} is not a number: {_quote(value)}") from exc


def _attr_text(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)
