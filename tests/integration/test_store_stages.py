"""The store as a stage of a real pipeline: fan-out, store, worker and ingest as separate
processes; an SA sent over TCP lands in the points and EUD tables (SQLite in the data dir)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from otszmq.config import Settings
from otszmq.store.models import CotLog, Eud, Point
from tests.integration.test_stages import stage
from tests.store_support import migrated, wait_until
from tests.support import CotClient, free_port, sa_event

pytestmark = pytest.mark.integration


def test_sa_over_tcp_lands_in_points_and_euds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--stats-interval", "0.2"]
    port = free_port()
    ingest_flags = ["--bind", "127.0.0.1", "--tcp-port", str(port)]
    if "tls_port" in Settings.__dataclass_fields__:
        ingest_flags += ["--tls-port", "0"]  # no certificates in this data dir
    run = uuid.uuid4().hex[:8]
    uid, callsign = f"ANDROID-{run}", f"STORE-{run}"
    # The store subscribes before any worker publishes, as `serve` starts it.
    with (
        stage(["fanout", *common], tmp_path / "fanout.log"),
        stage(["store", *common], tmp_path / "store.log"),
        stage(["worker", *common], tmp_path / "worker.log"),
        stage(["ingest", *common, *ingest_flags], tmp_path / "ingest.log"),
    ):
        sender, watcher = CotClient(port), CotClient(port)
        with migrated(f"sqlite:///{data / 'otszmq.db'}"), watcher:
            with sender:
                sender.send(sa_event(uid, callsign, lat=51.5))
                watcher.recv_until(callsign.encode())  # routed: its record went out after it
                wait_until("the SA in the points table",
                           lambda: Point.select().where(Point.uid == uid).exists())
                point = Point.get(Point.uid == uid)
                assert (point.lat, point.lon) == (51.5, 2.0)
                eud = Eud.get(Eud.uid == uid)
                assert (eud.callsign, eud.team, eud.last_status) == (callsign, "Cyan", "Connected")
                assert CotLog.get(CotLog.uid == uid).xml.startswith("<event")
            # The sender leaves: ingest's t-x-d-d goes through a worker into the store too.
            wait_until("the EUD marked disconnected",
                       lambda: Eud.get(Eud.uid == uid).last_status == "Disconnected")
