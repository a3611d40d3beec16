"""A worker that stops: its senders are not read, wait in TCP, and lose nothing (CREDIT)."""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from pathlib import Path

import pytest

from tests.integration.test_tls import client_context, issue
from tests.support import CotClient, ingest_gauge, marker_event, running_node, sa_event, wait_for

pytestmark = pytest.mark.integration

EVENTS = 2000
INFLIGHT_LIMIT = 200
PENDING_LIMIT = 100
_UID = re.compile(rb'uid="([^"]+)"')


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_stopped_worker_pauses_its_sender_and_loses_nothing(
    tmp_path: Path, transport: str
) -> None:
    extra = ("--worker-inflight-limit", str(INFLIGHT_LIMIT), "--pending-limit",
             str(PENDING_LIMIT), "--store", "false")
    tls = transport == "tls"
    with running_node(tmp_path / "data", workers=1, extra=extra, tls=tls) as node:
        worker_pid = next(p["pid"] for p in node.stats() if p["role"] == "worker")
        if tls:
            certs = issue(node, "sender", tmp_path / "sender")
            sender = CotClient(node.tls_port, tls=client_context(certs, "sender"))
        else:
            sender = node.connect()
        with node.connect() as receiver, sender:
            run = uuid.uuid4().hex[:8]
            sender.send(sa_event(f"sender-{run}", f"sender-{run}"))
            receiver.recv_until(f"sender-{run}".encode())  # the pipeline works
            expected = [f"m-{run}-{n}".encode() for n in range(EVENTS)]
            stream = b"".join(marker_event(uid.decode()) for uid in expected)

            os.kill(worker_pid, signal.SIGSTOP)
            try:
                # sendall blocks once the kernel's buffers are full: the server stopped reading.
                writer = threading.Thread(target=sender.send, args=(stream,), daemon=True)
                writer.start()
                # Over the worker's credit first, then (once it is lost: no heartbeats) over
                # the events held for want of a worker: either way the sender is not read.
                wait_for("the sender paused", lambda: ingest_gauge(node, "paused_sources") == 1)
            finally:
                os.kill(worker_pid, signal.SIGCONT)
            writer.join(30)
            assert not writer.is_alive(), "the server never read the rest of the stream"

            received = receiver.recv_until(expected[-1], timeout=30)
            uids = [m[1] for event in received if (m := _UID.search(event)) and run.encode()
                    in m[1] and m[1] != f"sender-{run}".encode()]
            assert uids == expected  # all of them, in the order sent
        ingest = next(p for p in node.stats() if p["role"] == "ingest")
        assert ingest["counters"]["reads_paused"] >= 1
        assert ingest["counters"]["no_worker_drops"] == 0
        assert ingest["counters"]["worker_backlog_drops"] == 0
        assert ingest["gauges"]["paused_sources"] == 0
