"""Meshtastic over MQTT against the real RabbitMQ (its MQTT plugin) and a real node.

A paho-mqtt client plays the gateway: it publishes envelopes to RabbitMQ's MQTT listener
(``scripts/rabbitmq-mqtt`` starts it) and subscribes to what the link sends to the mesh. The
link runs in-process on a real AMQP connection, injects through the node's inject endpoint
and reads the node's fan-out, as the bridge process does. Each test has a vhost of its own
(MQTT clients select it with the user name ``vhost:user``).
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aio_pika
import paho.mqtt.client as mqtt
import pytest
import zmq
import zmq.asyncio

from otszmq.bridge.meshtastic import MeshtasticConfig, MeshtasticLink
from otszmq.bridge.meshtastic.codec import MeshCodec, Position, Text
from otszmq.bridge.meshtastic.crypto import parse_channel
from otszmq.bridge.meshtastic.schema import PortNum
from otszmq.config import load_settings
from otszmq.inject import Injector
from otszmq.metrics import Counters
from otszmq.wire import TOPIC_EVENT, routed_batch, routed_header
from otszmq.workers.cot import parse_event
from tests.amqp_support import amqp_vhost, rabbitmqctl
from tests.support import marker_event, running_node, sa_event

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
LONGFAST = parse_channel("LongFast:AQ==")
MESH_NODE = 0xA1B2C3D4
DEADLINE = 20.0


@pytest.fixture(scope="module")
def mqtt_port() -> int:
    done = subprocess.run([str(REPO / "scripts" / "rabbitmq-mqtt")], capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, f"scripts/rabbitmq-mqtt failed:\n{done.stderr}"
    return int(done.stdout.strip().rsplit(":", 1)[1])


class Gateway:
    """A Meshtastic gateway as seen by the broker: an MQTT client (paho, its own thread)."""

    def __init__(self, port: int, vhost: str) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = queue.Queue[int]()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{vhost}")
        client.username_pw_set(f"{vhost}:guest", "guest")
        client.on_message = lambda _c, _u, msg: self.received.put((msg.topic, msg.payload))
        client.on_subscribe = lambda _c, _u, mid, _codes, _p: self._subscribed.put(mid)
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client

    def subscribe(self, topic: str) -> None:
        _, mid = self.client.subscribe(topic, qos=0)
        assert self._subscribed.get(timeout=DEADLINE) == mid

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(DEADLINE)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def gateway(port: int, vhost: str) -> Iterator[Gateway]:
    gw = Gateway(port, vhost)
    try:
        yield gw
    finally:
        gw.close()


class FanoutReader:
    """What the bridge process does with the fan-out: every routed event to the link."""

    def __init__(self, endpoint: str, link: MeshtasticLink) -> None:
        self.context = zmq.asyncio.Context()
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, TOPIC_EVENT)
        self.sub.connect(endpoint)
        self.link = link
        self.seen = 0

    async def run(self) -> None:
        while True:
            frames = await self.sub.recv_multipart()
            for entry in routed_batch(frames).events:
                self.seen += 1
                self.link.on_routed(routed_header(entry), entry[-1])

    def close(self) -> None:
        self.sub.close()
        self.context.term()


@asynccontextmanager
async def running_link(node_dir: Path, url: str, counters: Counters) -> AsyncIterator[
        tuple[MeshtasticLink, FanoutReader]]:
    settings = load_settings({"data_dir": str(node_dir)})
    injector = Injector.for_settings(settings, "meshtastic-test")
    link = MeshtasticLink(MeshtasticConfig(channels=(LONGFAST,)), injector, counters)
    reader = FanoutReader(settings.fanout_out_endpoint, link)
    connection = await aio_pika.connect(url, timeout=10)
    task = asyncio.create_task(link.run(connection))
    reading = asyncio.create_task(reader.run())
    try:
        yield link, reader
    finally:
        for running in (task, reading):
            running.cancel()
        await asyncio.gather(task, reading, return_exceptions=True)
        await connection.close()
        reader.close()
        injector.close()


async def until(condition, what: str, *, action=None, timeout: float = DEADLINE) -> None:
    """Poll a real condition (doing ``action`` each round) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if action is not None:
            await asyncio.to_thread(action)
        await asyncio.sleep(0.05)  # NOTE: the polling interval, not a synchronisation


