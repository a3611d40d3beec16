"""The part of Meshtastic's protobuf wire format this bridge reads and writes.

NOTE: why this table and not the ``meshtastic`` package's generated modules. That package is
GPL-3.0-only (so are the ``.proto`` files of meshtastic/protobufs, and no separate PyPI package
ships them alone), and importing any of its ``meshtastic.protobuf`` modules first runs
``meshtastic/__init__``, which imports its whole radio client (pyserial, bleak and dbus for
Bluetooth, pypubsub, tabulate, PyYAML, requests). A server needs seven messages. What a wire
format is (field numbers and wire types) is an interface, so it is declared here as data, from
the protocol's documented field numbers, and the ``protobuf`` runtime (upb, in C; the same one
takproto uses) parses and serialises it.

Two deliberate departures from the upstream declarations, both wire-compatible:

- Strings are declared ``bytes``: a radio may send any bytes, and we decode UTF-8 ourselves
  with replacement instead of letting a parse fail on a bad name.
- Enums are declared ``uint32`` (an enum is a varint on the wire), so we need not declare them.

The file is proto2 so that every scalar has presence (``HasField``): Position's coordinates are
``optional`` upstream, and 0 is a valid latitude.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE: Final = "otszmq.meshtastic"

_T = descriptor_pb2.FieldDescriptorProto
# (field name, number, wire type, message type name or "")
_FieldSpec = tuple[str, int, int, str]

_MESSAGES: Final[dict[str, tuple[_FieldSpec, ...]]] = {
    # mqtt.proto: what a gateway publishes on <root>/2/e/<channel>/<gateway id>
    "ServiceEnvelope": (
        ("packet", 1, _T.TYPE_MESSAGE, "MeshPacket"),
        ("channel_id", 2, _T.TYPE_BYTES, ""),
        ("gateway_id", 3, _T.TYPE_BYTES, ""),
    ),
    # mesh.proto; "from" is a Python keyword, hence "sender" (names are not on the wire).
    "MeshPacket": (
        ("sender", 1, _T.TYPE_FIXED32, ""),
        ("to", 2, _T.TYPE_FIXED32, ""),
        ("channel", 3, _T.TYPE_UINT32, ""),  # the channel hash while encrypted
        ("decoded", 4, _T.TYPE_MESSAGE, "Data"),  # oneof payload_variant
        ("encrypted", 5, _T.TYPE_BYTES, ""),  # oneof payload_variant
        ("id", 6, _T.TYPE_FIXED32, ""),
        ("rx_time", 7, _T.TYPE_FIXED32, ""),
        ("hop_limit", 9, _T.TYPE_UINT32, ""),
        ("want_ack", 10, _T.TYPE_BOOL, ""),
        ("via_mqtt", 14, _T.TYPE_BOOL, ""),
        ("hop_start", 15, _T.TYPE_UINT32, ""),
    ),
    "Data": (
        ("portnum", 1, _T.TYPE_UINT32, ""),  # enum PortNum
        ("payload", 2, _T.TYPE_BYTES, ""),
        ("want_response", 3, _T.TYPE_BOOL, ""),
        ("dest", 4, _T.TYPE_FIXED32, ""),
        ("source", 5, _T.TYPE_FIXED32, ""),
        ("request_id", 6, _T.TYPE_FIXED32, ""),
        ("reply_id", 7, _T.TYPE_FIXED32, ""),
        ("emoji", 8, _T.TYPE_FIXED32, ""),
    ),
    "Position": (
        ("latitude_i", 1, _T.TYPE_SFIXED32, ""),  # degrees * 1e7
        ("longitude_i", 2, _T.TYPE_SFIXED32, ""),
        ("altitude", 3, _T.TYPE_INT32, ""),  # metres above MSL
        ("time", 4, _T.TYPE_FIXED32, ""),  # seconds since the epoch
        ("ground_speed", 15, _T.TYPE_UINT32, ""),  # m/s
        ("ground_track", 16, _T.TYPE_UINT32, ""),  # degrees * 1e5
        ("precision_bits", 23, _T.TYPE_UINT32, ""),
    ),
    "User": (
        ("id", 1, _T.TYPE_BYTES, ""),  # "!" + node number in 8 hex digits
        ("long_name", 2, _T.TYPE_BYTES, ""),
        ("short_name", 3, _T.TYPE_BYTES, ""),
        ("hw_model", 5, _T.TYPE_UINT32, ""),  # enum HardwareModel
        ("role", 7, _T.TYPE_UINT32, ""),  # enum Config.DeviceConfig.Role
    ),
    # mqtt.proto: a node's periodic summary on <root>/2/map/
    "MapReport": (
        ("long_name", 1, _T.TYPE_BYTES, ""),
        ("short_name", 2, _T.TYPE_BYTES, ""),
        ("latitude_i", 9, _T.TYPE_SFIXED32, ""),
        ("longitude_i", 10, _T.TYPE_SFIXED32, ""),
        ("altitude", 11, _T.TYPE_INT32, ""),
    ),
    # atak.proto: the ATAK plugin's packet on port ATAK_PLUGIN
    "TAKPacket": (
        ("is_compressed", 1, _T.TYPE_BOOL, ""),  # strings are unishox2-compressed
        ("contact", 2, _T.TYPE_MESSAGE, "Contact"),
        ("group", 3, _T.TYPE_MESSAGE, "Group"),
        ("status", 4, _T.TYPE_MESSAGE, "Status"),
        ("pli", 5, _T.TYPE_MESSAGE, "PLI"),  # oneof payload_variant
        ("chat", 6, _T.TYPE_MESSAGE, "GeoChat"),  # oneof payload_variant
        ("detail", 7, _T.TYPE_BYTES, ""),  # oneof payload_variant
    ),
    "Contact": (
        ("callsign", 1, _T.TYPE_BYTES, ""),
        ("device_callsign", 2, _T.TYPE_BYTES, ""),  # the ATAK uid
    ),
    "Group": (
        ("role", 1, _T.TYPE_UINT32, ""),  # enum MemberRole
        ("team", 2, _T.TYPE_UINT32, ""),  # enum Team
    ),
    "Status": (("battery", 1, _T.TYPE_UINT32, ""),),
    "PLI": (
        ("latitude_i", 1, _T.TYPE_SFIXED32, ""),
        ("longitude_i", 2, _T.TYPE_SFIXED32, ""),
        ("altitude", 3, _T.TYPE_INT32, ""),
        ("speed", 4, _T.TYPE_UINT32, ""),
        ("course", 5, _T.TYPE_UINT32, ""),
    ),
    "GeoChat": (
        ("message", 1, _T.TYPE_BYTES, ""),
        ("to", 2, _T.TYPE_BYTES, ""),
        ("to_callsign", 3, _T.TYPE_BYTES, ""),
    ),
}


class PortNum:
    """``Data.portnum`` values this bridge handles (portnums.proto)."""

    TEXT_MESSAGE_APP: Final = 1
    POSITION_APP: Final = 3
    NODEINFO_APP: Final = 4
    ATAK_PLUGIN: Final = 72
    MAP_REPORT_APP: Final = 73
    MAX: Final = 511
    """The largest port number the protocol allocates (PRIVATE_APP 256 .. MAX 511)."""


# atak.proto enums, by value; names as ATAK writes them in <__group name=.. role=..>.
TEAMS: Final = (
    "", "White", "Yellow", "Orange", "Magenta", "Red", "Maroon", "Purple", "Dark Blue", "Blue",
    "Cyan", "Teal", "Green", "Dark Green", "Brown",
)
ROLES: Final = (
    "", "Team Member", "Team Lead", "HQ", "Sniper", "Medic", "Forward Observer", "RTO", "K9",
)


class Schema:
    """The message classes above, built once into a private descriptor pool.

    NOTE: a private pool (not protobuf's default one) so that this never clashes with another
    library, such as an installed ``meshtastic`` package, that registers the real files.
    """

    __slots__ = ("_classes",)

    def __init__(self) -> None:
        file_proto = descriptor_pb2.FileDescriptorProto(
            name="otszmq_meshtastic.proto", package=_PACKAGE, syntax="proto2"
        )
        for message_name, fields in _MESSAGES.items():
            message = file_proto.message_type.add(name=message_name)
            for name, number, wire_type, type_name in fields:
                field = message.field.add(
                    name=name, number=number, type=wire_type, label=_T.LABEL_OPTIONAL
                )
                if type_name:
                    field.type_name = f".{_PACKAGE}.{type_name}"
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_proto)
        self._classes: dict[str, Any] = {
            name: message_factory.GetMessageClass(
                pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")
            )
            for name in _MESSAGES
        }

    def new(self, name: str, **fields: Any) -> Any:
        """A new message of type ``name`` (a key of the table above)."""
        return self._classes[name](**fields)
