"""Server-made events and channel changes through a real node's inject socket (otszmq.inject).

The API's markers and the bridge's events use exactly this path: an Injector in another
process, the first ingest's PULL socket, a worker, the fan-out, every ingest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq

from otszmq.inject import Injector
from otszmq.wire import TOPIC_EVENT, routed_batch, routed_header
from tests.support import Node, add_user, marker_event, running_node, stream_login

pytestmark = pytest.mark.integration

ANON = ("__ANON__",)


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("inject") / "data", workers=2) as running:
        yield running


@pytest.fixture
def injector(node: Node) -> Iterator[Injector]:
    with Injector(f"ipc://{node.data_dir.resolve()}/inject.ipc", "test") as made:
        yield made


def test_an_injected_event_reaches_clients_of_its_channel_only(
    node: Node, injector: Injector
) -> None:
    run = tag()
    with node.connect() as client:
        assert injector.send([marker_event(f"other-{run}", remarks=f"other-{run}")],
                             groups_in=("Other",))
        assert injector.send([marker_event(f"anon-{run}", remarks=f"anon-{run}")],
                             groups_in=ANON)
        # One source, one worker, in order: the second arriving proves the first was routed.
        seen = b"".join(client.recv_until(f"anon-{run}".encode()))
        assert f"other-{run}".encode() not in seen


def test_malformed_inject_messages_are_counted_and_cost_nothing_else(
    node: Node, injector: Injector
) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    raw = context.socket(zmq.PUSH)
    raw.connect(injector.endpoint)
    try:
        raw.send_multipart([b"I", b"\xc1not msgpack", b"<event/>"])
        raw.send_multipart([b"I", msgpack.packb([2, "x", "", "", "not a list"])])
        raw.send_multipart([b"Z", b"what"])
        raw.send_multipart([b"G", msgpack.packb([2, "", [], []])])
    finally:
        raw.close(linger=1000)
        context.term()
    run = tag()
    with node.connect() as client:
        assert injector.send([marker_event(f"after-{run}", remarks=f"after-{run}")],
                             groups_in=ANON)
        client.recv_until(f"after-{run}".encode())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ingest = [s for s in node.stats() if s.get("role") == "ingest"]
        if ingest and ingest[0]["counters"].get("inject_errors", 0) >= 4:
            break
    else:
        raise AssertionError(f"inject_errors not counted: {ingest}")


def test_regroup_moves_a_logged_in_client_to_its_new_channels(
    node: Node, injector: Injector
) -> None:
    run = tag()
    user = f"mover-{run}"
    add_user(node, user, "Alpha", password="pw")
    with node.connect() as client:
        stream_login(client, user, "pw")
        # The login is done once an event to Alpha arrives (only Alpha readers get it).
        deadline = time.monotonic() + 20
        while True:
            needle = f"alpha-ready-{tag()}"
            injector.send([marker_event(f"a-{needle}", remarks=needle)], groups_in=("Alpha",))
            try:
                client.recv_until(needle.encode(), timeout=0.5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "stream login never took effect"
        assert injector.regroup(user, ["Bravo"], ["Bravo"])
        # The same socket, in order: both events are routed after the regroup.
        injector.send([marker_event(f"a2-{run}", remarks=f"alpha-after-{run}")],
                      groups_in=("Alpha",))
        injector.send([marker_event(f"b-{run}", remarks=f"bravo-{run}")], groups_in=("Bravo",))
        seen = b"".join(client.recv_until(f"bravo-{run}".encode()))
        assert f"alpha-after-{run}".encode() not in seen


def test_origin_travels_to_the_routed_header(node: Node, injector: Injector) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC_EVENT)
    sub.connect(f"ipc://{Path(node.data_dir).resolve()}/fanout-out.ipc")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            uid = f"fed-{tag()}"
            injector.send([marker_event(uid)], groups_in=ANON, origin="server-b")
            # SUB joins asynchronously: resend until one is heard.
            while sub.poll(500):
                frames = sub.recv_multipart()
                for entry in routed_batch(frames).events:
                    header = routed_header(entry)
                    if header.uid == uid:
                        assert header.origin == "server-b"
                        return
        raise AssertionError("the injected event never came out of the fan-out")
    finally:
        sub.close(linger=0)
        context.term()
