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



def test_a_flooding_sender_is_paused_for_its_share_and_loses_nothing(tmp_path: Path) -> None:
    """SHARE: a sender with more than --source-inflight-limit events in flight is paused on
    its own (a read of a flood holds hundreds), far below its worker's limit; it and its
    neighbour lose nothing. Which rule holds whom is tests/unit/test_workerpool.py's."""
    extra = ("--source-inflight-limit", "20", "--store", "false")
    with running_node(tmp_path / "data", workers=1, extra=extra) as node:
        with node.connect() as receiver, node.connect() as flooder, node.connect() as neighbour:
            run = uuid.uuid4().hex[:8]
            for client, name in ((flooder, "flooder"), (neighbour, "neighbour")):
                client.send(sa_event(f"{name}-{run}", f"{name}-{run}"))
                receiver.recv_until(f"{name}-{run}".encode())
            flood = [f"f-{run}-{n}".encode() for n in range(EVENTS)]
            mine = [f"n-{run}-{n}".encode() for n in range(20)]
            writer = threading.Thread(
                target=flooder.send,
                args=(b"".join(marker_event(uid.decode()) for uid in flood),), daemon=True,
            )
            writer.start()
            for uid in mine:
                neighbour.send(marker_event(uid.decode()))
            writer.join(30)
            assert not writer.is_alive(), "the server never read the rest of the flood"
            received = receiver.recv_all([flood[-1], mine[-1]], timeout=30)
            uids = [m[1] for event in received if (m := _UID.search(event))]
            assert [uid for uid in uids if uid.startswith(b"f-")] == flood
            assert [uid for uid in uids if uid.startswith(b"n-")] == mine
        ingest = next(p for p in node.stats() if p["role"] == "ingest")
        assert ingest["counters"]["reads_paused_share"] >= 1
        assert ingest["counters"]["reads_paused"] == 0  # the worker's limit was never reached
        assert ingest["gauges"]["paused_sources"] == 0
