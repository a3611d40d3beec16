"""End to end: the real ``otszmq serve`` on a free port, driven by raw TCP clients.

One node serves the module (each test uses its own uids and callsigns); tests
that damage or reconfigure a node start their own.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from otszmq.supervisor import MALLOC_TCACHE_COUNT
from tests.support import CotClient, Node, marker_event, ping_event, running_node, sa_event

pytestmark = pytest.mark.integration


def tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("node") / "data", workers=2) as running:
        yield running


def announced(node: Node, name: str) -> tuple[CotClient, str]:
    """A connected client that announced itself; returns it with its uid."""
    client = node.connect()
    uid = f"uid-{name}"
    client.send(sa_event(uid, name))
    return client, uid


def barrier(sender: CotClient, receiver: CotClient, *others: CotClient) -> bytes:
    """Everything routed before now has been delivered to ``receiver`` (and ``others``).

    One ingest writes an event to all its recipients in one go, so once a fresh
    marker from ``sender`` reaches ``receiver``, any earlier event that was going to
    reach ``receiver`` already has. The events received before it are returned.
    """
    needle = f"barrier-{tag()}".encode()
    sender.send(marker_event(f"m-{tag()}", remarks=needle.decode()))
    received = b"".join(receiver.recv_until(needle))
    for other in others:
        other.recv_until(needle)
    return received


def recovers(sender: CotClient, receiver: CotClient, *, attempts: int) -> bool:
    """After damage: True once a barrier gets through (each try waits its own deadline)."""
    for _ in range(attempts):
        try:
            barrier(sender, receiver)
        except AssertionError:
            continue
        return True
    return False


def test_ready_line_names_the_port(node: Node) -> None:
    assert node.ready_line.startswith("otszmq ready:")
    assert f"127.0.0.1:{node.port}" in node.ready_line


def test_every_stage_runs_with_the_allocator_tuning(node: Node) -> None:
    # glibc reads GLIBC_TUNABLES once, at start: only the environment a child began with counts.
    pids = {process["name"]: process["pid"] for process in node.stats()}
    assert {"fanout", "worker-0", "worker-1", "ingest-0"} <= set(pids)
    ours = f"glibc.malloc.tcache_count={MALLOC_TCACHE_COUNT}"
    for name, pid in pids.items():
        environ = dict(
            entry.split(b"=", 1) for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in entry
        )
        assert ours in environ.get(b"GLIBC_TUNABLES", b"").decode().split(":"), name


def test_the_store_writer_only_gets_the_cpu_routing_leaves(node: Node) -> None:
    # The database writer is a process of its own in the idle class, every thread of it; the
    # store's receiving process is not: starved under load, it left the fan-out queueing for
    # the store in memory, and as a thread beside the writer it waited for the GIL the
    # preempted writer held (otszmq.store.handoff).
    pids = {process["name"]: process["pid"] for process in node.stats()}
    store = pids["store"]
    writers = [
        int(pid) for tid in os.listdir(f"/proc/{store}/task")
        for pid in Path(f"/proc/{store}/task/{tid}/children").read_text().split()
    ]
    assert len(writers) == 1
    assert b"otszmq.store.writer_process" in Path(f"/proc/{writers[0]}/cmdline").read_bytes()

    def classes(pid: int) -> set[int]:
        return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}

    assert classes(store) == {os.SCHED_OTHER}
    assert classes(writers[0]) == {os.SCHED_IDLE}
    assert classes(pids["ingest-0"]) == {os.SCHED_OTHER}


def test_broadcast_reaches_others_exactly_once_and_is_not_echoed(node: Node) -> None:
    a, _ = announced(node, f"A-{tag()}")
    b, _ = announced(node, f"B-{tag()}")
    c, _ = announced(node, f"C-{tag()}")
    with a, b, c:
        needle = f"hello-{tag()}"
        a.send(marker_event(f"m-{tag()}", remarks=needle))
        for receiver in (b, c):
            got = b"".join(receiver.recv_until(needle.encode()))
            assert got.count(needle.encode()) == 1
        # c's barrier reaches a after anything routed before it: no echo of a's own event.
        before = barrier(c, a)
        assert needle.encode() not in before
        # Exactly once: nothing more of it arrives at b before b's next barrier.
        assert needle.encode() not in barrier(c, b)


def test_direct_message_by_callsign_and_by_uid(node: Node) -> None:
    name_b, name_c = f"B-{tag()}", f"C-{tag()}"
    a, _ = announced(node, f"A-{tag()}")
    b, _ = announced(node, name_b)
    c, uid_c = announced(node, name_c)
    d, _ = announced(node, f"D-{tag()}")
    with a, b, c, d:
        # The announcements must have reached the ingest before we address them:
        # a barrier from each proves it (their SA was routed before their marker).
        for sender in (b, c):
            barrier(sender, a)
        to_b = f"to-b-{tag()}"
        a.send(marker_event(f"m-{tag()}", dest_callsigns=(name_b,), remarks=to_b))
        to_c = f"to-c-{tag()}"
        a.send(marker_event(f"m-{tag()}", dest_uids=(uid_c,), remarks=to_c))
        got_b = b"".join(b.recv_until(to_b.encode()))
        got_c = b"".join(c.recv_until(to_c.encode()))
        assert to_c.encode() not in got_b
        assert to_b.encode() not in got_c
        after_d = barrier(a, d, b, c)
        assert to_b.encode() not in after_d and to_c.encode() not in after_d
        assert to_c.encode() not in barrier(a, b)
        assert to_b.encode() not in barrier(a, c)


def test_ping_gets_pong_and_is_not_routed(node: Node) -> None:
    a, _ = announced(node, f"A-{tag()}")
    b, _ = announced(node, f"B-{tag()}")
    with a, b:
        barrier(a, b)
        a.send(ping_event())
        pong = a.recv_until(b't-x-c-t-r')[-1]
        assert b'type="t-x-c-t-r"' in pong
        assert b"t-x-c-t\"" not in barrier(a, b)


def test_new_client_gets_latest_sa_of_others_on_connect(node: Node) -> None:
    name = f"A-{tag()}"
    a = node.connect()
    with a:
        a.send(sa_event(f"uid-{name}", name, remarks="old"))
        a.send(sa_event(f"uid-{name}", name, remarks="newest"))
        b = node.connect()
        with b:
            barrier(a, b)  # both SAs have been routed (and cached) by now
        late = node.connect()
        with late:
            got = b"".join(late.recv_until(f"uid-{name}".encode()))
            event = got[got.rfind(b"<event"):]
            assert b"newest" in event and b"old" not in event


def test_disconnect_sends_delete_to_peers(node: Node) -> None:
    name = f"A-{tag()}"
    b = node.connect()
    with b:
        a = node.connect()
        a.send(sa_event(f"uid-{name}", name))
        b.recv_until(f'callsign="{name}"'.encode())
        a.close()
        events = b.recv_until(b"t-x-d-d")
        assert f'uid="uid-{name}"'.encode() in events[-1]
        # ...and the departed client is no longer replayed to newcomers.
        late = node.connect()
        with late:
            assert f"uid-{name}".encode() not in barrier(b, late)


def test_event_sent_one_byte_at_a_time(node: Node) -> None:
    a, _ = announced(node, f"A-{tag()}")
    b, _ = announced(node, f"B-{tag()}")
    with a, b:
        barrier(a, b)
        needle = f"bytewise-{tag()}-Ünïcødé-北京"
        event = marker_event(f"m-{tag()}", remarks=needle)
        for i in range(len(event)):
            a.send(event[i:i + 1])
        got = b.recv_until(needle.encode())[-1]
        assert got == event


def test_malformed_event_between_good_ones_costs_only_itself(node: Node) -> None:
    a, _ = announced(node, f"A-{tag()}")
    b, _ = announced(node, f"B-{tag()}")
    with a, b:
        barrier(a, b)
        first, last = f"first-{tag()}", f"last-{tag()}"
        bad = b'<event version="2.0" uid="bad" type="a-f-G" time="now"><point lat="x"/></event>'
        good_first = marker_event(f"m-{tag()}", remarks=first)
        a.send(good_first + bad + marker_event(f"m-{tag()}", remarks=last))
        got = b"".join(b.recv_until(last.encode()))
        assert first.encode() in got
        assert b'uid="bad"' not in got
        # a is still connected and served.
        assert barrier(b, a)


def test_oversized_event_closes_only_that_connection(node: Node) -> None:
    a, _ = announced(node, f"A-{tag()}")
    b, _ = announced(node, f"B-{tag()}")
    with a, b:
        barrier(a, b)
        a.send(b'<event uid="huge" type="a-f-G"><detail><remarks>' + b"x" * (2 << 20))
        assert a.is_closed_by_server()
        c, _ = announced(node, f"C-{tag()}")
        with c:
            assert barrier(b, c)


def test_garbage_between_events_closes_that_connection(node: Node) -> None:
    a = node.connect()
    b, _ = announced(node, f"B-{tag()}")
    with a, b:
        a.send(b"GET / HTTP/1.1\r\n\r\n")
        assert a.is_closed_by_server()
        c, _ = announced(node, f"C-{tag()}")
        with c:
            assert barrier(b, c)


def test_per_source_order_is_kept(node: Node) -> None:
    a, _ = announced(node, f"A-{tag()}")
    b, _ = announced(node, f"B-{tag()}")
    with a, b:
        barrier(a, b)
        run = tag()
        a.send(b"".join(marker_event(f"m-{run}-{i}", remarks=f"{run}#{i}#") for i in range(300)))
        events = b.recv_until(f"{run}#299#".encode())
        marks = [e.split(f"{run}#".encode())[1] for e in events if run.encode() in e]
        seen = [int(mark.split(b"#")[0]) for mark in marks]
        assert seen == list(range(300))


def test_stats_lists_every_process(node: Node) -> None:
    roles = sorted(p["role"] for p in node.stats())
    assert roles == ["fanout", "ingest", "store", "worker", "worker"]


def test_idle_client_is_closed(tmp_path: Path) -> None:
    with running_node(tmp_path / "data", workers=1, extra=("--idle-timeout", "1")) as node:
        quiet = node.connect()
        with quiet:
            assert quiet.is_closed_by_server(timeout=10)


def test_worker_killed_mid_run(tmp_path: Path) -> None:
    with running_node(tmp_path / "data", workers=2) as node:
        a, _ = announced(node, f"A-{tag()}")
        b, _ = announced(node, f"B-{tag()}")
        with a, b:
            barrier(a, b)
            workers = [p for p in node.stats() if p["role"] == "worker"]
            for worker in workers:
                os.kill(worker["pid"], signal.SIGKILL)
                # Traffic continues: events routed after the loss is noticed all arrive.
                # (Events that were inside the killed worker are lost with it.)
                assert recovers(a, b, attempts=20), node.log()
                run = tag()
                a.send(b"".join(marker_event(f"m-{run}-{i}", remarks=f"{run}#{i}#")
                                for i in range(50)))
                events = b.recv_until(f"{run}#49#".encode())
                assert sum(run.encode() in e for e in events) == 50
            # Both clients are still connected, and the supervisor brought the workers back.
            assert barrier(b, a)
            pids = {p["pid"] for p in node.stats(wait=1.5) if p["role"] == "worker"}
            assert len(pids) == 2 and pids.isdisjoint({w["pid"] for w in workers})


def test_slow_client_is_disconnected_and_others_are_unaffected(tmp_path: Path) -> None:
    # A bound well above what a reading client lags by, well below what a stalled one
    # accumulates: A sends ~12 MB; the kernel holds ~4 MB for the stalled client.
    extra = ("--client-queue-bytes", str(1 << 20), "--slow-client-timeout", "1")
    with running_node(tmp_path / "data", workers=1, extra=extra) as node:
        a, _ = announced(node, f"A-{tag()}")
        b, _ = announced(node, f"B-{tag()}")
        # A client that never reads, with a tiny receive window so it fills at once.
        slow = node.connect(receive_buffer=4096)
        with a, b, slow:
            barrier(a, b)
            run, padding = tag(), "x" * 10_000
            total, chunk = 1200, 50  # ~12 MB: far past what the kernel and the bound hold
            received = 0
            for start in range(0, total, chunk):
                a.send(b"".join(
                    marker_event(f"m-{run}-{i}", remarks=f"{run}#{i}#{padding}")
                    for i in range(start, start + chunk)
                ))
                # B paces A: it never lags by more than one chunk (~0.5 MB, under the
                # bound), so only the client that never reads can overflow.
                events = b.recv_until(f"{run}#{start + chunk - 1}#".encode(), timeout=60)
                received += sum(run.encode() in e for e in events)
            assert received == total
            # Watch the server's counter, not the socket: reading would drain the client.
            for _ in range(30):
                ingest = next(p for p in node.stats(wait=0.5) if p["role"] == "ingest")
                if ingest["counters"]["slow_disconnects"] >= 1:
                    break
            assert ingest["counters"]["slow_disconnects"] == 1
            assert slow.is_closed_by_server(timeout=10)
            assert barrier(b, a)  # the others are still served


def test_fanout_killed_mid_run_clients_stay_connected(tmp_path: Path) -> None:
    with running_node(tmp_path / "data", workers=1) as node:
        a, _ = announced(node, f"A-{tag()}")
        b, _ = announced(node, f"B-{tag()}")
        with a, b:
            barrier(a, b)
            fanout = next(p for p in node.stats() if p["role"] == "fanout")
            os.kill(fanout["pid"], signal.SIGKILL)
            # The supervisor restarts it; ZeroMQ peers reconnect; the clients never notice.
            assert recovers(a, b, attempts=30), node.log()
            assert barrier(b, a)
            new_fanout = next(p for p in node.stats() if p["role"] == "fanout")
            assert new_fanout["pid"] != fanout["pid"]


def test_two_ingest_processes_share_the_port(tmp_path: Path) -> None:
    with running_node(tmp_path / "data", workers=1, extra=("--ingest-processes", "2")) as node:
        clients = [node.connect() for _ in range(8)]
        try:
            ingests = [p for p in node.stats(wait=1.0) if p["role"] == "ingest"]
            assert len(ingests) == 2
            spread = sorted(p["gauges"]["connections"] for p in ingests)
            run = tag()
            for i, client in enumerate(clients):
                client.send(marker_event(f"m-{run}-{i}", remarks=f"{run}-{i}"))
            for i, client in enumerate(clients):
                others = [f"{run}-{j}<".encode() for j in range(8) if j != i]
                client.recv_all(others)
            # Where each client lands is the kernel's hash; wherever they are, all are served.
            assert sum(spread) == 8, spread
        finally:
            for client in clients:
                client.close()


def test_ctrl_c_stops_the_tiers_in_order(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", workers=1, own_session=True).start()
    assert node.proc is not None
    group = os.getpgid(node.proc.pid)
    # The children must be outside the supervisor's process group: otherwise a terminal's
    # Ctrl-C reaches them all at once and the tiers do not stop in order.
    children = [p["pid"] for p in node.stats()]
    assert len(children) == 4 and all(os.getpgid(pid) != group for pid in children)
    # A terminal's Ctrl-C: SIGINT to the whole foreground process group.
    os.killpg(group, signal.SIGINT)
    assert node.proc.wait(30) == 0
    log = node.log()
    assert "exited with code" not in log  # no child died on its own or was restarted
    assert log.index("ingest stopped") < log.index("worker-0 stopping") < log.index("node stopped")
