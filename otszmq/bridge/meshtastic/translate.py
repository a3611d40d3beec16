"""Mesh messages to CoT and routed CoT to mesh envelopes, with the memory both need (sans-IO).

In: a gateway's envelope (its routing key and body) becomes zero or more CoT events, each with
the uid it is sent on behalf of. The translator remembers each node's name (NODEINFO, map
reports) for its later positions, and drops what it has seen: the same packet heard by several
gateways, and our own packets coming back from a gateway that uplinks them.

Out: a routed event from the pipeline becomes zero or more envelopes. Positions of EUDs are
rate-limited per EUD *before* their XML is parsed (the header says uid and type), so a busy
server parses only what goes out. Each EUD gets a stable node number derived from its uid.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Generic, TypeVar

from lxml import etree

from otszmq.bridge.meshtastic import events
from otszmq.bridge.meshtastic.codec import (
    BROADCAST,
    MapReport,
    MeshCodec,
    MeshMessage,
    MeshtasticError,
    NodeInfo,
    Position,
    TakPli,
    Text,
    clip_text,
    node_id,
)
from otszmq.bridge.meshtastic.config import MeshtasticConfig
from otszmq.bridge.meshtastic.schema import PortNum
from otszmq.errors import CotParseError
from otszmq.metrics import Counters
from otszmq.wire import RoutedHeader
from otszmq.workers.cot import CotEvent, CotParser

log = logging.getLogger(__name__)

Key = TypeVar("Key")
Value = TypeVar("Value")

COUNTERS: Final = (
    "mesh_received", "mesh_injected", "mesh_malformed", "mesh_undecryptable",
    "mesh_unknown_channel", "mesh_ignored", "mesh_duplicate", "mesh_own", "mesh_no_position",
    "mesh_compressed", "mesh_out_positions", "mesh_out_chats", "mesh_out_rate_limited",
    "mesh_out_unparsable",
)


class Recent(Generic[Key, Value]):
    """A dict that forgets its least recently used entries beyond ``limit`` (bounded memory)."""

    __slots__ = ("_items", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Key, Value] = OrderedDict()

    def get(self, key: Key) -> Value | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Key, value: Value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.limit:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class Injection:
    """CoT events for the pipeline, sent on behalf of ``sender_uid``."""

    events: tuple[bytes, ...]
    sender_uid: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """One envelope for ``amq.topic``."""

    routing_key: str
    body: bytes


@dataclass(slots=True)
class _EudState:
    last_sent: float  # monotonic seconds
    positions_sent: int


def eud_node_number(uid: str) -> int:
    """A stable node number for a TAK EUD: 32 bits of a hash of its uid.

    NOTE: never 0 or the broadcast address, and not one of the numbers below 4, which the
    firmware reserves.
    """
    number = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "little")
    return number if 4 <= number < BROADCAST else (number ^ 0x5A5A5A5A) | 4


def parse_route(root: str, routing_key: str) -> tuple[str, str] | None:
    """(channel, gateway) from ``<root>.2.e.<channel>.<gateway>``; ("", gateway) from the map
    topic ``<root>.2.map.<gateway>`` (or ``<root>.2.map``); None for anything else (json, ...).
    """
    prefix = root + "."
    if not routing_key.startswith(prefix):
        return None
    parts = routing_key[len(prefix):].split(".")
    if len(parts) == 4 and parts[0] == "2" and parts[1] == "e":
        return parts[2], parts[3]
    if 2 <= len(parts) <= 3 and parts[0] == "2" and parts[1] == "map":
        return "", parts[2] if len(parts) == 3 else ""
    return None


class MeshTranslator:
    """Both directions of the link, without I/O. One per link; not thread-safe."""

    def __init__(self, config: MeshtasticConfig, counters: Counters,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.counters = counters
        counters.preset(*COUNTERS)
        self._clock = clock
        self._codec = MeshCodec(config.channels)
        self._parser = CotParser()
        limit = config.memory_limit
        self._names: Recent[int, str] = Recent(limit)  # node number -> long name
        self._positions: Recent[int, Position] = Recent(limit)  # node -> last position
        self._seen: Recent[tuple[int, int], bool] = Recent(limit)  # (sender, packet id)
        self._mesh_uids: Recent[str, int] = Recent(limit)  # uids we made -> node number
        self._euds: Recent[str, _EudState] = Recent(limit)  # EUD uid -> rate-limit state
        self._eud_by_node: Recent[int, tuple[str, str]] = Recent(limit)  # -> (uid, callsign)

    @property
    def codec(self) -> MeshCodec:
        return self._codec

    # -- in: mesh -> CoT ------------------------------------------------------------------

    def inbound(self, routing_key: str, body: bytes) -> list[Injection]:
        """CoT for one message from ``amq.topic``; never raises for bad input (counts it)."""
        values = self.counters.values
        values["mesh_received"] += 1
        route = parse_route(self.config.root, routing_key)
        if route is None:
            values["mesh_ignored"] += 1
            return []
        channel, gateway = route
        if gateway == self.config.gateway_id:
            values["mesh_own"] += 1
            return []
        try:
            message = self._codec.decode(body, channel)
        except MeshtasticError as exc:
            self.counters.inc(f"mesh_{exc.reason}")
            log.debug("meshtastic: %s dropped: %s", routing_key, exc)
            return []
        if message.gateway == self.config.gateway_id or message.sender in self._eud_by_node:
            values["mesh_own"] += 1
            return []
        if message.packet_id:
            seen_key = (message.sender, message.packet_id)
            if seen_key in self._seen:
                values["mesh_duplicate"] += 1
                return []
            self._seen.put(seen_key, True)
        return self._translate(message)

    def _callsign(self, node: int) -> str:
        return self._names.get(node) or node_id(node)

    def _remember_uid(self, uid: str, node: int) -> str:
        self._mesh_uids.put(uid, node)
        return uid

    def _translate(self, message: MeshMessage) -> list[Injection]:
        node = message.sender
        uid = events.node_uid(node_id(node))
        payload = message.payload
        remarks = f"Meshtastic {node_id(node)} via {message.gateway or 'map report'}"
        if isinstance(payload, Position):
            self._positions.put(node, payload)
            self._remember_uid(uid, node)
            return [Injection((events.pli(uid, self._callsign(node), payload,
                                          remarks=remarks),), uid)]
        if isinstance(payload, NodeInfo | MapReport):
            info = payload if isinstance(payload, NodeInfo) else payload.info
            position = payload.position if isinstance(payload, MapReport) else None
            known = self._names.get(node)
            if info.long_name:
                self._names.put(node, info.long_name)
            if position is not None:
                self._positions.put(node, position)
            elif info.long_name != known:
                # A new name: re-announce the node's last position under it.
                position = self._positions.get(node)
            if position is None:
                return []
            self._remember_uid(uid, node)
            return [Injection((events.pli(uid, self._callsign(node), position,
                                          remarks=remarks),), uid)]
        if isinstance(payload, Text):
            return self._chat(uid, self._callsign(node), payload.text, message.to, node)
        if isinstance(payload, TakPli):
            tak_uid = self._remember_uid(payload.uid or uid, node)
            callsign = payload.callsign or self._callsign(node)
            return [Injection((events.pli(
                tak_uid, callsign, payload.position, team=payload.team, role=payload.role,
                battery=payload.battery,
            ),), tak_uid)]
        # TakChat
        sender_uid = self._remember_uid(payload.uid or uid, node)
        callsign = payload.callsign or self._callsign(node)
        if payload.to and payload.to != events.ALL_CHAT_ROOMS:
            chat = events.chat(sender_uid, callsign, payload.message, to_uid=payload.to,
                               to_callsign=payload.to_callsign)
        else:
            chat = events.chat(sender_uid, callsign, payload.message)
        return [Injection((chat,), sender_uid)]

    def _chat(self, uid: str, callsign: str, text: str, to: int, node: int) -> list[Injection]:
        self._remember_uid(uid, node)
        if to == BROADCAST:
            return [Injection((events.chat(uid, callsign, text),), uid)]
        eud = self._eud_by_node.get(to)
        if eud is None:
            # A direct message between two radios: not ours to show to every EUD.
            self.counters.values["mesh_ignored"] += 1
            return []
        return [Injection((events.chat(uid, callsign, text, to_uid=eud[0],
                                       to_callsign=eud[1]),), uid)]

    # -- out: CoT -> mesh -----------------------------------------------------------------

    def outbound(self, header: RoutedHeader, event: bytes) -> list[Envelope]:
        """Envelopes for one routed event; [] for events that do not go to the mesh."""
        if header.origin or self.config.group not in header.groups_in:
            return []  # another server's event, or one of a group the mesh is not in
        cot_type = header.type
        if cot_type.startswith("a-f-"):
            return self._position_out(header, event)
        if cot_type == "b-t-f":
            return self._chat_out(event)
        return []

    def _parse(self, event: bytes) -> CotEvent | None:
        try:
            return self._parser.parse(event)
        except CotParseError:
            # NOTE: not reached for events the worker routed (it parsed them already).
            self.counters.values["mesh_out_unparsable"] += 1
            return None

    def _position_out(self, header: RoutedHeader, event: bytes) -> list[Envelope]:
        uid = header.uid
        if uid in self._mesh_uids:
            return []  # a mesh node's own position, injected by us: never echoed
        now = self._clock()
        state = self._euds.get(uid)
        if state is not None and now - state.last_sent < self.config.position_interval:
            self.counters.values["mesh_out_rate_limited"] += 1
            return []
        parsed = self._parse(event)
        if parsed is None or parsed.lat is None or parsed.lon is None:
            return []
        if parsed.endpoint is None and parsed.takv_platform is None:
            return []  # a marker someone placed, not an EUD reporting itself
        if state is None:
            state = _EudState(now, 0)
            self._euds.put(uid, state)
        state.last_sent = now
        sender = eud_node_number(uid)
        callsign = parsed.callsign or uid
        self._eud_by_node.put(sender, (uid, callsign))
        channel = self.config.outbound
        key = self.config.routing_key(channel)
        gateway = self.config.gateway_id
        codec = self._codec
        envelopes = []
        if state.positions_sent % self.config.nodeinfo_every == 0:
            short = "".join(word[:1] for word in callsign.split()[:4]).upper() or callsign[:4]
            envelopes.append(Envelope(key, codec.envelope(
                channel, gateway, sender, PortNum.NODEINFO_APP,
                codec.user(sender, callsign, short),
            )))
        state.positions_sent += 1
        lat, lon, hae = parsed.lat, parsed.lon, _finite(parsed.hae)
        envelopes.append(Envelope(key, codec.envelope(
            channel, gateway, sender, PortNum.POSITION_APP,
            codec.position(lat, lon, hae, int(datetime.now(UTC).timestamp())),
        )))
        battery = _int_attribute(parsed.status, "battery")
        envelopes.append(Envelope(key, codec.envelope(
            channel, gateway, sender, PortNum.ATAK_PLUGIN,
            codec.tak_pli(uid, callsign, parsed.group_name or "", parsed.group_role or "",
                          battery, lat, lon, hae, _float_attribute(parsed.track, "speed"),
                          _float_attribute(parsed.track, "course")),
        )))
        self.counters.values["mesh_out_positions"] += 1
        return envelopes

    def _chat_out(self, event: bytes) -> list[Envelope]:
        parsed = self._parse(event)
        if parsed is None or parsed.chat is None or not parsed.remarks:
            return []
        sender_uid = _chat_sender(parsed)
        if not sender_uid or sender_uid in self._mesh_uids:
            return []  # made by us from a mesh message: never echoed
        chat = parsed.chat
        to = BROADCAST
        if (chat.chat_id or chat.chatroom) != events.ALL_CHAT_ROOMS:
            node = next((self._mesh_uids.get(dest.uid) for dest in parsed.dests
                         if dest.uid and dest.uid in self._mesh_uids), None)
            if node is None and chat.chat_id:
                node = self._mesh_uids.get(chat.chat_id)
            if node is None:
                return []  # a room or a person that is not on the mesh
            to = node
        sender = eud_node_number(sender_uid)
        self._eud_by_node.put(sender, (sender_uid, chat.sender_callsign or sender_uid))
        channel = self.config.outbound
        self.counters.values["mesh_out_chats"] += 1
        return [Envelope(self.config.routing_key(channel), self._codec.envelope(
            channel, self.config.gateway_id, sender, PortNum.TEXT_MESSAGE_APP,
            clip_text(parsed.remarks), to=to,
        ))]


def _chat_sender(parsed: CotEvent) -> str:
    """The uid of a GeoChat's author: its ``link relation="p-p"``, else from its own uid
    (``GeoChat.<sender uid>.<room>.<message id>``)."""
    for link in parsed.links:
        if link.relation == "p-p" and link.uid:
            return link.uid
    if parsed.uid.startswith("GeoChat."):
        return parsed.uid[len("GeoChat."):].rsplit(".", 2)[0]
    return ""


def _finite(value: float | None) -> float | None:
    """``value`` unless it is absent, NaN, infinite or CoT's 9999999 ("unknown")."""
    if value is None or not math.isfinite(value) or abs(value) >= 9_999_999:
        return None
    return value


def _float_attribute(element: etree._Element | None, name: str) -> float | None:
    text = element.get(name) if element is not None else None
    if text is None:
        return None
    try:
        return _finite(float(text))
    except ValueError:
        return None


def _int_attribute(element: etree._Element | None, name: str) -> int | None:
    value = _float_attribute(element, name)
    return int(value) if value is not None else None
