"""TAK protocol v1 (protobuf) on the TLS port, against the real node over real TLS.

The protobuf client is a raw ssl socket that negotiates by hand and then frames with
``0xbf`` + varint; its messages are made and read by takproto (the PyPI client library),
not by our codec. The XML clients are the ordinary raw-socket CotClient.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import takproto
from takproto.proto import TakMessage

from tests.integration.test_tls import client_context, issue
from tests.support import RECV_TIMEOUT, CotClient, Node, marker_event, running_node, sa_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("takproto") / "data", workers=1,
                      tls=True) as running:
        yield running


def tag() -> str:
    return uuid.uuid4().hex[:8]


class ProtoClient:
    """A TLS client that asks for TAK protocol version 1 and then speaks only protobuf."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buffer = b""
        offer = self._xml_event_of_type(b"t-x-takp-v")
        assert b'<TakProtocolSupport version="1"/>' in offer
        offer_uid = re.search(rb'uid="([^"]+)"', offer)
        assert offer_uid is not None
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        self.sock.sendall(
            f'<event version="2.0" uid="{offer_uid[1].decode()}" type="t-x-takp-q" '
            f'time="{now}" start="{now}" stale="{now}" how="m-g"><point lat="0.0" lon="0.0" '
            'hae="0.0" ce="999999" le="999999"/><detail><TakControl><TakRequest version="1"/>'
            "</TakControl></detail></event>".encode()
        )
        response = self._xml_event_of_type(b"t-x-takp-r")
        assert b'<TakResponse status="true"/>' in response
        assert offer_uid[1] in response
        # Whatever follows the response's </event> is already protobuf (self.buffer).

    def _xml_event_of_type(self, kind: bytes) -> bytes:
        deadline = time.monotonic() + RECV_TIMEOUT
        while True:
            end = self.buffer.find(b"</event>")
            if end >= 0:
                event, self.buffer = self.buffer[:end + 8], self.buffer[end + 8:]
                if b'type="' + kind + b'"' in event:
                    return event
                continue  # replayed state before the answer: still XML, not asked about
            self._read(deadline)

    def _read(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"nothing complete within the deadline: {self.buffer[:200]!r}")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"server closed the connection: {self.buffer[:200]!r}")
        self.buffer += chunk

    def send_xml_as_proto(self, xml: bytes) -> None:
        self.sock.sendall(bytes(takproto.xml2proto(xml.decode(), takproto.TAKProtoVer.STREAM)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_message(self, deadline: float) -> Any:
        """The next stream message, parsed by protobuf itself (0xbf, varint, TakMessage)."""
        while True:
            if self.buffer:
                assert self.buffer[0] == 0xBF, f"not a TAK protocol frame: {self.buffer[:40]!r}"
                length, shift, i = 0, 0, 1
                while i < len(self.buffer):
                    byte = self.buffer[i]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not byte & 0x80:
                        if len(self.buffer) >= i + length:
                            message = TakMessage()
                            message.ParseFromString(self.buffer[i:i + length])
                            self.buffer = self.buffer[i + length:]
                            return message
                        break
            self._read(deadline)

    def recv_until_uid(self, uid: str) -> list[Any]:
        deadline = time.monotonic() + RECV_TIMEOUT
        messages = []
        while True:
            message = self.recv_message(deadline)
            messages.append(message)
            if message.cotEvent.uid == uid:
                return messages

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ProtoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def event_attr(event: bytes, element: bytes, name: str) -> str:
    m = re.search(rb"<" + element + rb"\b[^>]*?\b" + name.encode() + rb'="([^"]*)"', event)
    assert m is not None, (element, name, event)
    return m[1].decode()


def proto_encoded(node: Node) -> int:
    return sum(int(p["counters"].get("proto_encoded", 0))
               for p in node.stats(wait=1.0) if p["role"] == "ingest")


def test_protobuf_and_xml_clients_see_each_other(node: Node, tmp_path: Path) -> None:
    certs = {name: issue(node, name, tmp_path / name) for name in ("pat", "xena", "pia")}
    run = tag()
    with (
        ProtoClient(node.tls_port, client_context(certs["pat"], "pat")) as pat,
        ProtoClient(node.tls_port, client_context(certs["pia"], "pia")) as pia,
        CotClient(node.tls_port, tls=client_context(certs["xena"], "xena")) as xena,
        node.connect() as tcp,
    ):
        # The XML client never answers the offer it got: it stays XML.
        assert b"t-x-takp-v" in xena.recv_event()

        # protobuf -> XML, on TLS and on plain TCP.
        pat.send_xml_as_proto(sa_event(f"pat-{run}", f"PAT-{run}", lat=11.25))
        for reader in (xena, tcp):
            seen = reader.recv_until(f"pat-{run}".encode())[-1]
            assert event_attr(seen, b"event", "uid") == f"pat-{run}"
            assert event_attr(seen, b"event", "type") == "a-f-G-U-C"
            assert float(event_attr(seen, b"point", "lat")) == 11.25
            assert float(event_attr(seen, b"point", "lon")) == 2.0
            assert event_attr(seen, b"contact", "callsign") == f"PAT-{run}"

        # XML -> protobuf.
        xena.send(sa_event(f"xena-{run}", f"XENA-{run}", lat=-33.5))
        message = pat.recv_until_uid(f"xena-{run}")[-1].cotEvent
        assert (message.type, message.lat, message.lon) == ("a-f-G-U-C", -33.5, 2.0)
        assert message.detail.contact.callsign == f"XENA-{run}"
        # protobuf -> protobuf (through XML inside the node).
        assert pia.recv_until_uid(f"pat-{run}")[-1].cotEvent.lat == 11.25
        pia.recv_until_uid(f"xena-{run}")

        # Garbage before a frame is skipped; the frame still gets through.
        pat.send_raw(b"\r\nnot protobuf")
        pat.send_xml_as_proto(marker_event(f"after-garbage-{run}"))
        tcp.recv_until(f"after-garbage-{run}".encode())

        # Each routed event is encoded to protobuf once per ingest, not once per recipient:
        # both protobuf clients receive these three, and the count grows by three.
        pia.recv_until_uid(f"after-garbage-{run}")
        before = proto_encoded(node)
        for i in range(3):
            xena.send(marker_event(f"m{i}-{run}"))
        for client in (pat, pia):
            client.recv_until_uid(f"m2-{run}")
        assert proto_encoded(node) - before == 3


def test_a_refused_version_keeps_the_client_on_xml(node: Node, tmp_path: Path) -> None:
    certs = issue(node, "vic", tmp_path / "vic")
    with CotClient(node.tls_port, tls=client_context(certs, "vic")) as vic, \
            node.connect() as tcp:
        offer = vic.recv_until(b"t-x-takp-v")[-1]
        uid = event_attr(offer, b"event", "uid")
        request = offer.replace(b"t-x-takp-v", b"t-x-takp-q")
        request = re.sub(rb"<TakProtocolSupport[^>]*/>", b'<TakRequest version="7"/>', request)
        vic.send(request)
        answer = vic.recv_until(b"t-x-takp-r")[-1]
        assert b'<TakResponse status="false"/>' in answer and uid.encode() in answer
        run = tag()
        tcp.send(marker_event(f"still-xml-{run}"))
        assert b"<event" in vic.recv_until(f"still-xml-{run}".encode())[-1]
