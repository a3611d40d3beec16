"""A marker placed over the admin API travels the whole node: HTTP, the API's injector, ingest's
inject socket, a worker, the fan-out to a raw-TCP client, and the store back into
``/api/markers``; its DELETE reaches the client as a ``t-x-d-d`` and empties the listing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from otszmq.workers.cot import parse_event
from tests.api_support import add_user_command, login
from tests.support import Node, ping_event

pytestmark = pytest.mark.integration

STORE_DEADLINE = 20.0


def poll(what: str, fetch: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    """Re-read ``fetch`` until ``done`` (the store writes asynchronously), or fail."""
    deadline = time.monotonic() + STORE_DEADLINE
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {STORE_DEADLINE} s; last: {value!r}")
        time.sleep(0.1)


def test_a_posted_marker_reaches_clients_and_the_store_and_its_delete_follows(
    tmp_path: Path,
) -> None:
    node = Node(tmp_path / "data", workers=1, api=True).start()
    try:
        base = f"http://127.0.0.1:{node.api_port}"
        # The raw-TCP client is anonymous: the user writes to (and reads) that channel.
        add_user_command(node.data_dir, "ops", groups_in=["__ANON__"], groups_out=["__ANON__"])
        headers = login(base, "ops")
        callsign = f"Rally-{uuid.uuid4().hex[:6]}"
        with node.connect() as client:
            client.send(ping_event())
            client.recv_until(b"t-x-c-t-r")  # ingest holds the connection now
            response = requests.post(f"{base}/api/markers", headers=headers, timeout=10, json={
                "callsign": callsign, "lat": 48.5, "lon": 2.25, "remarks": "via <api> & co"})
            assert response.status_code == 202, response.text
            uid = response.json()["uid"]

            [event] = [parse_event(xml) for xml in client.recv_until(callsign.encode())
                       if callsign.encode() in xml]
            assert (event.uid, event.type, event.remarks) == (uid, "a-u-G", "via <api> & co")

            def markers() -> list[dict[str, Any]]:
                answer = requests.get(f"{base}/api/markers", headers=headers, timeout=10,
                                      params={"uid": uid})
                assert answer.status_code == 200, answer.text
                return list(answer.json()["results"])

            [stored] = poll("the marker in /api/markers", markers, bool)
            assert (stored["callsign"], stored["lat"], stored["groups"]) == (
                callsign, 48.5, ["__ANON__"])

            gone = requests.delete(f"{base}/api/markers/{uid}", headers=headers, timeout=10)
            assert gone.status_code == 202, gone.text
            deletes = [parse_event(xml) for xml in client.recv_until(b"t-x-d-d")
                       if b"t-x-d-d" in xml]
            assert [link.uid for link in deletes[0].links] == [uid]
            poll("the marker gone from /api/markers", markers, lambda rows: rows == [])
    finally:
        assert node.stop() == 0, node.log()
