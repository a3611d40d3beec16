"""Stages run alone: an extra worker joins a running node; a node built from tcp:// stages."""

from __future__ import annotations

import os
import selectors
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import (
    READY_TIMEOUT,
    CotClient,
    free_port,
    ingest_gauge,
    marker_event,
    otszmq_command,
    running_node,
    sa_event,
    wait_for,
)

pytestmark = pytest.mark.integration


@contextmanager
def stage(args: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run one stage; wait for its 'ready' on an inherited pipe, like the supervisor."""
    ready_r, ready_w = os.pipe()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*otszmq_command(*args), "--ready-fd", str(ready_w)], pass_fds=(ready_w,), stderr=log
        )
    os.close(ready_w)
    try:
        selector = selectors.DefaultSelector()
        selector.register(ready_r, selectors.EVENT_READ)
        ready = selector.select(READY_TIMEOUT)
        selector.close()
        assert ready and os.read(ready_r, 16).startswith(b"ready"), (
            f"{args[0]} not ready; log:\n{log_path.read_text(errors='replace')}"
        )
        yield proc
    finally:
        os.close(ready_r)
        proc.terminate()
        assert proc.wait(20) == 0, log_path.read_text(errors="replace")


def test_extra_worker_takes_a_share_of_new_clients(tmp_path: Path) -> None:
    with running_node(tmp_path / "data", workers=1) as node:
        extra_args = [
            "worker", "--data-dir", str(node.data_dir), "--name", "extra-worker",
            "--stats-interval", "0.2",
        ]
        with stage(extra_args, tmp_path / "extra-worker.log"):
            wait_for("two workers alive", lambda: ingest_gauge(node, "workers_alive") == 2)
            receiver = node.connect()
            senders = [node.connect() for _ in range(4)]
            run = uuid.uuid4().hex[:8]
            for i, sender in enumerate(senders):
                sender.send(marker_event(f"m-{run}-{i}", remarks=f"{run}-{i}"))
            receiver.recv_all([f"{run}-{i}<".encode() for i in range(4)])
            stats = {p["name"]: p for p in node.stats(wait=0.6)}
            assert stats["extra-worker"]["counters"]["events_routed"] >= 1
            for client in (receiver, *senders):
                client.close()


def test_node_from_separate_stages_over_tcp(tmp_path: Path) -> None:
    fan_in, fan_out, work = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    port = free_port()
    common = ["--data-dir", str(tmp_path / "data"), "--fanout-in", fan_in, "--fanout-out", fan_out]
    with (
        stage(["fanout", *common], tmp_path / "fanout.log"),
        stage(["worker", *common, "--work-endpoints", work], tmp_path / "worker.log"),
        stage(["ingest", *common, "--work-endpoint", work, "--bind", "127.0.0.1",
               "--tcp-port", str(port), "--tls-port", "0"], tmp_path / "ingest.log"),
    ):
        a, b = CotClient(port), CotClient(port)
        with a, b:
            a.send(sa_event("uid-tcp-a", "TCP-A"))
            got = b.recv_until(b"TCP-A")
            assert b'uid="uid-tcp-a"' in got[-1]
