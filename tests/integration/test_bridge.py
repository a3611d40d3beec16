"""The RabbitMQ bridge against the real broker: mirror, inbound, federation, faults.

Every test runs in a vhost of its own (tests/amqp_support.py), so these tests may run at the
same time as each other and as any other test using the broker.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.amqp_support import (
    AmqpClient,
    amqp_vhost,
    cut_connections,
    ensure_plugin,
    federate_exchange,
    rabbitmqctl,
    running_federation_links,
)
from tests.support import (
    CotClient,
    Node,
    free_port,
    marker_event,
    otszmq_command,
    running_node,
    sa_event,
)

pytestmark = pytest.mark.timeout(180)


def bridge_counters(node: Node) -> dict[str, Any]:
    for process in node.stats():
        if process.get("role") == "bridge":
            return {**process["counters"], **process["gauges"]}
    raise AssertionError(f"no bridge in the stats; log:\n{node.log()}")


def wait_for_counter(node: Node, name: str, at_least: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    value: float = -1
    while time.monotonic() < deadline:
        value = bridge_counters(node).get(name, -1)
        if value >= at_least:
            return
    raise AssertionError(f"bridge counter {name} = {value}, expected >= {at_least}")


def bridged(tmp: Path, name: str, url: str, *extra: str) -> Node:
    return Node(tmp / name, workers=1, extra=("--amqp-url", url, *extra))


def test_mirror_reaches_amqp_consumers_in_ots_shapes(tmp_path: Path) -> None:
    with amqp_vhost() as (_, url), running_node(
        tmp_path / "a", workers=1, extra=("--amqp-url", url)
    ) as node, AmqpClient(url) as amqp:
        firehose = amqp.listen("firehose", "fanout")
        anon = amqp.listen("groups", "topic", "__ANON__.OUT")
        by_callsign = amqp.listen("dms", "direct", "BRAVO")
        by_uid = amqp.listen("dms", "direct", "uid-bravo")
        with node.connect() as alpha:
            alpha.send(sa_event("uid-alpha", "ALPHA", remarks="mirror-sa"))
            message = amqp.get(firehose)
            body = json.loads(message.body)
            assert body["uid"] == "uid-alpha"
            assert "mirror-sa" in body["cot"] and body["cot"].startswith("<event")
            assert message.content_type == "application/json"
            # OTS's per-message expiration: one day (aio-pika reports it in seconds).
            assert message.expiration == 86400
            assert "mirror-sa" in json.loads(amqp.get(anon).body)["cot"]

            alpha.send(marker_event("dm-1", dest_callsigns=("BRAVO",), remarks="dm-callsign"))
            alpha.send(marker_event("dm-2", dest_uids=("uid-bravo",), remarks="dm-uid"))
            assert "dm-callsign" in json.loads(amqp.get(by_callsign).body)["cot"]
            assert "dm-uid" in json.loads(amqp.get(by_uid).body)["cot"]
            # A direct message is not group traffic (OTS sends it to dms only), and the
            # firehose carries every event exactly once: the SA and the two DMs.
            assert amqp.drain(anon, settle=0.5) == []
            bodies = [json.loads(m.body) for m in amqp.drain(firehose, settle=1.0)]
            assert sorted(b["cot"].split('uid="', 1)[1].split('"', 1)[0] for b in bodies) == [
                "dm-1", "dm-2"]
            # OTS's "uid" is the sender's, not the item's: alpha sent both.
            assert {b["uid"] for b in bodies} == {"uid-alpha"}


def test_inbound_message_reaches_a_connected_eud(tmp_path: Path) -> None:
    with amqp_vhost() as (_, url), running_node(
        tmp_path / "a", workers=1, extra=("--amqp-url", url)
    ) as node, AmqpClient(url) as amqp, node.connect() as eud:
        eud.send(sa_event("uid-eud", "EUD"))
        marker = marker_event("ext-marker", remarks="from-amqp").decode()
        amqp.publish("cot_parser", "cot_parser", b"this is not json")
        amqp.publish("cot_parser", "cot_parser", b'{"uid": 5, "cot": "<event/>"}')
        amqp.publish("cot_parser", "cot_parser",
                     json.dumps({"uid": "ext-sender", "cot": marker, "user_id": 1}).encode())
        events = eud.recv_until(b"from-amqp")
        assert b'uid="ext-marker"' in events[-1]
        # OTS's disconnect notice becomes a t-x-d-d for that uid.
        amqp.publish("cot_parser", "cot_parser", json.dumps(
            {"uid": "ext-gone", "cot": None, "disconnected": True, "user_id": 1}).encode())
        gone = eud.recv_until(b'uid="ext-gone"')[-1]
        assert b'type="t-x-d-d"' in gone
        wait_for_counter(node, "amqp_malformed", 2)
        counters = bridge_counters(node)
        assert counters["injected"] == 2 and counters["inject_dropped"] == 0


def count_in(client: CotClient, needle: bytes, settle: float) -> int:
    """How many events containing ``needle`` arrive until none has for ``settle`` seconds."""
    count = 0
    while True:
        try:
            event = client.recv_event(settle)
        except AssertionError:
            return count
        count += needle in event


def test_three_servers_federate_without_loops_or_duplicates(tmp_path: Path) -> None:
    with amqp_vhost() as (_, url), ExitStack() as stack:
        nodes = {}
        for name in ("a", "b", "c"):
            node = bridged(tmp_path, name, url, "--server-id", f"srv-{name}",
                           "--amqp-federated-groups", "__ANON__").start()
            stack.callback(node.stop)
            nodes[name] = node
        alpha = stack.enter_context(nodes["a"].connect())
        bravo = stack.enter_context(nodes["b"].connect())
        charlie = stack.enter_context(nodes["c"].connect())
        bravo.send(sa_event("uid-bravo", "BRAVO"))
        charlie.send(sa_event("uid-charlie", "CHARLIE"))
        # Their SAs cross to A: then every bridge is consuming and every client announced.
        alpha.recv_all([b'uid="uid-bravo"', b'uid="uid-charlie"'], timeout=20)

        started = time.monotonic()
        alpha.send(sa_event("uid-alpha", "ALPHA", remarks="fed-sa"))
        bravo.recv_until(b"fed-sa", timeout=20)
        latency = time.monotonic() - started
        charlie.recv_until(b"fed-sa", timeout=20)
        print(f"federated SA latency A->B {latency * 1000:.1f} ms")
        # Exactly once: nothing more of it arrives at B or C (a loop would echo it back).
        assert count_in(bravo, b"fed-sa", settle=1.5) == 0
        assert count_in(charlie, b"fed-sa", settle=0.1) == 0

        # A direct message by callsign crosses servers; the receiving router resolves it.
        alpha.send(marker_event("dm-fed", dest_callsigns=("CHARLIE",), remarks="fed-dm"))
        assert b"fed-dm" in charlie.recv_until(b"fed-dm", timeout=20)[-1]
        assert count_in(bravo, b"fed-dm", settle=1.5) == 0

        # End-to-end latency A -> broker -> C, one event at a time (printed for the record).
        latencies = []
        for i in range(20):
            started = time.monotonic()
            alpha.send(sa_event("uid-alpha", "ALPHA", remarks=f"lat-{i}"))
            charlie.recv_until(f"lat-{i}<".encode(), timeout=20)
            latencies.append(time.monotonic() - started)
        latencies.sort()
        print(f"federated SA latency A->C over 20: median {latencies[10] * 1000:.1f} ms, "
              f"max {latencies[-1] * 1000:.1f} ms")

        # A's client leaves: B and C are told to remove it.
        alpha.close()
        for client in (bravo, charlie):
            delete = client.recv_until(b"t-x-d-d", timeout=20)[-1]
            assert b'<link uid="uid-alpha"' in delete

        for name, node in nodes.items():
            counters = bridge_counters(node)
            assert counters["federation_loops"] == 0, name
            assert counters["amqp_malformed"] == 0, name
        # Each server skips only its own messages, never re-publishes others'.
        assert bridge_counters(nodes["b"])["federation_own"] >= 1


def test_broker_cut_and_refusal_never_stop_the_pipeline(tmp_path: Path) -> None:
    with amqp_vhost() as (vhost, url), running_node(
        tmp_path / "a", workers=1, extra=("--amqp-url", url, "--amqp-buffer", "5"),
    ) as node:
        queue = f"test-firehose-{uuid.uuid4().hex[:8]}"
        with AmqpClient(url) as amqp:
            amqp.listen("firehose", "fanout", queue_name=queue)
        with node.connect() as sender, node.connect() as watcher:
            watcher.send(sa_event("uid-watcher", "WATCHER"))
            sender.send(sa_event("uid-sender", "SENDER", remarks="before-cut"))
            watcher.recv_until(b"before-cut")
            with AmqpClient(url) as amqp:
                assert b"before-cut" in amqp.get(queue).body

            # 1. The connection is cut: the bridge reconnects and nothing is lost.
            # NOTE: events sent after the bridge noticed the cut: those published into the
            # closing socket before it noticed are lost unseen (publishing is unconfirmed).
            cut_connections(vhost)
            wait_for_counter(node, "amqp_disconnects", 1)
            for i in range(3):
                sender.send(sa_event("uid-sender", "SENDER", remarks=f"cut-{i}"))
            watcher.recv_until(b"cut-2")  # the pipeline did not wait for the broker
            wait_for_counter(node, "amqp_connects", 2)
            with AmqpClient(url) as amqp:
                seen = b"".join(m.body for m in amqp.drain(queue, settle=2.0))
            assert all(f"cut-{i}".encode() in seen for i in range(3))

            # 2. The broker refuses us for a while: the buffer keeps the newest 5, drops the
            # rest and counts them, and the pipeline serves clients all along.
            rabbitmqctl("clear_permissions", "-p", vhost, "guest")
            cut_connections(vhost)
            wait_for_counter(node, "amqp_disconnects", 2)
            assert bridge_counters(node)["amqp_connected"] == 0
            for i in range(20):
                sender.send(sa_event("uid-sender", "SENDER", remarks=f"refused-{i:02d}"))
            watcher.recv_until(b"refused-19")
            wait_for_counter(node, "amqp_dropped", 15)
            rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            wait_for_counter(node, "amqp_connected", 1)
            with AmqpClient(url) as amqp:
                bodies = [json.loads(m.body)["cot"] for m in amqp.drain(queue, settle=2.0)]
            got = [i for i in range(20) if any(f"refused-{i:02d}" in b for b in bodies)]
            assert got == list(range(15, 20)), got
            assert bridge_counters(node)["amqp_dropped"] == 15


def test_a_broker_that_is_down_does_not_keep_the_node_from_serving(tmp_path: Path) -> None:
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    with running_node(tmp_path / "a", workers=1, extra=("--amqp-url", nowhere)) as node, \
            node.connect() as alpha, node.connect() as bravo:
        bravo.send(sa_event("uid-bravo", "BRAVO"))
        alpha.send(sa_event("uid-alpha", "ALPHA", remarks="no-broker"))
        bravo.recv_until(b"no-broker")
        wait_for_counter(node, "amqp_connect_failures", 2)
        counters = bridge_counters(node)
        assert counters["amqp_connected"] == 0 and counters["events_queued"] >= 1


def test_a_refused_login_stops_the_bridge_at_once_with_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        otszmq_command("bridge", "--data-dir", str(tmp_path / "a"), "--amqp-url",
                       "amqp://guest:not-the-password@127.0.0.1:5672/"),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "refused the login" in done.stderr
    assert "not-the-password" not in done.stderr


def test_servers_on_brokers_linked_by_rabbitmq_federation(tmp_path: Path) -> None:
    # Two vhosts stand for two brokers; RabbitMQ's own exchange federation links them both
    # ways (max-hops 1), as an admin would link two sites.
    ensure_plugin("rabbitmq_federation")
    with amqp_vhost() as (v1, url1), amqp_vhost() as (v2, url2), ExitStack() as stack:
        federate_exchange(v2, v1, "otszmq-federation")
        federate_exchange(v1, v2, "otszmq-federation")
        nodes = []
        for name, url in (("a", url1), ("b", url2)):
            node = bridged(tmp_path, name, url, "--server-id", f"site-{name}",
                           "--amqp-federated-groups", "__ANON__").start()
            stack.callback(node.stop)
            nodes.append(node)
        deadline = time.monotonic() + 60
        while running_federation_links({v1, v2}) < 2:
            assert time.monotonic() < deadline, "federation links not running"
        alpha = stack.enter_context(nodes[0].connect())
        bravo = stack.enter_context(nodes[1].connect())
        alpha.send(sa_event("uid-alpha", "ALPHA"))
        bravo.send(sa_event("uid-bravo", "BRAVO"))
        alpha.recv_until(b'uid="uid-bravo"', timeout=30)
        bravo.recv_until(b'uid="uid-alpha"', timeout=30)

        alpha.send(sa_event("uid-alpha", "ALPHA", remarks="linked-sa"))
        bravo.recv_until(b"linked-sa", timeout=20)
        assert count_in(bravo, b"linked-sa", settle=1.5) == 0
        assert count_in(alpha, b"linked-sa", settle=0.1) == 0  # never echoed back to A
        alpha.send(marker_event("dm-linked", dest_callsigns=("BRAVO",), remarks="linked-dm"))
        bravo.recv_until(b"linked-dm", timeout=20)
        for node in nodes:
            assert bridge_counters(node)["federation_loops"] == 0