def mesh_envelopes(gw: Gateway, codec: MeshCodec, portnum: int, timeout: float = DEADLINE):
    """The gateway's received envelopes until one on ``portnum`` (decoded)."""
    deadline = time.monotonic() + timeout
    while True:
        topic, body = gw.received.get(timeout=max(0.01, deadline - time.monotonic()))
        message = codec.decode(body, topic.split("/")[-2])
        if message.portnum == portnum:
            return topic, message


def test_mesh_and_euds_see_each_other(tmp_path: Path, mqtt_port: int) -> None:
    counters = Counters()
    codec = MeshCodec((LONGFAST,))
    with amqp_vhost() as (vhost, url), running_node(tmp_path / "a", workers=1) as node, \
            gateway(mqtt_port, vhost) as gw, node.connect() as eud:
        gw.subscribe("msh/US/2/e/LongFast/otszmq")

        async def scenario() -> None:
            async with running_link(node.data_dir, url, counters) as (_link, reader):
                # The link reads the fan-out once a routed event reaches it (SUB connects in
                # the background): markers never go to the mesh, so they make a safe probe.
                probes = iter(range(1000))
                await until(lambda: reader.seen > 0, "the fan-out to reach the link",
                            action=lambda: eud.send(marker_event(f"probe-{next(probes)}")))

                # Mesh -> EUD: an encrypted position from the gateway becomes a PLI.
                user = codec.envelope(LONGFAST, "!0badcafe", MESH_NODE, PortNum.NODEINFO_APP,
                                      codec.user(MESH_NODE, "Ridge Relay", "RR"))
                position = codec.envelope(
                    LONGFAST, "!0badcafe", MESH_NODE, PortNum.POSITION_APP,
                    codec.position(47.6062095, -122.3320708, 56.0, int(time.time())),
                )
                gw.publish("msh/US/2/e/LongFast/!0badcafe", b"\x08\xff not protobuf")
                gw.publish("msh/US/2/e/LongFast/!0badcafe", user)
                gw.publish("msh/US/2/e/LongFast/!0badcafe", position)
                events = await asyncio.to_thread(eud.recv_until, b"MESHTASTIC-!a1b2c3d4")
                pli = parse_event(events[-1])
                assert pli.type == "a-f-G-U-C" and pli.callsign == "Ridge Relay"
                assert pli.lat == pytest.approx(47.6062095)
                assert pli.lon == pytest.approx(-122.3320708)
                assert counters.values["mesh_malformed"] == 1  # the garbage cost only itself

                # Mesh -> EUD: text becomes GeoChat.
                gw.publish("msh/US/2/e/LongFast/!0badcafe", codec.envelope(
                    LONGFAST, "!0badcafe", MESH_NODE, PortNum.TEXT_MESSAGE_APP, b"anyone?"))
                chat = parse_event((await asyncio.to_thread(eud.recv_until, b"anyone?"))[-1])
                assert chat.type == "b-t-f" and chat.chat is not None
                assert chat.chat.sender_callsign == "Ridge Relay"

                # EUD -> mesh: its PLI goes out as envelopes on <root>/2/e/LongFast/otszmq.
                eud.send(sa_event("ANDROID-eud1", "Alpha", lat=45.25))
                topic, sent = await asyncio.to_thread(
                    mesh_envelopes, gw, codec, PortNum.POSITION_APP)
                assert topic == "msh/US/2/e/LongFast/otszmq"
                assert sent.gateway == "otszmq"
                assert sent.payload == Position(45.25, 2.0, 0.0)
                # ... and its chat to All Chat Rooms as text.
                eud.send(geochat("ANDROID-eud1", "Alpha", "hello mesh"))
                _, said = await asyncio.to_thread(
                    mesh_envelopes, gw, codec, PortNum.TEXT_MESSAGE_APP)
                assert said.payload == Text("hello mesh") and said.sender == sent.sender

        asyncio.run(scenario())

    values = counters.values
    assert values["mesh_injected"] == 2 and values["mesh_inject_dropped"] == 0
    assert values["mesh_out_positions"] == 1 and values["mesh_out_chats"] == 1
    # The mesh's own PLI and chat came back through the fan-out and were not sent again.
    assert values["mesh_out_published"] == 4  # NODEINFO, POSITION, ATAK PLI; one text


