"""The whole node: streaming, store and HTTP API started by one `otszmq serve`."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Node, marker_event, sa_event

pytestmark = pytest.mark.integration


def get_json(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_connected_eud_appears_in_client_endpoints(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", workers=1, api=True).start()
    try:
        assert f"HTTP 127.0.0.1:{node.api_port}" in node.ready_line
        callsign = f"EUD-{uuid.uuid4().hex[:6]}"
        with node.connect() as eud:
            eud.send(sa_event(f"uid-{callsign}", callsign))
            # The store writes asynchronously: re-read the API until the row shows (bounded).
            deadline, found = time.monotonic() + 20, []
            while time.monotonic() < deadline and not found:
                body = get_json(node.api_port, "/Marti/api/clientEndPoints")
                assert isinstance(body, dict)
                found = [c for c in body["data"] if c["callsign"] == callsign]
            assert found, body
            assert found[0]["uid"] == f"uid-{callsign}"
    finally:
        assert node.stop() == 0, node.log()


def test_clean_shutdown_keeps_every_routed_event(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", workers=2).start()
    run = uuid.uuid4().hex[:8]
    try:
        sender, witness = node.connect(), node.connect()
        with sender, witness:
            sender.send(b"".join(
                marker_event(f"{run}-{i}", remarks=f"{run}#{i}#") for i in range(300)
            ))
            witness.recv_until(f"{run}#299#".encode())  # all 300 were routed
    finally:
        assert node.stop() == 0, node.log()
    with sqlite3.connect(node.data_dir / "otszmq.db") as db:
        query = "SELECT COUNT(*) FROM cot WHERE uid LIKE ?"
        stored = db.execute(query, (f"{run}-%",)).fetchone()[0]
    assert stored == 300


def test_store_off_runs_no_store_and_workers_build_no_records(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", workers=1, extra=("--store", "false")).start()
    try:
        a, b = node.connect(), node.connect()
        with a, b:
            a.send(sa_event("uid-store-off", "STORE-OFF"))
            b.recv_until(b"STORE-OFF")
            processes = node.stats()
        assert sorted(p["role"] for p in processes) == ["fanout", "ingest", "worker"]
        worker = next(p for p in processes if p["role"] == "worker")
        assert worker["counters"]["events_routed"] >= 1
        assert worker["counters"]["records_out"] == 0
    finally:
        assert node.stop() == 0, node.log()
    assert not (node.data_dir / "otszmq.db").exists()


def test_metrics_expose_every_process_in_prometheus_format(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", workers=1, api=True).start()
    try:
        with node.connect() as eud:
            eud.send(sa_event("uid-metrics", "METRICS"))
        url = f"http://127.0.0.1:{node.api_port}/metrics"
        with urllib.request.urlopen(url, timeout=20) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        roles = {s.labels["role"] for s in families["otszmq_events_in"].samples}
        assert {"ingest", "worker"} <= roles
        ingest_opened = [s.value for s in families["otszmq_connections_opened"].samples
                         if s.labels["role"] == "ingest"]
        assert ingest_opened and ingest_opened[0] >= 1
        assert "otszmq_rss_bytes" in families
    finally:
        assert node.stop() == 0, node.log()
