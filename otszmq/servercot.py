"""CoT events the server makes itself: pongs and deletes (``t-x-d-d``).

They are rendered from fixed templates with escaped values, never by building
an XML tree: ingest answers pings and announces disconnects without parsing or
serialising XML.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import quoteattr

PONG_STALE = timedelta(seconds=20)
DELETE_STALE = timedelta(seconds=20)


def cot_time(moment: datetime) -> str:
    """CoT's time format: UTC, millisecond precision, ``Z`` suffix."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def pong(now: datetime | None = None) -> bytes:
    """The ``t-x-c-t-r`` answer to a client's ``t-x-c-t`` ping (TAK Server's shape)."""
    now = now or datetime.now(UTC)
    start = cot_time(now)
    return (
        f'<event version="2.0" uid="takPong" type="t-x-c-t-r" how="h-g-i-g-o" '
        f'time="{start}" start="{start}" stale="{cot_time(now + PONG_STALE)}">'
        '<point lat="0.0" lon="0.0" hae="0.0" ce="9999999.0" le="9999999.0"/>'
        "<detail/></event>"
    ).encode()


def delete(target_uid: str, target_type: str, now: datetime | None = None) -> bytes:
    """A ``t-x-d-d`` telling clients to remove ``target_uid`` from their maps."""
    now = now or datetime.now(UTC)
    start = cot_time(now)
    return (
        f'<event version="2.0" uid="{uuid.uuid4()}" type="t-x-d-d" how="h-g-i-g-o" '
        f'time="{start}" start="{start}" stale="{cot_time(now + DELETE_STALE)}">'
        '<point lat="0.0" lon="0.0" hae="0.0" ce="9999999.0" le="9999999.0"/>'
        f"<detail><link uid={quoteattr(target_uid)} type={quoteattr(target_type)} "
        'relation="p-p"/></detail></event>'
    ).encode()
