"""TAK's ``<_flow-tags_>``: which servers an event has passed through.

TAK Server stamps every event it forwards to a federate with an attribute of
``<detail><_flow-tags_ .../></detail>`` naming itself and the time, and drops events that
already carry its own tag. The bridge does the same for federation, so a loop made outside
our control (a RabbitMQ shovel or federation link pointing back, another TAK server in the
path) is still broken even if the AMQP headers are lost on the way.

PERF: tags are added and checked with byte searches, not by parsing: the event was parsed
once by a worker and its bytes travel on untouched; these searches cost microseconds for a
~600-byte event. The first ``</detail>``/``<detail/>`` found from the end is taken to be the
event's own, which holds for well-formed CoT (``detail`` is the last child of ``event``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from otszmq.servercot import cot_time

TAG_PREFIX = "otszmq-"
_FLOW_OPEN = b"<_flow-tags_"


def tag_name(server_id: str) -> bytes:
    """The attribute naming ``server_id`` (a valid XML name: ids are checked by config)."""
    return (TAG_PREFIX + server_id).encode()


def has_tag(event: bytes, server_id: str) -> bool:
    """True if ``event`` already passed through ``server_id``."""
    start = event.find(_FLOW_OPEN)
    if start < 0:
        return False
    end = event.find(b">", start)
    return event.find(b" " + tag_name(server_id) + b"=", start, end) >= 0


def add_tag(event: bytes, server_id: str, now: datetime | None = None) -> bytes:
    """``event`` with ``server_id``'s flow tag added (into an existing ``<_flow-tags_>``, or
    a new one at the end of ``<detail>``, or a new ``<detail>``)."""
    stamp = cot_time(now or datetime.now(UTC)).encode()
    attribute = b" " + tag_name(server_id) + b'="' + stamp + b'"'
    start = event.find(_FLOW_OPEN)
    if start >= 0:
        at = start + len(_FLOW_OPEN)
        return event[:at] + attribute + event[at:]
    element = _FLOW_OPEN + attribute + b"/>"
    close = event.rfind(b"</detail>")
    if close >= 0:
        return event[:close] + element + event[close:]
    empty = event.rfind(b"<detail/>")
    if empty >= 0:
        return event[:empty] + b"<detail>" + element + b"</detail>" + event[empty + 9:]
    end = event.rfind(b"</event>")
    if end < 0:
        return event  # not an event: the receiving worker will refuse it anyway
    return event[:end] + b"<detail>" + element + b"</detail>" + event[end:]
