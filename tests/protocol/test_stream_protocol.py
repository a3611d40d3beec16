"""CotStreamProtocol through a fake transport: it only frames and hands over."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otszmq.ingest.protocol import WRITE_HIGH_WATER, CotStreamProtocol
from otszmq.ingest.registry import Connection

EVENT = b'<event uid="x" type="a-f-G"><point lat="1" lon="2"/></event>'


class FakeTransport:
    def __init__(self) -> None:
        self.limits: dict[str, Any] = {}
        self.written: list[bytes] = []

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = {"high": high, "low": low}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.1.2.3", 4567) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, chunks: list[bytes | memoryview]) -> None:
        self.write(b"".join(chunks))  # what asyncio's default writelines does


@dataclass(frozen=True)
class FakeConfig:
    max_event_size: int = 200


@dataclass
class FakeService:
    config: FakeConfig = field(default_factory=FakeConfig)
    events: list[bytes] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    auths: list[bytes] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    connected_conns: list[Connection] = field(default_factory=list)
    gone: list[Connection] = field(default_factory=list)

    def connected(self, conn: Connection) -> None:
        self.connected_conns.append(conn)

    def events_from(self, conn: Connection, events: list[bytes]) -> None:
        self.events.extend(events)
        self.batches.append(len(events))

    def auth_from(self, conn: Connection, data: bytes) -> None:
        self.auths.append(data)

    def reject(self, conn: Connection, reason: str) -> None:
        self.rejected.append(reason)
        conn.closing = True

    def disconnected(self, conn: Connection, exc: Exception | None) -> None:
        self.gone.append(conn)


def connect() -> tuple[CotStreamProtocol, FakeService, FakeTransport]:
    service = FakeService()
    protocol = CotStreamProtocol(service, 7)  # type: ignore[arg-type]
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, service, transport


def test_connection_is_registered_with_its_peer_and_write_limit():
    protocol, service, transport = connect()
    assert transport.limits["high"] == WRITE_HIGH_WATER
    (conn,) = service.connected_conns
    assert conn.id == 7 and conn.peer == "10.1.2.3:4567"
    assert conn is protocol.conn


def test_events_and_auth_are_handed_over_whatever_the_chunking():
    protocol, service, _ = connect()
    auth = b'<auth><cot username="u" password="p" uid="x"/></auth>'
    stream = b'<?xml version="1.0"?>' + EVENT + b"\n" + auth + EVENT
    for i in range(len(stream)):
        protocol.data_received(stream[i:i + 1])
    assert service.events == [EVENT, EVENT]
    assert service.auths == [auth]


def test_events_of_one_read_are_handed_over_as_one_batch():
    protocol, service, _ = connect()
    protocol.data_received(EVENT * 3)
    protocol.data_received(EVENT[:10])
    protocol.data_received(EVENT[10:] + EVENT)
    assert service.batches == [3, 2]


def test_framing_error_rejects_the_connection_and_stops_reading():
    protocol, service, _ = connect()
    protocol.data_received(b"garbage")
    assert len(service.rejected) == 1 and "framing error" in service.rejected[0]
    protocol.data_received(EVENT)  # ignored: the connection is closing
    assert service.events == []


def test_oversized_event_is_rejected_before_it_completes():
    protocol, service, _ = connect()
    protocol.data_received(b'<event uid="x">' + b"y" * 300)
    assert service.rejected and "framing error" in service.rejected[0]


def test_flow_control_reaches_the_outbound_queue():
    protocol, _, _ = connect()
    assert protocol.conn is not None
    protocol.pause_writing()
    assert protocol.conn.out.paused
    protocol.resume_writing()
    assert not protocol.conn.out.paused


def test_connection_lost_is_reported_once():
    protocol, service, _ = connect()
    protocol.connection_lost(None)
    assert service.gone == [protocol.conn]
