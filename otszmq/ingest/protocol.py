"""The asyncio protocol of one CoT stream connection.

It only feeds bytes to the sans-IO framer and hands complete frames to the
service; writing, routing and policy live elsewhere. One class serves every
transport (plain TCP now, TLS later), so there is one code path to get right.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

from otszmq.errors import FramingError
from otszmq.ingest.framing import FrameKind, XmlFramer
from otszmq.ingest.outbound import Outbound
from otszmq.ingest.registry import Connection
from otszmq.ingest.tls import peer_serial
from otszmq.pki.tls import peer_common_name

if TYPE_CHECKING:
    from otszmq.ingest.service import IngestService

log = logging.getLogger(__name__)

WRITE_HIGH_WATER = 256 * 1024
"""Bytes the transport may buffer before the client counts as slow (pause_writing)."""


class CotStreamProtocol(asyncio.Protocol):
    __slots__ = ("_conn_id", "conn", "framer", "service")

    def __init__(self, service: IngestService, conn_id: int) -> None:
        self.service = service
        self.framer = XmlFramer(service.config.max_event_size)
        self.conn: Connection | None = None
        self._conn_id = conn_id

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
        self.service.connected(self.conn)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closing:
            return
        conn.last_activity = time.monotonic()
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
            if frame.kind is FrameKind.EVENT:
                events.append(frame.data)
            else:
                service.auth_from(conn, frame.data)
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
