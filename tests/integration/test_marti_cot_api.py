"""Marti CoT history through the whole node: an EUD sends an SA over TCP, the store writes it,
and ``GET /Marti/api/cot/xml/{uid}`` (and ``.../all``) serves it back."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from lxml import etree

from otszmq.workers.cot import parse_event
from tests.support import Node, sa_event

pytestmark = pytest.mark.integration

STORE_DEADLINE = 20.0


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET (HTTP errors included)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_an_eud_sa_is_served_back_once_stored(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", workers=1, api=True).start()
    try:
        uid = f"ANDROID-{uuid.uuid4().hex[:8]}"
        status, content_type, body = get(node.api_port, f"/Marti/api/cot/xml/{uid}")
        assert status == 404 and content_type.startswith("application/json"), body
        with node.connect() as eud:
            eud.send(sa_event(uid, "INTEGRATION", remarks="first"))
            # The store writes asynchronously: re-ask until the row shows (bounded).
            deadline = time.monotonic() + STORE_DEADLINE
            while status != 200 and time.monotonic() < deadline:
                status, content_type, body = get(node.api_port, f"/Marti/api/cot/xml/{uid}")
            assert status == 200, body
            assert content_type.startswith("application/xml")
            event = parse_event(body.split(b"\n", 1)[1])
            assert (event.uid, event.callsign) == (uid, "INTEGRATION")

            eud.send(sa_event(uid, "INTEGRATION", remarks="second"))
            deadline, remarks = time.monotonic() + STORE_DEADLINE, []
            while remarks != ["first", "second"] and time.monotonic() < deadline:
                _, _, history = get(node.api_port, f"/Marti/api/cot/xml/{uid}/all?secago=600")
                root = etree.fromstring(history)
                remarks = [e.findtext("detail/remarks") for e in root.findall("event")]
            assert remarks == ["first", "second"], history
    finally:
        assert node.stop() == 0, node.log()
