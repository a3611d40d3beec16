"""The admin API's tokens and roles on a whole node (`otszmq serve` with its API under gunicorn):
a user made with `otszmq user add` logs in, an admin manages users over HTTP, the plain port's
/Marti routes stay anonymous."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.api_support import add_user_command, login
from tests.support import running_node

pytestmark = pytest.mark.integration


def test_admin_and_user_roles_on_a_running_node(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    add_user_command(data_dir, "admin", admin=True)
    add_user_command(data_dir, "alice", groups_in=["Red"], groups_out=["Red"])
    with running_node(data_dir, workers=1, api=True) as node:
        base = f"http://127.0.0.1:{node.api_port}"
        # Anonymous, as OTS serves them: /Marti and health; /api needs a token.
        assert requests.get(f"{base}/Marti/api/version", timeout=10).status_code == 200
        assert requests.get(f"{base}/api/health", timeout=10).status_code == 200
        anonymous = requests.get(f"{base}/api/euds", timeout=10)
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == (
            'Bearer realm="otszmq"')

        admin = login(base, "admin")
        status = requests.get(f"{base}/api/status", params={"counters": "false"},
                              headers=admin, timeout=10)
        assert status.status_code == 200 and status.json()["status"] == "ok"
        users = requests.get(f"{base}/api/users", headers=admin, timeout=10).json()
        assert [u["username"] for u in users["results"]] == ["admin", "alice"]

        alice = login(base, "alice")
        me = requests.get(f"{base}/api/me", headers=alice, timeout=10).json()
        assert (me["role"], me["groups_in"], me["groups_out"]) == ("user", ["Red"], ["Red"])
        assert requests.get(f"{base}/api/euds", headers=alice, timeout=10).status_code == 200
        forbidden = requests.delete(f"{base}/api/users/admin", headers=alice, timeout=10)
        assert forbidden.status_code == 403 and set(forbidden.json()) == {"error", "detail"}

        # An admin takes alice's access away: her token stops working at once.
        off = requests.patch(f"{base}/api/users/alice", json={"active": False},
                             headers=admin, timeout=10)
        assert off.status_code == 200 and off.json()["active"] is False
        assert requests.get(f"{base}/api/me", headers=alice, timeout=10).status_code == 401
