"""The bridge's sans-IO parts: flow tags, the mirror plan, inbound decoding, the outbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from otszmq.bridge.amqp import redact
from otszmq.bridge.flowtags import add_tag, has_tag
from otszmq.bridge.inbound import (
    Injection,
    MalformedMessage,
    Skip,
    decode_federated,
    decode_inbound,
)
from otszmq.bridge.mirror import (
    HEADER_GROUPS,
    HEADER_ORIGIN,
    HEADER_SENDER,
    MirrorPlan,
    ots_body,
)
from otszmq.bridge.outbox import Outbox
from otszmq.bridge.topology import Topology
from otszmq.config import load_settings
from otszmq.errors import ConfigError
from otszmq.supervisor import build_children, child_environment
from otszmq.wire import RoutedHeader, RouteFlag, RouteMode

SA = (b'<event version="2.0" uid="u1" type="a-f-G-U-C" how="m-g" time="t" start="t" stale="t">'
      b'<point lat="1" lon="2" hae="0" ce="1" le="1"/><detail><contact callsign="A"/></detail>'
      b"</event>")
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def header(mode: int = RouteMode.BROADCAST, *, groups: tuple[str, ...] = ("__ANON__",),
           origin: str = "", uids: tuple[str, ...] = (), callsigns: tuple[str, ...] = (),
           missions: tuple[str, ...] = (), sender: str = "u1") -> RoutedHeader:
    return RoutedHeader("i", 3, mode, RouteFlag.NONE, groups, uids, callsigns, missions,
                        "u1", "a-f-G-U-C", "A", 0.0, "", origin, sender)


# -- flow tags -----------------------------------------------------------------------------


@pytest.mark.parametrize("event", [
    SA,
    SA.replace(b"<detail><contact callsign=\"A\"/></detail>", b"<detail/>"),
    SA.replace(b"<detail><contact callsign=\"A\"/></detail>", b""),
    SA.replace(b"</detail>", b'<_flow-tags_ TAK-Server-abc="2020-01-01T00:00:00Z"/></detail>'),
])
def test_a_flow_tag_is_added_where_tak_puts_it_and_keeps_the_event_well_formed(
    event: bytes,
) -> None:
    tagged = add_tag(event, "srv-a", NOW)
    root = etree.fromstring(tagged)
    tags = root.find("detail/_flow-tags_")
    assert tags is not None and tags.get("otszmq-srv-a") == "2026-01-02T03:04:05.678Z"
    assert len(root.findall("detail")) == 1 and len(root.findall("detail/_flow-tags_")) == 1
    assert has_tag(tagged, "srv-a")
    assert not has_tag(tagged, "srv") and not has_tag(event, "srv-a")
    assert has_tag(add_tag(tagged, "srv-b", NOW), "srv-a")


def test_a_flow_tag_needs_an_event() -> None:
    assert add_tag(b"not an event", "srv-a") == b"not an event"


# -- the mirror plan -------------------------------------------------------------------------


def plan(**kwargs: object) -> MirrorPlan:
    return MirrorPlan("srv-a", "otszmq-federation", **kwargs)  # type: ignore[arg-type]


def test_a_broadcast_goes_to_the_firehose_and_each_groups_out_key() -> None:
    pubs = plan().publications(header(groups=("Red", "Blue")), SA)
    assert [(p.exchange, p.routing_key) for p in pubs] == [
        ("firehose", ""), ("groups", "Red.OUT"), ("groups", "Blue.OUT"),
    ]
    assert json.loads(pubs[0].body) == {"uid": "u1", "cot": SA.decode()}
    assert all(p.expiration_ms == 86_400_000 and p.content_type == "application/json"
               for p in pubs)


def test_a_direct_message_goes_to_dms_by_uid_and_callsign_not_to_groups() -> None:
    pubs = plan().publications(
        header(RouteMode.DIRECT, uids=("u9",), callsigns=("BRAVO",)), SA
    )
    assert [(p.exchange, p.routing_key) for p in pubs] == [
        ("firehose", ""), ("dms", "u9"), ("dms", "BRAVO"),
    ]


def test_a_mission_event_goes_to_missions_and_a_probe_nowhere() -> None:
    pubs = plan().publications(header(RouteMode.MISSION, missions=("m1",)), SA)
    assert [(p.exchange, p.routing_key) for p in pubs] == [
        ("firehose", ""), ("missions", "missions.m1"),
    ]
    assert plan().publications(header(RouteMode.PROBE), SA) == []
    assert not plan(federated_groups=frozenset({"*"})).wanted(header(RouteMode.PROBE))


def test_only_own_events_of_federated_groups_federate_once_with_origin_and_tag() -> None:
    fed = plan(federated_groups=frozenset({"Red"}), mirror=False)
    pubs = fed.publications(header(groups=("Red", "Blue")), SA)
    assert len(pubs) == 1
    pub = pubs[0]
    assert (pub.exchange, pub.routing_key) == ("otszmq-federation", "srv-a")
    assert pub.headers == {HEADER_ORIGIN: "srv-a", HEADER_GROUPS: ["Red"], HEADER_SENDER: "u1"}
    assert has_tag(pub.body, "srv-a")
    assert fed.publications(header(groups=("Blue",)), SA) == []
    assert not fed.wanted(header(groups=("Blue",)))
    # An event that came from another server never goes back out, nor to the mirror.
    assert fed.publications(header(groups=("Red",), origin="srv-b"), SA) == []
    assert not plan().wanted(header(origin="srv-b"))
    assert plan(mirror_federated=True).wanted(header(origin="srv-b"))


def test_nothing_federates_by_default_and_star_federates_every_group() -> None:
    assert plan().federated(("Red",)) == ()
    assert plan(federated_groups=frozenset({"*"})).federated(("Red", "X")) == ("Red", "X")


# -- inbound ---------------------------------------------------------------------------------


def test_ots_cot_parser_body_is_injected_as_its_sender() -> None:
    body = json.dumps({"uid": "ext", "cot": SA.decode(), "user_id": 7}).encode()
    assert decode_inbound(body, ("__ANON__",), 1 << 20) == Injection(
        (SA,), ("__ANON__",), "", "ext"
    )
    body = json.dumps({"uid": "ext", "cot": SA.decode(), "groups": ["Red"]}).encode()
    assert decode_inbound(body, ("__ANON__",), 1 << 20).groups_in == ("Red",)
    assert decode_inbound(b"  " + SA, ("G",), 1 << 20) == Injection((SA,), ("G",))


def test_ots_disconnect_notice_becomes_a_delete() -> None:
    body = json.dumps({"uid": "gone", "cot": None, "disconnected": True}).encode()
    injection = decode_inbound(body, ("__ANON__",), 1 << 20)
    root = etree.fromstring(injection.events[0])
    assert root.get("type") == "t-x-d-d"
    link = root.find("detail/link")
    assert link is not None and link.get("uid") == "gone"


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b'{"uid": 5, "cot": "<event/>"}', b'{"uid": "x"}',
    b'{"uid": "x", "cot": "no event here"}', b'{"cot": null, "disconnected": true}',
    b'{"uid": "x", "cot": "<event/>", "groups": "Red"}', b'{"uid": "x", "cot": "<event/>", '
    b'"groups": [""]}', b"\xff\xfe", b"<event>" + b"x" * 300,
])
def test_malformed_inbound_bodies_are_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(MalformedMessage, match="inbound message"):
        decode_inbound(body, ("__ANON__",), 256)


@given(st.binary(max_size=200))
def test_arbitrary_inbound_bytes_only_raise_our_error(body: bytes) -> None:
    try:
        injection = decode_inbound(body, ("__ANON__",), 1 << 20)
    except MalformedMessage:
        return
    assert injection.events and all(b"<event" in event for event in injection.events)


def test_federated_messages_skip_own_looped_and_unfederated() -> None:
    fed = plan(federated_groups=frozenset({"Red"}))

    def decode(body: bytes, **headers: object) -> Injection | Skip:
        base: dict[str, object] = {HEADER_ORIGIN: "srv-b", HEADER_GROUPS: ["Red", "Blue"],
                                   HEADER_SENDER: "u1"}
        base.update(headers)
        return decode_federated(body, base, fed, 1 << 20)

    assert decode(SA) == Injection((SA,), ("Red",), "srv-b", "u1")
    assert decode(SA, **{HEADER_ORIGIN: "srv-a"}) == Skip("own")
    assert decode(add_tag(SA, "srv-a")) == Skip("loops")
    assert decode(SA, **{HEADER_GROUPS: ["Blue"]}) == Skip("not_federated")
    for bad in ({HEADER_ORIGIN: ""}, {HEADER_GROUPS: "Red"}, {HEADER_GROUPS: [1]}):
        with pytest.raises(MalformedMessage, match="federation message"):
            decode(SA, **bad)
    with pytest.raises(MalformedMessage):
        decode(b"no event")
    with pytest.raises(MalformedMessage):
        decode_federated(SA, None, fed, 1 << 20)


# -- outbox ----------------------------------------------------------------------------------


def test_outbox_drops_the_oldest_when_full_and_puts_back_the_newest() -> None:
    async def go() -> None:
        box: Outbox[int] = Outbox(3)
        assert [box.put(i) for i in range(5)] == [0, 0, 0, 1, 1]
        assert box.take(2) == [2, 3]
        box.put(5)
        # Three taken-but-unsent items return in front; one fits: the newest of them.
        assert box.put_back([7, 8, 9]) == 2
        await asyncio.wait_for(box.wait(), 1.0)
        assert box.take(10) == [9, 4, 5]
        assert len(box) == 0

    asyncio.run(go())


def test_outbox_put_back_keeps_order_when_there_is_room() -> None:
    async def go() -> None:
        box: Outbox[int] = Outbox(10)
        for i in range(3):
            box.put(i)
        taken = box.take(2)
        assert len(box) == 1
        assert box.put_back(taken) == 0
        assert box.take(10) == [0, 1, 2]
        assert len(box) == 0

    asyncio.run(go())


# -- settings and helpers ----------------------------------------------------------------------


def test_bridge_settings_have_ots_defaults_and_are_checked() -> None:
    settings = load_settings({}, env={})
    assert settings.amqp_url == "" and settings.amqp_inbound_exchange == "cot_parser"
    assert settings.amqp_federated_groups == ()
    topology = Topology(settings.federation_id, settings.amqp_federation_exchange,
                        settings.amqp_inbound_exchange, settings.amqp_inbound_queue)
    assert ("firehose", "fanout") in topology.exchanges()
    assert topology.federation_queue == f"otszmq-federation.{settings.federation_id}"
    with pytest.raises(ConfigError, match="amqp_url") as info:
        load_settings({"amqp_url": "http://u:secret@h"}, env={})
    assert "secret" not in str(info.value)
    with pytest.raises(ConfigError, match="server_id"):
        load_settings({"server_id": "bad id"}, env={})


def test_two_data_dirs_get_two_stable_server_ids() -> None:
    a = load_settings({"data_dir": "/tmp/x/a"}, env={})
    b = load_settings({"data_dir": "/tmp/x/b"}, env={})
    assert a.federation_id != b.federation_id
    assert a.federation_id == load_settings({"data_dir": "/tmp/x/a"}, env={}).federation_id


def test_redact_hides_the_password() -> None:
    assert redact("amqp://guest:secret@h:5672/v") == "amqp://guest:***@h:5672/v"
    assert redact("amqp://h/v") == "amqp://h/v"


def test_the_mirror_names_the_sender_not_the_item() -> None:
    # A marker (uid m1) placed by EUD u7: OTS's consumers expect the sender's uid.
    marker = header(sender="u7")._replace(uid="m1")
    bodies = {json.loads(p.body)["uid"] for p in plan().publications(marker, SA)}
    assert bodies == {"u7"}
    unannounced = header(sender="")
    bodies = {json.loads(p.body)["uid"] for p in plan().publications(unannounced, SA)}
    assert bodies == {"u1"}


def test_ots_body_is_json_with_the_xml_as_text() -> None:
    assert json.loads(ots_body("u", SA)) == {"uid": "u", "cot": SA.decode()}


def test_serve_starts_a_bridge_only_with_a_url_and_keeps_the_url_out_of_argv() -> None:
    plain = load_settings({"workers": "1"}, env={})
    assert "bridge" not in [child.name for child in build_children(plain)]
    assert "OTSZMQ_AMQP_URL" not in child_environment(plain)
    url = "amqp://guest:secret@127.0.0.1:5672/v"
    bridged = load_settings({"workers": "1", "amqp_url": url}, env={})
    bridge = next(child for child in build_children(bridged) if child.name == "bridge")
    assert "secret" not in " ".join(bridge.argv)
    assert bridge.argv[bridge.argv.index("--server-id") + 1] == bridged.federation_id
    assert child_environment(bridged)["OTSZMQ_AMQP_URL"] == url
    # Meshtastic channel keys, secrets too, travel the same way.
    keyed = load_settings({"workers": "1", "amqp_url": url,
                           "meshtastic_channels": "Ops:c2VjcmV0a2V5MTIzNDU2Nw=="}, env={})
    bridge = next(child for child in build_children(keyed) if child.name == "bridge")
    assert "c2VjcmV0a2V5MTIzNDU2Nw==" not in " ".join(bridge.argv)
    assert child_environment(keyed)["OTSZMQ_MESHTASTIC_CHANNELS"] == (
        "Ops:c2VjcmV0a2V5MTIzNDU2Nw==")