def test_a_burst_of_eud_positions_goes_out_once(tmp_path: Path, mqtt_port: int) -> None:
    """Rate limit end to end: a burst of one EUD's positions gives one set of envelopes."""
    counters = Counters()
    codec = MeshCodec((LONGFAST,))
    with amqp_vhost() as (vhost, url), running_node(tmp_path / "a", workers=1) as node, \
            gateway(mqtt_port, vhost) as gw, node.connect() as eud:
        gw.subscribe("msh/US/2/e/LongFast/#")

        async def scenario() -> None:
            async with running_link(node.data_dir, url, counters) as (_link, reader):
                probes = iter(range(1000))
                await until(lambda: reader.seen > 0, "the fan-out to reach the link",
                            action=lambda: eud.send(marker_event(f"probe-{next(probes)}")))
                for lat in range(10):
                    eud.send(sa_event("ANDROID-burst", "Burst", lat=float(lat)))
                await until(lambda: counters.values["mesh_out_rate_limited"] >= 9,
                            "the burst to be rate-limited")
                _, first = await asyncio.to_thread(mesh_envelopes, gw, codec,
                                                   PortNum.POSITION_APP)
                assert first.payload.lat == 0.0  # the first of the burst went out

        asyncio.run(scenario())
    assert counters.values["mesh_out_positions"] == 1


def geochat(sender_uid: str, callsign: str, text: str) -> bytes:
    t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    stale = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 86400))
    return (
        f'<event version="2.0" uid="GeoChat.{sender_uid}.All Chat Rooms.m{time.time_ns()}" '
        f'type="b-t-f" how="h-g-i-g-o" time="{t}" start="{t}" stale="{stale}">'
        '<point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/><detail>'
        f'<__chat id="All Chat Rooms" chatroom="All Chat Rooms" senderCallsign="{callsign}"/>'
        f'<link uid="{sender_uid}" type="a-f-G-U-C" relation="p-p"/>'
        f"<remarks>{text}</remarks></detail></event>"
    ).encode()



def bridge_stats(node) -> dict[str, float]:
    for process in node.stats(wait=0.5):
        if process.get("role") == "bridge":
            return {**process["counters"], **process["gauges"]}
    return {}


