"""An administrator deactivates or deletes a user over the API: that user's live CoT streams are
closed at once (its tokens stop working, and its next login or TLS handshake is refused anyway);
everyone else's go on."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.api_support import PASSWORD, add_user_command, login
from tests.support import CotClient, Node, receive_first, running_node, stream_login

pytestmark = pytest.mark.integration

DEADLINE = 20.0


def user_disconnects(node: Node) -> int:
    return sum(int(p["counters"].get("user_disconnects", 0)) for p in node.stats(0.3)
               if p["role"] == "ingest")


def signed_in(node: Node, name: str) -> CotClient:
    client = node.connect()
    stream_login(client, name, PASSWORD)
    return client


def test_deactivated_and_deleted_users_lose_their_streams(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    add_user_command(data_dir, "admin", admin=True)
    for name in ("alice", "bob", "carol"):
        add_user_command(data_dir, name, groups_in=["Red"], groups_out=["Red"])
    with running_node(data_dir, workers=1, api=True) as node:
        base = f"http://127.0.0.1:{node.api_port}"
        admin = login(base, "admin")
        alice, bob, carol = (signed_in(node, name) for name in ("alice", "bob", "carol"))
        with alice, bob, carol:
            # Logins are checked asynchronously: each one's events reach another before we go on.
            receive_first(alice, carol, "alice-in")
            receive_first(bob, carol, "bob-in")

            off = requests.patch(f"{base}/api/users/alice", json={"active": False},
                                 headers=admin, timeout=10)
            assert off.status_code == 200
            assert alice.is_closed_by_server(timeout=DEADLINE)
            receive_first(bob, carol, "bob-still-in")  # the others are not disturbed

            gone = requests.delete(f"{base}/api/users/bob", headers=admin, timeout=10)
            assert gone.status_code == 204
            assert bob.is_closed_by_server(timeout=DEADLINE)
            with signed_in(node, "carol") as again:  # carol, and new logins, still work
                receive_first(again, carol, "carol-too")
            assert user_disconnects(node) == 2
