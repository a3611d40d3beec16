"""The ``t-x-takp`` exchange that moves a streaming client from CoT XML to TAK protocol v1.

protocol.txt, "Streaming Connection Protocol Negotiation", as the TLS port applies it:

1. On connect the server sends, once, ``t-x-takp-v`` with
   ``<TakControl><TakProtocolSupport version="1"/></TakControl>`` and a fresh uid.
2. A client that wants protobuf answers ``t-x-takp-q`` with ``<TakRequest version="1"/>``
   (reusing that uid), then sends nothing until it is answered.
3. The server answers ``t-x-takp-r`` with ``<TakResponse status="true"/>`` (or ``"false"`` for a
   version it does not speak; the client may then retry or stay XML). After ``true`` the very
   next byte in each direction is a TAK protocol stream message.

Control events are answered by ingest and never routed. They are rendered from fixed templates
(like :mod:`otszmq.servercot`) and the request is read with one regex over its small, fixed
shape: ingest parses no XML.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final
from xml.sax.saxutils import quoteattr

from otszmq.servercot import cot_time

__all__ = [
    "CONTROL_PREFIX",
    "OFFER_TYPE",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "SUPPORTED_VERSION",
    "offer",
    "requested_version",
    "response",
]

SUPPORTED_VERSION: Final = 1
CONTROL_PREFIX: Final = b"t-x-takp"
"""Every negotiation event's type starts with this; none of them is routed."""
OFFER_TYPE: Final = b"t-x-takp-v"
REQUEST_TYPE: Final = b"t-x-takp-q"
RESPONSE_TYPE: Final = b"t-x-takp-r"
CONTROL_STALE: Final = timedelta(seconds=60)

# The version attribute of the request's (only) TakRequest element.
_REQUEST_VERSION: Final = re.compile(
    rb"""<TakRequest[ \t\r\n][^>]*?\bversion[ \t\r\n]*=[ \t\r\n]*(?:"([^"]*)"|'([^']*)')"""
)


def _control(uid: str, type_: bytes, inner: str, now: datetime | None) -> bytes:
    now = now or datetime.now(UTC)
    start = cot_time(now)
    return (
        f"<event version=\"2.0\" uid={quoteattr(uid)} type=\"{type_.decode()}\" how=\"m-g\" "
        f'time="{start}" start="{start}" stale="{cot_time(now + CONTROL_STALE)}">'
        '<point lat="0.0" lon="0.0" hae="0.0" ce="999999" le="999999"/>'
        f"<detail><TakControl>{inner}</TakControl></detail></event>"
    ).encode()


def offer(uid: str, now: datetime | None = None) -> bytes:
    """``t-x-takp-v``: this server speaks TAK protocol version 1 (sent once per connection)."""
    return _control(uid, OFFER_TYPE, f'<TakProtocolSupport version="{SUPPORTED_VERSION}"/>', now)


def response(uid: str, accepted: bool, now: datetime | None = None) -> bytes:
    """``t-x-takp-r``: the answer to a request, reusing the offer's uid."""
    status = "true" if accepted else "false"
    return _control(uid, RESPONSE_TYPE, f'<TakResponse status="{status}"/>', now)


def requested_version(event: bytes) -> int | None:
    """The version a ``t-x-takp-q`` asks for, or None if it names no (integer) version."""
    m = _REQUEST_VERSION.search(event)
    if m is None:
        return None
    value = (m[1] if m[1] is not None else m[2]).strip()
    return int(value) if value.isdigit() and len(value) < 10 else None