def test_serve_with_meshtastic_bridges_the_mesh_and_euds(tmp_path: Path, mqtt_port: int) -> None:
    """The whole node: ``serve --amqp-url ... --meshtastic true`` starts the bridge with it."""
    codec = MeshCodec((LONGFAST,))
    with amqp_vhost() as (vhost, url), running_node(
        tmp_path / "a", workers=1,
        extra=("--amqp-url", url, "--meshtastic", "true", "--meshtastic-gateway-id", "tak1"),
    ) as node, gateway(mqtt_port, vhost) as gw, node.connect() as eud:
        gw.subscribe("msh/US/2/e/LongFast/tak1")
        # Ready once the bridge is connected (the link is bound then) and reads the fan-out.
        deadline = time.monotonic() + 60
        probe = 0
        while not (stats := bridge_stats(node)).get("amqp_connected") or not stats.get(
                "routed_in"):
            assert time.monotonic() < deadline, f"bridge not ready; log:\n{node.log()}"
            probe += 1
            eud.send(marker_event(f"probe-{probe}"))

        gw.publish("msh/US/2/e/LongFast/!0badcafe", b"garbage \x00\xff")
        gw.publish("msh/US/2/e/LongFast/!0badcafe", codec.envelope(
            LONGFAST, "!0badcafe", MESH_NODE, PortNum.POSITION_APP,
            codec.position(-33.8688197, 151.2092955, None, int(time.time()))))
        pli = parse_event(eud.recv_until(b"MESHTASTIC-!a1b2c3d4", timeout=DEADLINE)[-1])
        assert (pli.lat, pli.lon) == (pytest.approx(-33.8688197), pytest.approx(151.2092955))

        eud.send(sa_event("ANDROID-eud1", "Alpha", lat=-12.5))
        topic, sent = mesh_envelopes(gw, codec, PortNum.POSITION_APP)
        assert topic == "msh/US/2/e/LongFast/tak1" and sent.gateway == "tak1"
        assert sent.payload == Position(-12.5, 2.0, 0.0)

        # Snapshots go out every 0.2 s: wait for one taken after all of the above.
        expected = {"mesh_malformed": 1, "mesh_injected": 1, "mesh_out_positions": 1}
        deadline = time.monotonic() + DEADLINE
        while {k: bridge_stats(node).get(k) for k in expected} != expected:
            assert time.monotonic() < deadline, f"bridge counters: {bridge_stats(node)}"


def cut_amqp_connections(vhost: str) -> int:
    """Close the vhost's AMQP 0-9-1 connections (the bridge's), not the MQTT ones."""
    cut = 0
    for line in rabbitmqctl("list_connections", "pid", "vhost", "protocol").splitlines():
        pid, _, rest = line.partition("\t")
        conn_vhost, _, protocol = rest.partition("\t")
        if conn_vhost == vhost and "0,9,1" in protocol:
            rabbitmqctl("close_connection", pid, "test cuts the bridge")
            cut += 1
    return cut


def test_mesh_traffic_resumes_after_the_bridge_connection_is_cut(tmp_path: Path,
                                                                 mqtt_port: int) -> None:
    codec = MeshCodec((LONGFAST,))
    with amqp_vhost() as (vhost, url), running_node(
        tmp_path / "a", workers=1,
        extra=("--amqp-url", url, "--meshtastic", "true",
               "--meshtastic-position-interval", "0.2"),
    ) as node, gateway(mqtt_port, vhost) as gw, node.connect() as eud:
        gw.subscribe("msh/US/2/e/LongFast/otszmq")

        def wait_connected(connects: int) -> None:
            deadline = time.monotonic() + 60
            probe = 0
            while not ((stats := bridge_stats(node)).get("amqp_connected")
                       and stats.get("amqp_connects", 0) >= connects
                       and stats.get("routed_in")):
                assert time.monotonic() < deadline, f"bridge not connected; log:\n{node.log()}"
                probe += 1
                eud.send(marker_event(f"probe-{connects}-{probe}"))

        def round_trip(lat: float) -> None:
            gw.publish("msh/US/2/e/LongFast/!0badcafe", codec.envelope(
                LONGFAST, "!0badcafe", MESH_NODE, PortNum.POSITION_APP,
                codec.position(lat, 10.0, None, int(time.time()))))
            pli = parse_event(eud.recv_until(b"MESHTASTIC-!a1b2c3d4", timeout=DEADLINE)[-1])
            assert pli.lat == pytest.approx(lat)
            eud.send(sa_event("ANDROID-eud1", "Alpha", lat=lat + 1))
            _, sent = mesh_envelopes(gw, codec, PortNum.POSITION_APP)
            assert sent.payload.lat == pytest.approx(lat + 1)

        wait_connected(1)
        round_trip(20.0)
        assert cut_amqp_connections(vhost) >= 1
        wait_connected(2)  # the bridge reconnected and attached the link again
        while not gw.received.empty():
            gw.received.get_nowait()  # envelopes of the probes' era, if any
        round_trip(30.0)
