"""Meshtastic link without I/O: keys, AES-CTR, envelopes, mesh -> CoT and CoT -> mesh."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from otszmq.bridge.meshtastic.codec import (
    BROADCAST,
    MeshCodec,
    MeshtasticError,
    NodeInfo,
    Position,
    TakPli,
    Text,
    node_id,
)
from otszmq.bridge.meshtastic.config import MeshtasticConfig
from otszmq.bridge.meshtastic.crypto import (
    DEFAULT_KEY,
    ChannelKey,
    channel_hash,
    crypt,
    expand_key,
    parse_channel,
    parse_key,
)
from otszmq.bridge.meshtastic.schema import PortNum, Schema
from otszmq.bridge.meshtastic.translate import (
    MeshTranslator,
    eud_node_number,
    parse_route,
)
from otszmq.config import load_settings
from otszmq.errors import ConfigError
from otszmq.metrics import Counters
from otszmq.wire import RoutedHeader, RouteFlag, RouteMode
from otszmq.workers.cot import parse_event
from tests.support import marker_event, sa_event

LONGFAST = parse_channel("LongFast:AQ==")
SECRET = ChannelKey("Secret", bytes(range(32)))
CLEAR = parse_channel("Clear:none")
NODE = 0xA1B2C3D4
GATEWAY_KEY = "msh.US.2.e.LongFast.!0badcafe"


# -- keys and encryption ---------------------------------------------------------------------


def test_default_key_aq_expands_to_the_well_known_key():
    assert parse_key("AQ==") == DEFAULT_KEY
    assert DEFAULT_KEY.hex() == "d4f1bb3a20290759f0bcffabcf4e6901"
    assert expand_key(b"\x02") == DEFAULT_KEY[:-1] + b"\x02"  # index n: last byte + n - 1
    assert parse_key("none") == b"" and expand_key(b"\x00") == b"" and expand_key(b"") == b""


def test_keys_of_16_and_32_bytes_are_used_as_given_and_short_ones_padded():
    key16, key32 = bytes(range(16)), bytes(range(32))
    assert parse_key(base64.b64encode(key16).decode()) == key16
    assert parse_key(base64.b64encode(key32).decode()) == key32
    assert expand_key(b"ab") == b"ab" + bytes(14)
    assert expand_key(bytes(20)) == bytes(32)


@pytest.mark.parametrize("text", ["not base64!", "QUJ", base64.b64encode(bytes(33)).decode()])
def test_bad_keys_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_key(text)


def test_longfast_with_the_default_key_hashes_to_8():
    # The channel number every LongFast packet carries on the public mesh.
    assert channel_hash("LongFast", DEFAULT_KEY) == 8
    assert LONGFAST.hash == 8


def test_aes_ctr_nonce_is_packet_id_then_sender_little_endian():
    packet_id, sender = 0x01020304, 0xA1B2C3D4
    plain = bytes(40)
    # First keystream block by hand: AES-ECB of the initial counter block.
    block = packet_id.to_bytes(8, "little") + sender.to_bytes(4, "little") + bytes(4)
    ecb = Cipher(algorithms.AES(DEFAULT_KEY), modes.ECB()).encryptor()
    keystream = ecb.update(block) + ecb.finalize()
    assert crypt(DEFAULT_KEY, packet_id, sender, plain)[:16] == keystream
    assert crypt(DEFAULT_KEY, packet_id, sender, crypt(DEFAULT_KEY, packet_id, sender, b"hi")) \
        == b"hi"


@pytest.mark.parametrize("text", ["", "Long.Fast:AQ==", "a/b", "#:AQ=="])
def test_bad_channel_names_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_channel(text)


def test_settings_make_a_config_with_the_root_in_amqp_form():
    settings = load_settings({}, env={
        "OTSZMQ_MESHTASTIC_ROOT": "msh/EU_868", "OTSZMQ_MESHTASTIC_CHANNELS": "LongFast,Ops:none",
        "OTSZMQ_MESHTASTIC_GATEWAY_ID": "tak1",
    })
    config = MeshtasticConfig.from_settings(settings)
    assert config.root == "msh.EU_868"
    assert [c.name for c in config.channels] == ["LongFast", "Ops"]
    assert config.channels[0].key == DEFAULT_KEY and config.channels[1].key == b""
    assert config.routing_key(config.outbound) == "msh.EU_868.2.e.LongFast.tak1"
    with pytest.raises(ConfigError, match="meshtastic_gateway_id"):
        MeshtasticConfig(gateway_id="a.b")
    with pytest.raises(ConfigError, match="meshtastic_position_interval"):
        load_settings({}, env={"OTSZMQ_MESHTASTIC_POSITION_INTERVAL": "0"})


# -- envelopes ---------------------------------------------------------------------------------


@pytest.fixture
def codec():
    return MeshCodec((LONGFAST, SECRET, CLEAR))


@pytest.mark.parametrize("channel", [LONGFAST, SECRET, CLEAR], ids=lambda c: c.name)
def test_position_envelope_round_trips_on_every_kind_of_channel(codec, channel):
    body = codec.envelope(channel, "!0badcafe", NODE, PortNum.POSITION_APP,
                          codec.position(-33.8688197, 151.2092955, 58.0, 1_700_000_000))
    message = codec.decode(body)
    assert (message.sender, message.channel, message.gateway) == (NODE, channel.name, "!0badcafe")
    assert message.to == BROADCAST and message.portnum == PortNum.POSITION_APP
    assert message.payload == Position(-33.8688197, 151.2092955, 58.0)


def test_encrypted_envelopes_carry_ciphertext_and_the_channel_hash(codec):
    body = codec.envelope(LONGFAST, "gw", NODE, PortNum.TEXT_MESSAGE_APP, b"hello mesh")
    envelope = Schema().new("ServiceEnvelope").FromString(body)
    assert envelope.packet.HasField("encrypted") and not envelope.packet.HasField("decoded")
    assert b"hello mesh" not in body
    assert envelope.packet.channel == 8
    clear = Schema().new("ServiceEnvelope").FromString(
        codec.envelope(CLEAR, "gw", NODE, PortNum.TEXT_MESSAGE_APP, b"hello mesh"))
    assert clear.packet.decoded.payload == b"hello mesh"


def test_each_port_decodes_to_its_payload(codec):
    def decode(portnum, payload):
        return codec.decode(codec.envelope(LONGFAST, "gw", NODE, portnum, payload)).payload

    assert decode(PortNum.TEXT_MESSAGE_APP, "grüß".encode()) == Text("grüß")
    assert decode(PortNum.NODEINFO_APP, codec.user(NODE, "Base Camp", "BC")) == \
        NodeInfo("Base Camp", "BC")
    tak = decode(PortNum.ATAK_PLUGIN, codec.tak_pli(
        "ANDROID-1", "Alpha", "Dark Blue", "Team Lead", 77, 48.1, 11.5, 520.0, 3.0, 90.0))
    assert tak == TakPli("Alpha", "ANDROID-1", "Dark Blue", "Team Lead", 77,
                         Position(48.1, 11.5, 520.0, 3.0, 90.0))


def test_wrong_key_is_rejected(codec):
    wrong = ChannelKey("LongFast", bytes(16))
    other = MeshCodec((wrong,))
    reasons = []
    for _ in range(50):  # a wrong key yields random bytes (fresh packet ids): all rejected
        body = other.envelope(wrong, "gw", NODE, PortNum.POSITION_APP,
                              codec.position(1.0, 2.0, None, 0))
        assert other.decode(body).payload == Position(1.0, 2.0, None)
        with pytest.raises(MeshtasticError) as caught:
            codec.decode(body)
        reasons.append(caught.value.reason)
    assert reasons.count("undecryptable") > 40


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xff\xff", "malformed"),
    (b"", "malformed"),  # an envelope without a packet
    (b"\x0a\x05\x0d\x01\x02", "malformed"),  # truncated packet
    (b"\x12\x80\x40" + bytes(8192), "malformed"),  # far larger than a LoRa packet
], ids=["garbage", "empty", "truncated", "huge"])
def test_malformed_envelopes_raise_with_a_reason(codec, body, reason):
    with pytest.raises(MeshtasticError) as caught:
        codec.decode(body)
    assert caught.value.reason == reason


def test_encrypted_packet_of_an_unknown_channel_is_rejected(codec):
    body = MeshCodec((ChannelKey("Other", DEFAULT_KEY),)).envelope(
        ChannelKey("Other", DEFAULT_KEY), "gw", NODE, PortNum.TEXT_MESSAGE_APP, b"x")
    with pytest.raises(MeshtasticError) as caught:
        codec.decode(body)
    assert caught.value.reason == "unknown_channel"


def test_truncated_envelopes_are_rejected_or_decode_cleanly(codec):
    body = codec.envelope(LONGFAST, "gw", NODE, PortNum.POSITION_APP,
                          codec.position(1.0, 2.0, 3.0, 4))
    rejected = 0
    for end in range(len(body)):
        try:
            codec.decode(body[:end])  # a prefix may be a shorter valid envelope
        except MeshtasticError:
            rejected += 1
    assert rejected >= len(body) // 2


# -- routing keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key, expected", [
    ("msh.US.2.e.LongFast.!a1b2c3d4", ("LongFast", "!a1b2c3d4")),
    ("msh.US.2.map.!a1b2c3d4", ("", "!a1b2c3d4")),
    ("msh.US.2.json.LongFast.!a1b2c3d4", None),
    ("msh.EU.2.e.LongFast.!a1b2c3d4", None),
    ("msh.US.2.e.LongFast", None),
])
def test_routing_keys(key, expected):
    assert parse_route("msh.US", key) == expected


# -- mesh -> CoT -------------------------------------------------------------------------------


@pytest.fixture
def translator():
    return MeshTranslator(MeshtasticConfig(channels=(LONGFAST, CLEAR)), Counters())


def envelope(translator, portnum, payload, *, sender=NODE, to=BROADCAST, channel=LONGFAST,
             gateway="!0badcafe"):
    return translator.codec.envelope(channel, gateway, sender, portnum, payload, to=to)


def inject_one(translator, portnum, payload, **kwargs):
    injections = translator.inbound(GATEWAY_KEY, envelope(translator, portnum, payload, **kwargs))
    assert len(injections) == 1 and len(injections[0].events) == 1
    return injections[0].sender_uid, parse_event(injections[0].events[0])


def test_position_becomes_a_pli_named_by_an_earlier_nodeinfo(translator):
    codec = translator.codec
    assert translator.inbound(GATEWAY_KEY, envelope(
        translator, PortNum.NODEINFO_APP, codec.user(NODE, "Ridge Relay", "RR"))) == []
    sender, event = inject_one(translator, PortNum.POSITION_APP,
                               codec.position(47.6062095, -122.3320708, 56.0, 0))
    assert sender == event.uid == "MESHTASTIC-!a1b2c3d4"
    assert event.type == "a-f-G-U-C" and event.callsign == "Ridge Relay"
    assert event.lat == pytest.approx(47.6062095) and event.lon == pytest.approx(-122.3320708)
    assert event.hae == 56.0
    assert translator.counters.values["mesh_received"] == 2


def test_position_of_an_unnamed_node_uses_its_node_id_and_a_rename_reannounces(translator):
    codec = translator.codec
    _, event = inject_one(translator, PortNum.POSITION_APP, codec.position(1.5, 2.5, None, 0))
    assert event.callsign == "!a1b2c3d4" and event.hae == 9999999.0  # unknown altitude
    _, renamed = inject_one(translator, PortNum.NODEINFO_APP, codec.user(NODE, "Hilltop", "H"))
    assert renamed.callsign == "Hilltop" and renamed.lat == 1.5


def test_map_report_becomes_a_pli(translator):
    report = Schema().new("MapReport", long_name=b"Map Node", short_name=b"MN",
                          latitude_i=515007000, longitude_i=-1246000).SerializeToString()
    body = envelope(translator, PortNum.MAP_REPORT_APP, report, channel=CLEAR)
    injections = translator.inbound("msh.US.2.map.!0badcafe", body)
    event = parse_event(injections[0].events[0])
    assert (event.callsign, event.lat, event.lon) == ("Map Node", 51.5007, -0.1246)


def test_text_becomes_geochat_to_all_chat_rooms(translator):
    sender, event = inject_one(translator, PortNum.TEXT_MESSAGE_APP, b"<hi> & \x01bye")
    assert event.type == "b-t-f" and event.chat is not None
    assert event.chat.chatroom == event.chat.chat_id == "All Chat Rooms"
    assert event.chat.sender_callsign == "!a1b2c3d4"
    assert event.remarks == "<hi> & bye"
    assert sender == "MESHTASTIC-!a1b2c3d4" and event.links[0].uid == sender


def test_atak_plugin_pli_keeps_the_eud_uid_callsign_and_team(translator):
    payload = translator.codec.tak_pli("ANDROID-abc", "Viper", "Red", "Medic", 41,
                                       10.0, 20.0, 100.0, 5.0, 270.0)
    sender, event = inject_one(translator, PortNum.ATAK_PLUGIN, payload)
    assert sender == event.uid == "ANDROID-abc"
    assert (event.callsign, event.group_name, event.group_role) == ("Viper", "Red", "Medic")
    assert event.status is not None and event.status.get("battery") == "41"
    assert event.track is not None and event.track.get("course") == "270.0"


def test_atak_plugin_chat_and_compressed_packets(translator):
    schema = Schema()
    packet = schema.new("TAKPacket")
    packet.contact.callsign = b"Viper"
    packet.contact.device_callsign = b"ANDROID-abc"
    packet.chat.message = b"moving out"
    packet.chat.to = b"All Chat Rooms"
    _, event = inject_one(translator, PortNum.ATAK_PLUGIN, packet.SerializeToString())
    assert event.remarks == "moving out" and event.chat.sender_callsign == "Viper"

    packet.is_compressed = True  # unishox2 strings: a chat is dropped, a PLI keeps its point
    assert translator.inbound(GATEWAY_KEY, envelope(
        translator, PortNum.ATAK_PLUGIN, packet.SerializeToString())) == []
    assert translator.counters.values["mesh_compressed"] == 1
    pli = schema.new("TAKPacket", is_compressed=True)
    pli.contact.callsign = b"\x80\x81compressed"
    pli.pli.latitude_i, pli.pli.longitude_i = 100000000, 200000000
    sender, event = inject_one(translator, PortNum.ATAK_PLUGIN, pli.SerializeToString(),
                               sender=0x00000099)
    assert sender == "MESHTASTIC-!00000099" and event.lat == 10.0


def test_duplicates_own_packets_and_other_ports_are_dropped_and_counted(translator):
    body = envelope(translator, PortNum.TEXT_MESSAGE_APP, b"once")
    assert len(translator.inbound(GATEWAY_KEY, body)) == 1
    assert translator.inbound("msh.US.2.e.LongFast.!other", body) == []  # heard by 2 gateways
    own = envelope(translator, PortNum.TEXT_MESSAGE_APP, b"ours", gateway="otszmq")
    assert translator.inbound("msh.US.2.e.LongFast.otszmq", own) == []
    telemetry = envelope(translator, 67, b"\x0d\x00\x00\x00\x00")
    assert translator.inbound(GATEWAY_KEY, telemetry) == []
    assert translator.inbound("msh.US.2.json.LongFast.!x", b"{}") == []
    assert translator.inbound(GATEWAY_KEY, b"\x00garbage") == []
    values = translator.counters.values
    assert (values["mesh_duplicate"], values["mesh_own"], values["mesh_ignored"],
            values["mesh_malformed"]) == (1, 1, 2, 1)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(body):
    translator = MeshTranslator(MeshtasticConfig(channels=(LONGFAST, CLEAR)), Counters())
    for injection in translator.inbound(GATEWAY_KEY, body):
        for event in injection.events:
            parse_event(event)  # whatever decodes must be valid CoT


@settings(max_examples=200, deadline=None)
@given(ciphertext=st.binary(max_size=240), packet_id=st.integers(0, 2**32 - 1),
       sender=st.integers(0, 2**32 - 1))
def test_arbitrary_ciphertext_never_raises(ciphertext, packet_id, sender):
    translator = MeshTranslator(MeshtasticConfig(channels=(LONGFAST,)), Counters())
    body = Schema().new("ServiceEnvelope", channel_id=b"LongFast")
    body.packet.sender, body.packet.id, body.packet.encrypted = sender, packet_id, ciphertext
    for injection in translator.inbound(GATEWAY_KEY, body.SerializeToString()):
        for event in injection.events:
            parse_event(event)


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=60), text=st.text(max_size=200))
def test_any_names_and_texts_make_valid_cot(name, text):
    translator = MeshTranslator(MeshtasticConfig(channels=(CLEAR,)), Counters())
    codec = translator.codec
    for portnum, payload in ((PortNum.NODEINFO_APP, codec.user(NODE, name, name)),
                             (PortNum.POSITION_APP, codec.position(1.0, 2.0, None, 0)),
                             (PortNum.TEXT_MESSAGE_APP, text.encode())):
        for injection in translator.inbound(GATEWAY_KEY, envelope(
                translator, portnum, payload, channel=CLEAR)):
            parse_event(injection.events[0])


# -- CoT -> mesh -------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def routed(event: bytes, *, groups=("__ANON__",), origin="") -> RoutedHeader:
    parsed = parse_event(event)
    flags = RouteFlag.POSITION if parsed.type.startswith("a-") else RouteFlag.NONE
    return RoutedHeader("i", 7, RouteMode.BROADCAST, flags, groups, (), (), (),
                        parsed.uid, parsed.type, parsed.callsign or "", 0.0, "", origin,
                        parsed.uid)


def decoded(translator, envelopes):
    return [translator.codec.decode(e.body) for e in envelopes]


@pytest.fixture
def outbound():
    clock = Clock()
    config = MeshtasticConfig(channels=(LONGFAST,), position_interval=30.0)
    return MeshTranslator(config, Counters(), clock=clock), clock


def test_eud_position_goes_out_as_nodeinfo_position_and_atak_pli(outbound):
    translator, _ = outbound
    event = sa_event("ANDROID-eud1", "Alpha", lat=45.5)
    envelopes = translator.outbound(routed(event), event)
    assert {e.routing_key for e in envelopes} == {"msh.US.2.e.LongFast.otszmq"}
    info, position, tak = decoded(translator, envelopes)
    node = eud_node_number("ANDROID-eud1")
    assert {m.sender for m in (info, position, tak)} == {node}
    assert {m.gateway for m in (info, position, tak)} == {"otszmq"}
    assert info.payload == NodeInfo("Alpha", "A")
    assert position.payload == Position(45.5, 2.0, 0.0)
    assert isinstance(tak.payload, TakPli) and tak.payload.uid == "ANDROID-eud1"
    assert tak.payload.team == "Cyan" and tak.payload.callsign == "Alpha"
    assert node_id(node) == f"!{node:08x}"


def test_eud_positions_are_rate_limited_per_eud(outbound):
    translator, clock = outbound
    alpha, bravo = sa_event("ANDROID-a", "Alpha"), sa_event("ANDROID-b", "Bravo")
    assert len(translator.outbound(routed(alpha), alpha)) == 3
    assert len(translator.outbound(routed(bravo), bravo)) == 3
    clock.now += 29.0
    assert translator.outbound(routed(alpha), alpha) == []
    assert translator.counters.values["mesh_out_rate_limited"] == 1
    clock.now += 1.0
    assert len(translator.outbound(routed(alpha), alpha)) == 2  # no NODEINFO this time
    assert translator.counters.values["mesh_out_positions"] == 3


def test_markers_other_servers_groups_and_mesh_nodes_do_not_go_out(outbound):
    translator, _ = outbound
    marker = marker_event("marker-1")
    assert translator.outbound(routed(marker), marker) == []
    sa = sa_event("ANDROID-c", "Charlie")
    assert translator.outbound(routed(sa, origin="other-server"), sa) == []
    assert translator.outbound(routed(sa, groups=("Red",)), sa) == []
    # A mesh node's PLI that we injected comes back through the fan-out: never echoed.
    body = envelope(translator, PortNum.POSITION_APP, translator.codec.position(1.0, 2.0, 3.0, 0))
    (injection,) = translator.inbound(GATEWAY_KEY, body)
    echoed = injection.events[0]
    assert translator.outbound(routed(echoed), echoed) == []


def geochat(sender_uid: str, callsign: str, text: str, *, room: str = "All Chat Rooms",
            dest_uid: str = "") -> bytes:
    marti = f'<marti><dest uid="{dest_uid}"/></marti>' if dest_uid else ""
    return (
        f'<event version="2.0" uid="GeoChat.{sender_uid}.{room}.m1" type="b-t-f" how="h-g-i-g-o" '
        'time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z" stale="2026-01-02T00:00:00Z">'
        '<point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/><detail>'
        f'<__chat id="{room}" chatroom="{room}" senderCallsign="{callsign}"/>'
        f'<link uid="{sender_uid}" type="a-f-G-U-C" relation="p-p"/>{marti}'
        f"<remarks>{text}</remarks></detail></event>"
    ).encode()


def test_chat_to_all_chat_rooms_goes_out_as_text_and_dms_to_mesh_nodes(outbound):
    translator, _ = outbound
    chat = geochat("ANDROID-a", "Alpha", "hello mesh")
    (message,) = decoded(translator, translator.outbound(routed(chat), chat))
    assert message.payload == Text("hello mesh") and message.to == BROADCAST
    assert message.portnum == PortNum.TEXT_MESSAGE_APP
    assert message.sender == eud_node_number("ANDROID-a")

    # The node is known once it was heard; then a DM to its uid goes to its node number.
    translator.inbound(GATEWAY_KEY, envelope(translator, PortNum.TEXT_MESSAGE_APP, b"hi"))
    dm = geochat("ANDROID-a", "Alpha", "just you", room="MESHTASTIC-!a1b2c3d4",
                 dest_uid="MESHTASTIC-!a1b2c3d4")
    (direct,) = decoded(translator, translator.outbound(routed(dm), dm))
    assert direct.to == NODE and direct.payload == Text("just you")
    # A room the mesh is not in stays off the air.
    team = geochat("ANDROID-a", "Alpha", "team only", room="Red Team")
    assert translator.outbound(routed(team), team) == []


def test_mesh_text_answering_an_eud_becomes_a_direct_chat(outbound):
    translator, _ = outbound
    sa = sa_event("ANDROID-a", "Alpha")
    translator.outbound(routed(sa), sa)
    reply = envelope(translator, PortNum.TEXT_MESSAGE_APP, b"copy",
                     to=eud_node_number("ANDROID-a"))
    (injection,) = translator.inbound(GATEWAY_KEY, reply)
    event = parse_event(injection.events[0])
    assert [d.uid for d in event.dests] == ["ANDROID-a"]
    assert event.chat.chatroom == "Alpha"
    # The mesh's chat comes back through the fan-out and is not sent again.
    assert translator.outbound(routed(injection.events[0]), injection.events[0]) == []


def test_eud_node_numbers_are_stable_and_valid():
    numbers = {eud_node_number(f"ANDROID-{i}") for i in range(1000)}
    assert len(numbers) == 1000
    assert all(4 <= n < BROADCAST for n in numbers)
    assert eud_node_number("ANDROID-1") == eud_node_number("ANDROID-1")


def test_direct_text_between_two_radios_is_not_shown_to_euds(translator):
    body = envelope(translator, PortNum.TEXT_MESSAGE_APP, b"private", to=0x12345678)
    assert translator.inbound(GATEWAY_KEY, body) == []
    assert translator.counters.values["mesh_ignored"] == 1


def test_the_link_reads_only_its_channels_and_map_reports():
    config = MeshtasticConfig(root="msh.EU_868", channels=(LONGFAST, CLEAR))
    assert config.bindings == (
        "msh.EU_868.2.e.LongFast.*", "msh.EU_868.2.e.Clear.*", "msh.EU_868.2.map.#",
    )
