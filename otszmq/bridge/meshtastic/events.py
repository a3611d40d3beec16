"""CoT events made from mesh messages: a PLI for a node's position, GeoChat for its text.

Rendered from fixed templates with escaped values (like :mod:`otszmq.servercot`), never by
building an XML tree. Every value from a radio is cleaned of the characters XML 1.0 cannot
carry even escaped, so a hostile name cannot make an event the worker would reject.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final
from xml.sax.saxutils import escape, quoteattr

from otszmq.bridge.meshtastic.codec import Position
from otszmq.servercot import cot_time

ALL_CHAT_ROOMS: Final = "All Chat Rooms"
UID_PREFIX: Final = "MESHTASTIC-"
"""A plain Meshtastic node's uid is this and its node id: ``MESHTASTIC-!a1b2c3d4``."""
PLI_STALE: Final = timedelta(minutes=30)
"""Meshtastic nodes report their position every 15 minutes by default: stale after two."""
CHAT_STALE: Final = timedelta(days=1)
_UNKNOWN: Final = "9999999.0"

# XML 1.0's Char production, negated: C0 controls but tab, newline, CR; U+FFFE and U+FFFF.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean(text: str) -> str:
    """``text`` without the characters an XML document cannot hold."""
    return _NOT_XML.sub("", text)


def _attr(value: str) -> str:
    return quoteattr(clean(value))


def node_uid(node: str) -> str:
    """The uid of a plain Meshtastic node (``node`` as ``!a1b2c3d4``)."""
    return UID_PREFIX + node


def pli(uid: str, callsign: str, position: Position, *, team: str = "", role: str = "",
        battery: int | None = None, remarks: str = "", now: datetime | None = None) -> bytes:
    """An ``a-f-G-U-C`` position report for a mesh node (or an EUD seen through the mesh)."""
    now = now or datetime.now(UTC)
    start = cot_time(now)
    hae = f"{position.altitude:.1f}" if position.altitude is not None else _UNKNOWN
    parts = [
        f'<event version="2.0" uid={_attr(uid)} type="a-f-G-U-C" how="m-g" time="{start}" '
        f'start="{start}" stale="{cot_time(now + PLI_STALE)}">'
        f'<point lat="{position.lat:.7f}" lon="{position.lon:.7f}" hae="{hae}" '
        f'ce="{_UNKNOWN}" le="{_UNKNOWN}"/><detail>'
        f"<contact callsign={_attr(callsign)}/>"
    ]
    if team or role:
        parts.append(f"<__group name={_attr(team or 'Cyan')} role={_attr(role or 'Team Member')}/>")
    if battery is not None:
        parts.append(f'<status battery="{int(battery)}"/>')
    if position.speed is not None or position.course is not None:
        parts.append(
            f'<track course="{position.course or 0.0:.1f}" speed="{position.speed or 0.0:.1f}"/>'
        )
    if remarks:
        parts.append(f"<remarks>{escape(clean(remarks))}</remarks>")
    parts.append("</detail></event>")
    return "".join(parts).encode()


def chat(sender_uid: str, sender_callsign: str, text: str, *, to_uid: str = "",
         to_callsign: str = "", now: datetime | None = None) -> bytes:
    """GeoChat (``b-t-f``): to All Chat Rooms, or direct to ``to_uid`` when given."""
    now = now or datetime.now(UTC)
    start = cot_time(now)
    message_id = str(uuid.uuid4())
    room = (to_callsign or to_uid) if to_uid else ALL_CHAT_ROOMS
    room_id = to_uid or ALL_CHAT_ROOMS
    marti = f"<marti><dest uid={_attr(to_uid)}/></marti>" if to_uid else ""
    return (
        f'<event version="2.0" uid={_attr(f"GeoChat.{sender_uid}.{room_id}.{message_id}")} '
        f'type="b-t-f" how="h-g-i-g-o" time="{start}" start="{start}" '
        f'stale="{cot_time(now + CHAT_STALE)}">'
        f'<point lat="0.0" lon="0.0" hae="{_UNKNOWN}" ce="{_UNKNOWN}" le="{_UNKNOWN}"/>'
        f'<detail><__chat parent="RootContactGroup" groupOwner="false" '
        f'messageId="{message_id}" chatroom={_attr(room)} id={_attr(room_id)} '
        f"senderCallsign={_attr(sender_callsign)}>"
        f"<chatgrp uid0={_attr(sender_uid)} uid1={_attr(room_id)} id={_attr(room_id)}/>"
        f'</__chat><link uid={_attr(sender_uid)} type="a-f-G-U-C" relation="p-p"/>'
        f"{marti}"
        f"<remarks source={_attr(f'BAO.F.ATAK.{sender_uid}')} to={_attr(room_id)} "
        f'time="{start}">{escape(clean(text))}</remarks></detail></event>'
    ).encode()
