"""The t-x-takp negotiation in CotStreamProtocol, through a fake (TLS or TCP) transport."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from otszmq.ingest import negotiation
from otszmq.ingest.protocol import CotStreamProtocol
from otszmq.ingest.registry import Connection
from otszmq.ingest.takproto_codec import TakCodec, stream_message
from otszmq.metrics import Counters
from otszmq.workers.cot import parse_event
from tests.support import ping_event, sa_event


class FakeTransport:
    def __init__(self, tls: bool) -> None:
        self.tls = tls
        self.written: list[bytes] = []

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("10.1.2.3", 4567)
        if name == "sslcontext" and self.tls:
            return object()
        return default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, chunks: list[bytes | memoryview]) -> None:
        self.write(b"".join(chunks))  # what asyncio's default writelines does

    def get_write_buffer_size(self) -> int:
        return 0


@dataclass(frozen=True)
class FakeConfig:
    max_event_size: int = 4096


@dataclass
class FakeService:
    config: FakeConfig = field(default_factory=FakeConfig)
    counters: Counters = field(default_factory=Counters)
    takcodec: TakCodec = field(default_factory=TakCodec)
    events: list[bytes] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def connected(self, conn: Connection) -> None:
        pass

    def events_from(self, conn: Connection, events: list[bytes]) -> None:
        self.events.extend(events)

    def auth_from(self, conn: Connection, data: bytes) -> None:
        raise AssertionError("no auth expected")

    def reject(self, conn: Connection, reason: str) -> None:
        self.rejected.append(reason)
        conn.closing = True

    def disconnected(self, conn: Connection, exc: Exception | None) -> None:
        pass


def connect(tls: bool = True) -> tuple[CotStreamProtocol, FakeService, FakeTransport]:
    service = FakeService()
    protocol = CotStreamProtocol(service, 7)  # type: ignore[arg-type]
    transport = FakeTransport(tls)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, service, transport


def offer_uid(transport: FakeTransport) -> str:
    offer = parse_event(transport.written[0])
    assert offer.type == "t-x-takp-v"
    return offer.uid


def request(uid: str, version: str = "1") -> bytes:
    template = negotiation.offer(uid).replace(b"t-x-takp-v", b"t-x-takp-q")
    return re.sub(rb"<TakProtocolSupport[^>]*/>",
                  f'<TakRequest version="{version}"/>'.encode(), template)


def test_a_tls_client_is_offered_version_1_first() -> None:
    _, _, transport = connect(tls=True)
    assert b'<TakProtocolSupport version="1"/>' in transport.written[0]
    offer_uid(transport)


def test_plain_tcp_is_offered_nothing_and_requests_are_ignored() -> None:
    protocol, service, transport = connect(tls=False)
    assert transport.written == []
    protocol.data_received(request("x"))
    assert transport.written == [] and service.events == []
    assert protocol.proto_framer is None
    assert service.counters.values["takp_ignored"] == 1


def test_an_accepted_request_switches_both_directions() -> None:
    protocol, service, transport = connect()
    uid = offer_uid(transport)
    sa = sa_event("u-xml", "XML")
    protocol.data_received(sa + request(uid))
    # The request is answered, not routed; the event before it is routed as XML.
    assert service.events == [sa]
    answer = transport.written[-1]
    assert parse_event(answer).uid == uid
    assert b'<TakResponse status="true"/>' in answer
    assert protocol.conn is not None and protocol.conn.out.proto
    # From now on the client speaks 0xbf frames; they reach the service as CoT XML.
    codec = TakCodec()
    proto_sa = codec.encode(sa_event("u-proto", "PROTO"))
    protocol.data_received(b"noise" + proto_sa[:7])
    protocol.data_received(proto_sa[7:] + codec.encode(ping_event()))
    assert len(service.events) == 3
    event = parse_event(service.events[1])
    assert (event.uid, event.callsign) == ("u-proto", "PROTO")
    assert parse_event(service.events[2]).type == "t-x-c-t"
    assert service.counters.values["proto_skipped_bytes"] == 5
    assert service.counters.values["takp_accepted"] == 1


def test_an_unknown_version_is_refused_and_the_client_stays_xml() -> None:
    protocol, service, transport = connect()
    uid = offer_uid(transport)
    protocol.data_received(request(uid, "2"))
    assert b'<TakResponse status="false"/>' in transport.written[-1]
    assert protocol.proto_framer is None and protocol.conn is not None
    assert not protocol.conn.out.proto
    sa = sa_event("u1", "STILL-XML")
    protocol.data_received(sa)
    assert service.events == [sa]
    # It may retry (protocol.txt 7b).
    protocol.data_received(request(uid, "1"))
    assert protocol.proto_framer is not None


def test_control_events_from_a_protobuf_client_are_not_routed() -> None:
    protocol, service, transport = connect()
    protocol.data_received(request(offer_uid(transport)))
    written = len(transport.written)
    protocol.data_received(TakCodec().encode(request("again")))
    assert service.events == [] and len(transport.written) == written


def test_undecodable_messages_cost_only_themselves() -> None:
    protocol, service, transport = connect()
    protocol.data_received(request(offer_uid(transport)))
    good = TakCodec().encode(sa_event("u-ok", "OK"))
    protocol.data_received(stream_message(b"\xff\xff\xff") + good)
    assert [parse_event(e).uid for e in service.events] == ["u-ok"]
    assert service.counters.values["proto_decode_errors"] == 1
    assert not service.rejected


def test_an_oversized_message_closes_the_connection() -> None:
    protocol, service, transport = connect()
    protocol.data_received(request(offer_uid(transport)))
    protocol.data_received(b"\xbf" + b"\xff\xff\x7f")
    assert service.rejected and "TAK protocol framing error" in service.rejected[0]


def test_the_response_is_the_last_xml_the_client_gets() -> None:
    protocol, _, transport = connect()
    conn = protocol.conn
    assert conn is not None
    conn.out.batch.append(b"<event queued-before/>")  # a delivery not flushed yet
    protocol.data_received(request(offer_uid(transport)))
    assert transport.written[-1].startswith(b"<event queued-before/>")
    assert transport.written[-1].endswith(b'<TakResponse status="true"/></TakControl>'
                                          b"</detail></event>")
