"""The asyncio protocol of one CoT stream connection.

It only feeds bytes to the sans-IO framer and hands complete frames to the
service; writing, routing and policy live elsewhere. One class serves every
transport (plain TCP and TLS), so there is one code path to get right.

On the TLS port it also runs the TAK protocol negotiation (:mod:`otszmq.ingest.negotiation`):
the ``t-x-takp-v`` offer is the first thing a TLS client reads, and a client whose
``t-x-takp-q`` asks for version 1 gets ``t-x-takp-r`` true, after which this connection's
bytes go through a :class:`~otszmq.ingest.takproto_codec.ProtoFramer` and each payload is
turned into CoT XML before it reaches the service (workers only ever see XML). Outbound, the
connection's :class:`Outbound` is switched to protobuf and the service encodes for it.
Plain TCP stays XML: the issue asks for protobuf on the TLS port only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, cast

from otszmq.errors import CotParseError, FramingError
from otszmq.ingest import negotiation
from otszmq.ingest.framing import FrameKind, XmlFramer, event_type
from otszmq.ingest.outbound import Outbound
from otszmq.ingest.registry import Connection
from otszmq.ingest.takproto_codec import ProtoFramer
from otszmq.ingest.tls import peer_serial
from otszmq.pki.tls import peer_common_name

if TYPE_CHECKING:
    from otszmq.ingest.service import IngestService

log = logging.getLogger(__name__)

# PERF: a module name is read in ~6 ns, an Enum member through its class in ~70 (CPython 3.11).
_EVENT_FRAME = FrameKind.EVENT

WRITE_HIGH_WATER = 256 * 1024
"""Bytes the transport may buffer before the client counts as slow (pause_writing)."""


class CotStreamProtocol(asyncio.Protocol):
    __slots__ = ("_conn_id", "_offer_uid", "conn", "framer", "proto_framer", "service")

    def __init__(self, service: IngestService, conn_id: int) -> None:
        self.service = service
        self.framer = XmlFramer(service.config.max_event_size)
        # Set once the client switched to TAK protocol v1; from then on it reads every byte.
        self.proto_framer: ProtoFramer | None = None
        self.conn: Connection | None = None
        self._conn_id = conn_id
        self._offer_uid = ""  # the uid of our t-x-takp-v offer; "" if none was made (TCP)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peername = transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        self.conn = Connection(
            id=self._conn_id, peer=peer, out=Outbound(transport), last_activity=time.monotonic()
        )
        # On the TLS port the handshake has verified the certificate by now; its CN is the user.
        peercert = transport.get_extra_info("peercert")
        if peercert:
            self.conn.user = peer_common_name(peercert) or ""
            self.conn.cert_serial = peer_serial(peercert)
        if transport.get_extra_info("sslcontext") is not None:
            # First, before any replayed state: protocol.txt allows the offer once per connection.
            self._offer_uid = str(uuid.uuid4())
            transport.write(negotiation.offer(self._offer_uid))
        self.service.connected(self.conn)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closing:
            return
        conn.last_activity = time.monotonic()
        if self.proto_framer is not None:
            self._proto_received(conn, self.proto_framer, data)
            return
        try:
            frames = self.framer.feed(data)
        except FramingError as exc:
            self.service.reject(conn, f"framing error: {exc}")
            return
        if not frames:
            return
        service = self.service
        events: list[bytes] = []
        for frame in frames:
            if frame.kind is _EVENT_FRAME:
                event = frame.data
                # PERF: a C substring scan first; the start tag is read only for likely hits.
                if negotiation.CONTROL_PREFIX in event and _is_control(event):
                    self._control(conn, event)
                else:
                    events.append(event)
            else:
                service.auth_from(conn, frame.data)
        if events:
            service.events_from(conn, events)

    def _control(self, conn: Connection, event: bytes) -> None:
        """A ``t-x-takp-*`` event: answer a request for our offer; route none of them."""
        counters = self.service.counters
        if (
            not self._offer_uid
            or self.proto_framer is not None
            or event_type(event) != negotiation.REQUEST_TYPE
        ):
            counters.inc("takp_ignored")
            return
        version = negotiation.requested_version(event)
        accepted = version == negotiation.SUPPORTED_VERSION
        answer = negotiation.response(self._offer_uid, accepted)
        try:
            if accepted:
                conn.out.switch_to_proto(answer)
            else:
                conn.out.send_now(answer)
        except (OSError, RuntimeError) as exc:
            log.debug("write failed: %s", exc)
        if not accepted:
            # The client may retry or stay XML (protocol.txt step 7b).
            counters.inc("takp_refused")
            log.info("client %s asked for TAK protocol version %s: refused", conn.peer, version)
            return
        counters.inc("takp_accepted")
        if self.framer.buffered:
            # The client must send nothing between its request and our answer; these bytes
            # are an unfinished XML item it sent anyway, and no decoder can use them now.
            counters.inc("takp_discarded_bytes", self.framer.buffered)
        self.proto_framer = ProtoFramer(self.service.config.max_event_size)
        log.info("client %s switched to TAK protocol version 1", conn.peer)

    def _proto_received(self, conn: Connection, framer: ProtoFramer, data: bytes) -> None:
        service = self.service
        counters = service.counters
        skipped = framer.skipped
        try:
            payloads = framer.feed(data)
        except FramingError as exc:
            service.reject(conn, f"TAK protocol framing error: {exc}")
            return
        finally:
            if framer.skipped != skipped:
                counters.inc("proto_skipped_bytes", framer.skipped - skipped)
        if not payloads:
            return
        counters.inc("proto_messages_in", len(payloads))
        codec = service.takcodec
        events: list[bytes] = []
        for payload in payloads:
            try:
                event = codec.decode(payload)
            except CotParseError as exc:
                # Costs this message only, like a malformed XML event costs its event.
                counters.inc("proto_decode_errors")
                log.debug("dropping a TAK protocol message from %s: %s", conn.peer, exc)
                continue
            if event is None or (negotiation.CONTROL_PREFIX in event and _is_control(event)):
                continue  # TakControl only, or a negotiation event: nothing to route
            events.append(event)
        if events:
            service.events_from(conn, events)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.service.disconnected(self.conn, exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.out.pause()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.out.resume()


def _is_control(event: bytes) -> bool:
    kind = event_type(event)
    return kind is not None and kind.startswith(negotiation.CONTROL_PREFIX)
