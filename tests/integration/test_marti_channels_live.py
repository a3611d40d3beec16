"""ATAK's channel toggle through the whole node: a user signed in on the CoT stream turns a
channel off with ``PUT /Marti/api/groups/active`` (over HTTPS with its client certificate), and
its live stream stops receiving that channel at once; turned back on, it receives it again.

Order is the proof of absence: events of one source reach a reader in the order sent, so a
reader that gets the sender's "again" without its earlier "hidden" was not sent "hidden". Chat
events are used because they are not part of the map state a reader is re-sent when a channel
comes back on.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support import Node, add_user, chat, otszmq_command, receive_first, stream_login

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
DEADLINE = 20.0


def issue(node: Node, name: str, out: Path) -> tuple[str, str]:
    subprocess.run(
        otszmq_command("cert", "issue", name, "--data-dir", str(node.data_dir), "--out",
                       str(out), "--key-size", "2048"),
        check=True, capture_output=True, timeout=60)
    return str(out / f"{name}.pem"), str(out / f"{name}.key")


def regroups(node: Node) -> int:
    return sum(int(p["counters"].get("regroups", 0)) for p in node.stats(0.3)
               if p["role"] == "ingest")


def wait_regroups(node: Node, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while regroups(node) < count:
        assert time.monotonic() < deadline, f"ingest did not apply regroup #{count}"


def test_put_groups_active_changes_the_live_stream(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", workers=1, https=True).start()
    try:
        add_user(node, "dora", "Red", "Blue", password=PASSWORD)
        add_user(node, "sam", "Blue", password=PASSWORD)
        cert = issue(node, "dora", tmp_path / "dora")
        ca = str(node.data_dir / "pki" / "ca.pem")
        url = f"https://127.0.0.1:{node.https_port}/Marti/api/groups"
        with node.connect() as dora, node.connect() as sam:
            stream_login(dora, "dora", PASSWORD)
            stream_login(sam, "sam", PASSWORD)
            receive_first(sam, dora, "before")

            listed = requests.get(f"{url}/all", cert=cert, verify=ca, timeout=30).json()["data"]
            assert ("Blue", "OUT", True) in {(g["name"], g["direction"], g["active"])
                                             for g in listed}

            def toggle_blue(active: bool) -> None:
                body = [{**g, "active": active} if (g["name"], g["direction"]) == ("Blue", "OUT")
                        else g for g in listed]
                answer = requests.put(f"{url}/active", json=body, cert=cert, verify=ca,
                                      params={"clientUid": "dora-uid"}, timeout=30)
                assert answer.status_code == 200, answer.text
                assert answer.json()["live"] is True

            toggle_blue(False)
            wait_regroups(node, 1)
            sam.send(chat("hidden"))
            toggle_blue(True)
            wait_regroups(node, 2)
            sam.send(chat("again"))
            received = dora.recv_until(b"again", timeout=DEADLINE)
            assert not [e for e in received if b"hidden" in e], received
    finally:
        assert node.stop() == 0, node.log()
