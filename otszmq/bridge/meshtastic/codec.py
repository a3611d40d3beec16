"""Meshtastic envelopes to typed messages and back (sans-IO: bytes in, values out).

:meth:`MeshCodec.decode` takes the body of one MQTT message (a ``ServiceEnvelope``), decrypts
its packet with the channel's key when it is encrypted, and returns one :class:`MeshMessage`
whose ``payload`` is the decoded application message of the ports this bridge understands.
Anything else raises :class:`MeshtasticError` saying why, which costs that message only.
:meth:`MeshCodec.encode` builds an encrypted envelope for the mesh.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError, EncodeError

from otszmq.bridge.meshtastic.crypto import ChannelKey, crypt
from otszmq.bridge.meshtastic.schema import ROLES, TEAMS, PortNum, Schema
from otszmq.errors import OtszmqError

BROADCAST: Final = 0xFFFFFFFF
"""``MeshPacket.to`` of a packet for every node."""
HOP_LIMIT: Final = 3
"""Hops an outbound packet may take (the firmware's default)."""
MAX_TEXT_BYTES: Final = 200
"""Longest text sent to the mesh: a LoRa packet carries about 230 bytes of payload."""
MAX_ENVELOPE_BYTES: Final = 4096
"""Largest envelope read: a LoRa packet is at most 256 bytes, its envelope a few dozen more."""
_COORDINATE_SCALE: Final = 10_000_000
"""Coordinates travel as integers in units of 1e-7 degrees."""


class MeshtasticError(OtszmqError):
    """A Meshtastic message cannot be decoded: not protobuf, not decryptable, or not a shape
    this bridge reads. Costs that message: it is dropped and counted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # the counter it is counted under: malformed, undecryptable, ...


def node_id(number: int) -> str:
    """A node number as Meshtastic writes it: ``!`` and 8 hex digits."""
    return f"!{number & 0xFFFFFFFF:08x}"


def _text(raw: bytes) -> str:
    # NOTE: names and messages come from radios; one bad byte must not cost the message.
    return raw.decode("utf-8", errors="replace")


def _degrees(value: int) -> float:
    # NOTE: divided, not multiplied by 1e-7: dividing by the exact 1e7 is correctly rounded,
    # so a value sent as 48.1 comes back as 48.1.
    return value / _COORDINATE_SCALE


# -- decoded application payloads ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """POSITION_APP, MAP_REPORT_APP and the ATAK plugin's PLI: where a node is."""

    lat: float
    lon: float
    altitude: float | None  # metres; None if not reported
    speed: float | None = None  # m/s
    course: float | None = None  # degrees


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """NODEINFO_APP (and the names in a MAP_REPORT_APP): what a node calls itself."""

    long_name: str
    short_name: str


@dataclass(frozen=True, slots=True)
class MapReport:
    """MAP_REPORT_APP: a node's periodic summary, with its name and (maybe) its position."""

    info: NodeInfo
    position: Position | None


@dataclass(frozen=True, slots=True)
class Text:
    """TEXT_MESSAGE_APP: a chat line."""

    text: str


@dataclass(frozen=True, slots=True)
class TakPli:
    """The ATAK plugin's PLI (TAKPacket.pli). Strings are "" when the packet was compressed."""

    callsign: str
    uid: str  # the ATAK device's uid (Contact.device_callsign)
    team: str
    role: str
    battery: int | None
    position: Position


@dataclass(frozen=True, slots=True)
class TakChat:
    """The ATAK plugin's GeoChat (TAKPacket.chat)."""

    callsign: str
    uid: str
    message: str
    to: str  # a uid, "All Chat Rooms" or ""
    to_callsign: str


Payload = Position | NodeInfo | MapReport | Text | TakPli | TakChat


@dataclass(frozen=True, slots=True)
class MeshMessage:
    """One decoded envelope: who sent what, to whom, through which gateway and channel."""

    sender: int
    to: int
    packet_id: int
    channel: str
    gateway: str
    portnum: int
    payload: Payload

    @property
    def is_broadcast(self) -> bool:
        return self.to == BROADCAST


class MeshCodec:
    """Decodes and encodes envelopes for a set of channels; one per link (holds its schema)."""

    __slots__ = ("_by_name", "_schema")

    def __init__(self, channels: tuple[ChannelKey, ...]) -> None:
        self._schema = Schema()
        self._by_name = {channel.name: channel for channel in channels}

    # -- in ------------------------------------------------------------------------------

    def _parse(self, name: str, data: bytes) -> Any:
        try:
            return self._schema.new(name).FromString(data)
        except (DecodeError, ValueError) as exc:
            raise MeshtasticError("malformed", f"not a {name}: {exc}") from exc

    def decode(self, body: bytes, topic_channel: str = "") -> MeshMessage:
        """Decode one MQTT message body; ``topic_channel`` is the channel named by its topic."""
        if len(body) > MAX_ENVELOPE_BYTES:
            raise MeshtasticError("malformed", f"envelope of {len(body)} bytes, larger than "
                                               f"any LoRa packet")
        envelope = self._parse("ServiceEnvelope", body)
        if not envelope.HasField("packet"):
            raise MeshtasticError("malformed", "envelope without a packet")
        packet = envelope.packet
        channel_name = _text(envelope.channel_id) or topic_channel
        if packet.HasField("decoded"):
            data = packet.decoded
        elif packet.HasField("encrypted"):
            data = self._decrypt(packet, channel_name)
        else:
            raise MeshtasticError("malformed", "packet with neither data nor ciphertext")
        portnum = data.portnum
        return MeshMessage(
            sender=packet.sender, to=packet.to, packet_id=packet.id, channel=channel_name,
            gateway=_text(envelope.gateway_id), portnum=portnum,
            payload=self._payload(portnum, data.payload),
        )

    def _decrypt(self, packet: Any, channel_name: str) -> Any:
        channel = self._by_name.get(channel_name)
        if channel is None:
            raise MeshtasticError("unknown_channel", f"no key for channel {channel_name!r}")
        if not channel.key:
            raise MeshtasticError(
                "undecryptable", f"encrypted packet on unencrypted channel {channel_name!r}"
            )
        plain = crypt(channel.key, packet.id, packet.sender, packet.encrypted)
        try:
            data = self._schema.new("Data").FromString(plain)
        except (DecodeError, ValueError) as exc:
            raise MeshtasticError(
                "undecryptable", f"channel {channel_name!r}: wrong key or corrupt packet"
            ) from exc
        # A wrong key yields random bytes, which sometimes parse; a real packet names a port.
        if not data.HasField("portnum") or not 0 < data.portnum <= PortNum.MAX:
            raise MeshtasticError(
                "undecryptable", f"channel {channel_name!r}: wrong key or corrupt packet"
            )
        return data

    def _payload(self, portnum: int, raw: bytes) -> Payload:
        if portnum == PortNum.TEXT_MESSAGE_APP:
            return Text(_text(raw))
        if portnum == PortNum.POSITION_APP:
            message = self._parse("Position", raw)
            position = _position(message)
            if position is None:
                raise MeshtasticError("no_position", "position without coordinates")
            return position
        if portnum == PortNum.NODEINFO_APP:
            user = self._parse("User", raw)
            return NodeInfo(_text(user.long_name), _text(user.short_name))
        if portnum == PortNum.MAP_REPORT_APP:
            report = self._parse("MapReport", raw)
            return MapReport(
                NodeInfo(_text(report.long_name), _text(report.short_name)), _position(report)
            )
        if portnum == PortNum.ATAK_PLUGIN:
            return self._tak_packet(raw)
        raise MeshtasticError("ignored", f"port {portnum} is not bridged")

    def _tak_packet(self, raw: bytes) -> TakPli | TakChat:
        packet = self._parse("TAKPacket", raw)
        # NOTE: compressed strings are unishox2. Its only Python binding decompresses in C into
        # a buffer sized by the caller, with no bound check (its README: a short buffer "WILL
        # core dump"), so it is never given network bytes: compressed strings are left "",
        # and the link names the node by its number and NODEINFO instead.
        compressed = packet.is_compressed
        callsign = "" if compressed else _text(packet.contact.callsign)
        uid = "" if compressed else _text(packet.contact.device_callsign)
        if packet.HasField("pli"):
            pli = packet.pli
            if not (pli.HasField("latitude_i") and pli.HasField("longitude_i")):
                raise MeshtasticError("no_position", "ATAK PLI without coordinates")
            group = packet.group
            return TakPli(
                callsign=callsign, uid=uid,
                team=TEAMS[group.team] if group.team < len(TEAMS) else "",
                role=ROLES[group.role] if group.role < len(ROLES) else "",
                battery=packet.status.battery if packet.HasField("status") else None,
                position=Position(
                    _degrees(pli.latitude_i), _degrees(pli.longitude_i),
                    float(pli.altitude) if pli.HasField("altitude") else None,
                    float(pli.speed) if pli.HasField("speed") else None,
                    float(pli.course) if pli.HasField("course") else None,
                ),
            )
        if packet.HasField("chat"):
            if compressed:
                raise MeshtasticError("compressed", "compressed ATAK chat (unishox2) not read")
            chat = packet.chat
            return TakChat(callsign, uid, _text(chat.message), _text(chat.to),
                           _text(chat.to_callsign))
        raise MeshtasticError("ignored", "ATAK packet that is neither a PLI nor a chat")

    # -- out -----------------------------------------------------------------------------

    def envelope(self, channel: ChannelKey, gateway: str, sender: int, portnum: int,
                 payload: bytes, *, to: int = BROADCAST) -> bytes:
        """A ``ServiceEnvelope`` carrying ``payload`` on ``portnum`` from node ``sender``,
        encrypted with the channel's key (sent in the clear on a channel without one)."""
        packet_id = secrets.randbits(32) or 1
        data = self._schema.new("Data", portnum=portnum, payload=payload)
        packet = self._schema.new(
            "MeshPacket", sender=sender, to=to, id=packet_id, hop_limit=HOP_LIMIT,
            hop_start=HOP_LIMIT, channel=channel.hash,
        )
        try:
            if channel.key:
                packet.encrypted = crypt(channel.key, packet_id, sender, data.SerializeToString())
            else:
                packet.decoded.CopyFrom(data)
            envelope = self._schema.new(
                "ServiceEnvelope", packet=packet, channel_id=channel.name.encode(),
                gateway_id=gateway.encode(),
            )
            return bytes(envelope.SerializeToString())
        except EncodeError as exc:  # not reached: every field is optional
            raise MeshtasticError("malformed", f"cannot encode an envelope: {exc}") from exc

    def position(self, lat: float, lon: float, altitude: float | None, when: int) -> bytes:
        fields: dict[str, int] = {
            "latitude_i": round(lat * _COORDINATE_SCALE),
            "longitude_i": round(lon * _COORDINATE_SCALE),
            "time": when & 0xFFFFFFFF,
        }
        if altitude is not None and abs(altitude) < 1e6:
            fields["altitude"] = round(altitude)
        return bytes(self._schema.new("Position", **fields).SerializeToString())

    def user(self, number: int, long_name: str, short_name: str) -> bytes:
        return bytes(self._schema.new(
            "User", id=node_id(number).encode(), long_name=_clip(long_name, 39),
            short_name=_clip(short_name, 4),
        ).SerializeToString())

    def tak_pli(self, uid: str, callsign: str, team: str, role: str, battery: int | None,
                lat: float, lon: float, altitude: float | None, speed: float | None,
                course: float | None) -> bytes:
        packet = self._schema.new("TAKPacket", is_compressed=False)
        packet.contact.callsign = _clip(callsign, 120)
        packet.contact.device_callsign = _clip(uid, 120)
        packet.group.team = TEAMS.index(team) if team in TEAMS else 0
        packet.group.role = ROLES.index(role) if role in ROLES else 0
        if battery is not None and 0 <= battery <= 100:
            packet.status.battery = battery
        pli = packet.pli
        pli.latitude_i = round(lat * _COORDINATE_SCALE)
        pli.longitude_i = round(lon * _COORDINATE_SCALE)
        pli.altitude = round(altitude) if altitude is not None and abs(altitude) < 1e6 else 0
        if speed is not None and 0 <= speed < 1e6:
            pli.speed = round(speed)
        if course is not None and 0 <= course <= 360:
            pli.course = round(course)
        return bytes(packet.SerializeToString())


def _clip(text: str, limit: int) -> bytes:
    """``text`` as UTF-8, cut to at most ``limit`` bytes on a character boundary."""
    return text.encode()[:limit].decode("utf-8", errors="ignore").encode()


def clip_text(text: str) -> bytes:
    return _clip(text, MAX_TEXT_BYTES)


def _position(message: Any) -> Position | None:
    if not (message.HasField("latitude_i") and message.HasField("longitude_i")):
        return None
    lat, lon = _degrees(message.latitude_i), _degrees(message.longitude_i)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise MeshtasticError("malformed", f"coordinates out of range: {lat}, {lon}")
    altitude = float(message.altitude) if message.HasField("altitude") else None
    speed = course = None
    if message.DESCRIPTOR.name == "Position":
        if message.HasField("ground_speed"):
            speed = float(message.ground_speed)
        if message.HasField("ground_track"):
            course = message.ground_track * 1e-5
    return Position(lat, lon, altitude, speed, course)
