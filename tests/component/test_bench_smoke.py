"""Smoke test of the benchmark programs: every scenario against the relay and a real otszmq serve.

Checks that the programs run and that their JSON results have the documented shape: load in every
rate scenario, ramp (two tiny steps), connect-storm, idle-hold, TLS against the relay's --tls, and
the BENCHMARKS.md report. A few behaviours the numbers rest on are checked too (a lossless relay
shows no loss, misdeliveries are detected, pongs are counted). Nothing here is about speed:
benchmarks are programs, not timed tests; each run is about a second with 3 clients.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import procstat, report, servers, tlscerts

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"relay ready on 127\.0\.0\.1:(\d+)")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

TOP_KEYS = {
    "benchmark",
    "schema",
    "started_at",
    "machine",
    "config",
    "settle",
    "send",
    "delivery",
    "latency_ms",
    "errors",
    "generator",
    "system",
    "server",
}
SEND_KEYS = {"offered_rate", "window_seconds", "sent", "sent_rate", "sent_total", "event_bytes"}
DELIVERY_KEYS = {
    "expected",
    "delivered",
    "delivery_ratio",
    "loss",
    "lost",
    "deliveries_per_s",
    "duplicates",
    "out_of_order",
    "echoes",
    "worst_pairs",
    "drain",
}
LATENCY_KEYS = {"count", "p50", "p95", "p99", "max"}
MACHINE_KEYS = {"cpu_model", "nproc", "kernel", "python", "libraries"}


def wait_for_ready(proc: subprocess.Popen[str], timeout: float) -> int:
    """Reads the relay's stdout until its ready line; returns the port it listens on."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                break
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"relay exited ({proc.wait()}) before it was ready")
            if match := READY.search(line):
                return int(match.group(1))
    raise AssertionError(f"relay not ready within {timeout} s")


@pytest.fixture
def relay() -> Iterator[tuple[int, int]]:
    """A running benchmarks.relay on a free port (it binds port 0): yields (port, pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "benchmarks.relay", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield wait_for_ready(proc, START_TIMEOUT), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def run_load(*args: str, program: str = "benchmarks.load") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", program, *args],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_load_against_relay_reports_lossless_run(relay: tuple[int, int]) -> None:
    port, pid = relay
    done = run_load(
        *("--port", str(port), "--clients", "3", "--rate", "300"),
        *("--duration", "1", "--warmup", "0.5", "--server-pids", str(pid), "--json"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert not TOP_KEYS - result.keys()
    assert not SEND_KEYS - result["send"].keys()
    assert not DELIVERY_KEYS - result["delivery"].keys()
    assert not LATENCY_KEYS - result["latency_ms"].keys()
    assert not MACHINE_KEYS - result["machine"].keys()
    assert result["settle"]["complete"] is True
    assert result["errors"] == []
    assert result["server"]["pids"][0]["pid"] == pid

    delivery = result["delivery"]
    assert delivery["delivered"] > 0
    assert delivery["expected"] == result["send"]["sent"] * 2
    assert delivery["loss"] == 0
    assert delivery["duplicates"] == 0
    assert delivery["out_of_order"] == 0
    assert delivery["echoes"] == 0
    assert result["latency_ms"]["count"] == delivery["delivered"]
    timeline = result["latency_ms_timeline"]
    assert sum(piece["count"] for piece in timeline) == delivery["delivered"]
    assert [piece["t_s"] for piece in timeline] == sorted(piece["t_s"] for piece in timeline)


def test_load_exits_non_zero_when_nothing_listens() -> None:
    # A bound socket that never listens holds the port, and every connect to it is refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        done = run_load("--port", str(port), "--clients", "2", "--duration", "0.1")
    assert done.returncode == 1
    assert f"cannot connect to 127.0.0.1:{port}" in done.stderr
    assert done.stdout == ""


# -- every scenario, against the relay and a real otszmq serve -----------------------------------

TINY = ("--clients", "3", "--json")
TINY_RATE = ("--rate", "150", "--duration", "0.5", "--warmup", "0.1", "--drain", "1")


@pytest.fixture(scope="module", params=["relay", "otszmq"])
def server(request: pytest.FixtureRequest) -> Iterator[servers.Server]:
    """One relay and one `otszmq serve` (1 worker, TLS port off if it has one) for the module."""
    if request.param == "relay":
        started = servers.start_relay()
    else:
        started = servers.start_otszmq(1, 1, servers.serve_flags_for_bench())
    try:
        yield started
    finally:
        started.stop()


def target(server: servers.Server) -> tuple[str, ...]:
    """As the suite runs a program: the server's root PIDs, measured with their descendants."""
    pids = ",".join(str(pid) for pid in server.root_pids)
    return ("--port", str(server.port), "--server-pids", pids, "--server-tree")


def run_json(*args: str, program: str = "benchmarks.load") -> dict[str, Any]:
    done = run_load(*args, program=program)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("scenario", ["sa-broadcast", "takserver", "chat-dm", "mixed"])
def test_rate_scenario_emits_result(server: servers.Server, scenario: str) -> None:
    # Pings only where they are checked: a relay never answers, so the run waits out the drain.
    pings = ("--ping-every", "0.2") if scenario == "takserver" else ()
    result = run_json(*target(server), "--scenario", scenario, *TINY, *TINY_RATE, *pings)
    assert not TOP_KEYS - result.keys()
    assert {"scenario", "pings", "latency_ms_by_kind"} <= result.keys()
    assert result["scenario"] == scenario
    assert result["settle"]["complete"] is True
    assert result["errors"] == []
    assert result["server"]["pids"][0]["found"] is True
    assert result["config"]["server_tree"] is True
    assert result["server"]["processes"] == len(server.pids())
    assert result["server"]["pss_kb_total"] > 0
    delivery = result["delivery"]
    assert delivery["delivered"] > 0
    assert delivery["echoes"] == 0
    assert (result["pings"]["sent"] > 0) == (scenario == "takserver")
    if scenario == "chat-dm":
        # Each DM is owed to its addressee only; the relay sends it to everyone.
        assert delivery["expected"] == result["send"]["sent"]
        assert (delivery["misdelivered"] > 0) == (server.kind == "relay")
    if server.kind == "otszmq":
        if scenario == "takserver":
            assert result["pings"]["pongs"] > 0  # a TAK server answers t-x-c-t
    else:
        assert delivery["loss"] == 0
        assert result["pings"]["pongs"] == 0
    if scenario == "mixed":
        assert set(result["latency_ms_by_kind"]) >= {"sa", "chat", "marker"}


def test_connect_storm_emits_result(server: servers.Server) -> None:
    result = run_json(
        *target(server), "--scenario", "connect-storm", *TINY, "--announce-wait", "0.5"
    )
    assert result["benchmark"] == "otszmq.storm"
    assert result["connect"]["all_connected"] is True
    assert result["broadcast"]["all_received"] is True
    assert result["connect"]["connect_ms"]["count"] == 3
    assert result["server"]["cpu_seconds_total"] is not None


def test_idle_hold_emits_result(server: servers.Server) -> None:
    result = run_json(
        *target(server), "--scenario", "idle-hold", *TINY, "--hold", "0.2", "--after-close", "0.1"
    )
    assert result["benchmark"] == "otszmq.idle"
    assert result["connections"]["held"] == 3
    assert result["per_connection"]["server_rss_kib"] is not None
    assert result["per_connection"]["server_pss_kib"] is not None
    assert result["config"]["server_tree"] is True
    assert result["server_fds"]["after"]["max_fd_limit"] is not None
    assert result["fd_limit"]["soft"] >= 3


def test_server_tree_measures_processes_forked_during_the_window() -> None:
    # As OpenTAKServer forks a handler per client after its PIDs were handed to the generator.
    forker = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time; sys.stdin.readline(); os.fork(); time.sleep(60)"],
        stdin=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert forker.stdin is not None
    try:
        tree = procstat.WindowProbe((forker.pid,), follow_children=True)
        roots_only = procstat.WindowProbe((forker.pid,))
        tree.start()
        roots_only.start()
        forker.stdin.write("fork\n")
        forker.stdin.flush()
        deadline = time.monotonic() + 10
        while len(tree.watches) < 2 and time.monotonic() < deadline:
            tree.sample()
            time.sleep(0.05)
        tree.stop()
        roots_only.stop()
        found, alone = tree.server_result(), roots_only.server_result()
    finally:
        os.killpg(forker.pid, signal.SIGKILL)
        forker.wait()
    assert found["follow_children"] is True
    assert found["processes"] == 2 and alone["processes"] == 1
    assert found["processes_at_end"] == 2
    assert found["pss_kb_total"] > 0
    assert all(entry["pss_kb"] > 0 for entry in found["pids"])


@pytest.fixture(scope="module")
def ramp_result() -> Iterator[dict[str, Any]]:
    relay_server = servers.start_relay()
    try:
        # NOTE: a 1 s window: the pacer's window is whole 5 ms ticks, and one tick more in 0.4 s
        # made the sent rate 98.8% of the offered one, a failed step.
        yield run_json(
            *target(relay_server), "--clients", "3", "--json", "--start-rate", "100",
            "--duration", "1", "--warmup", "0.1", "--drain", "1", "--max-steps", "2",
            "--pause", "0", "--no-half", program="benchmarks.ramp",
        )  # fmt: skip
    finally:
        relay_server.stop()


def test_ramp_runs_its_steps(ramp_result: dict[str, Any]) -> None:
    assert ramp_result["benchmark"] == "otszmq.ramp"
    steps = ramp_result["steps"]
    assert [step["rate"] for step in steps] == [100.0, 200.0], [s["reasons"] for s in steps]
    assert all(step["passed"] for step in steps), [step["reasons"] for step in steps]
    assert ramp_result["max_sustainable_rate"] == 200.0
    assert ramp_result["at_max"]["deliveries_per_s"] > 0
    assert ramp_result["at_half"] is None


def test_paired_ramp_runs_every_server_in_turn_at_its_own_rates() -> None:
    relays = [servers.start_relay() for _ in range(3)]
    first, *others = relays
    paired: list[str] = []
    for server, start in zip(others, ("100", "200"), strict=True):
        paired += ["--paired-port", str(server.port), "--paired-server-pids",
                   str(server.root_pids[0]), "--paired-start-rate", start]  # fmt: skip
    try:
        result = run_json(
            *target(first), *paired,
            "--clients", "3", "--json", "--start-rate", "100", "--duration", "1",
            "--warmup", "0.1", "--drain", "1", "--max-steps", "1", "--pause", "0",
            "--half-repeats", "1", program="benchmarks.ramp",
        )  # fmt: skip
    finally:
        for server in relays:
            server.stop()
    assert result["benchmark"] == "otszmq.ramp-paired"
    ramps = result["ramps"]
    assert [r["config"]["load"]["port"] for r in ramps] == [server.port for server in relays]
    for each, server, rate in zip(ramps, relays, (100.0, 100.0, 200.0), strict=True):
        assert each["max_sustainable_rate"] == rate, [s["reasons"] for s in each["steps"]]
        assert each["at_half"]["rate"] == rate / 2
        # Each ramp measured its own server's process, not another's.
        measured = each["steps"][0]["result"]["server"]["pids"]
        assert [entry["pid"] for entry in measured] == list(server.root_pids)


def test_report_keeps_what_is_outside_its_markers(
    ramp_result: dict[str, Any], tmp_path: Path
) -> None:
    suite = {
        "started_at": "2026-01-01T00:00:00+00:00",
        "seconds": 1.0,
        "command": "python -m benchmarks.run_suite",
        "machine": ramp_result["machine"],
        "loadavg_at_end": [0.0, 0.0, 0.0],
        "config": {"workers": 2, "ingest_processes": 1, "serve_args": [], "duration": 0.4,
                   "warmup": 0.1, "max_steps": 2, "precision": 0.15},
        "runs": [
            {"scenario": "sa-broadcast", "clients": 3, "server": name, "result": ramp_result}
            for name in ("relay", "otszmq")
        ],
    }  # fmt: skip
    out = tmp_path / "BENCHMARKS.md"
    report.write(suite, out, None)
    out.write_text("# Notes\n\nTuning log.\n\n" + out.read_text() + "\nMore notes.\n")
    report.write(suite, out, None)
    text = out.read_text()
    assert text.startswith("# Notes\n\nTuning log.") and text.endswith("More notes.\n")
    assert text.count(report.BEGIN) == 1
    assert "| relay | 3 | 200 |" in text
    assert "otszmq / relay = **100%**" in text


def test_load_over_tls_against_the_tls_relay(tmp_path: Path) -> None:
    files = tlscerts.make_certs(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "benchmarks.relay", "--port", "0", "--tls",
         "--cert", files["server"], "--key", files["server_key"], "--ca", files["ca"]],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = wait_for_ready(proc, START_TIMEOUT)
        tls = ("--tls", "--cert", files["client"], "--key", files["client_key"],
               "--ca", files["ca"])  # fmt: skip
        result = run_json("--port", str(port), *TINY, *TINY_RATE, *tls)
        assert result["config"]["tls"]["ca"] == files["ca"]
        assert result["delivery"]["loss"] == 0
        assert result["errors"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_variants_compares_two_otszmq_configurations() -> None:
    result = run_json("store-off,store-on", "--clients", "2", "--rates", "100", "--rounds", "1",
                      "--duration", "0.5", "--warmup", "0.2", "--workers", "1",
                      program="benchmarks.variants")
    assert result["benchmark"] == "otszmq.variants"
    assert list(result["variants"]) == ["store-off", "store-on"]
    for name, variant in result["variants"].items():
        (summary,) = variant["fixed"]
        assert summary["rate"] == 100 and summary["runs"] == 1, name
        assert summary["delivery_ratio"] == 1.0, name
        assert isinstance(variant["counters"], list), name  # otszmq stats answered
    assert "| store-on | 100 |" in result["table"]


def test_federation_measures_local_and_federated_latency() -> None:
    result = run_json("--rate", "20", "--count", "20", program="benchmarks.federation")
    assert result["benchmark"] == "otszmq.federation"
    for path in ("local", "federated"):
        assert result[path]["delivered"] == 20, result[path]
        assert result[path]["latency_ms"]["count"] == 20


def test_floor_reports_costs_and_ceilings() -> None:
    result = run_json("--clients", "10,50", "--calls", "200", program="benchmarks.floor")
    assert result["benchmark"] == "otszmq.floor"
    assert all(value > 0 for value in result["costs_us"].values())
    ten, fifty = result["ceilings"]
    assert (ten["clients"], fifty["clients"]) == (10, 50)
    assert ten["max_events_per_s"] > fifty["max_events_per_s"] > 0


def test_store_benchmark_accounts_for_every_record_and_both_processes() -> None:
    result = run_json("--records", "300", "--batch", "100", "--rate", "0",
                      program="benchmarks.store")
    assert result["benchmark"] == "otszmq.store"
    assert (result["written"], result["dropped"], result["failed"]) == (300, 0, 0)
    # The receiving process and its writer process, each measured.
    receiver, writer = result["store_cpu_seconds_by_process"]
    assert writer > 0
    assert result["store_cpu_seconds"] == pytest.approx(receiver + writer, abs=0.002)
    assert result["store_rss_kb"] > 0


def spinners_on_one_core(*, idle_class: bool) -> tuple[procstat.WindowProbe, dict[str, Any]]:
    """Two busy loops pinned to one CPU (the second in the idle CPU class if ``idle_class``),
    measured over a 1 s window: the probe and its server result."""
    cpu = min(os.sched_getaffinity(0))
    spin = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        for spinner in spinners:
            os.sched_setaffinity(spinner.pid, {cpu})
        if idle_class:
            os.sched_setscheduler(spinners[1].pid, os.SCHED_IDLE, os.sched_param(0))
        probe = procstat.WindowProbe(tuple(spinner.pid for spinner in spinners))
        probe.start()
        time.sleep(1.0)  # the measured window, not a wait for anything
        probe.stop()
        return probe, probe.server_result()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_processes_sharing_one_core_are_seen_waiting_for_it() -> None:
    # Each runs about half the time and waits the other half.
    probe, found = spinners_on_one_core(idle_class=False)
    waits = [entry["runqueue_wait_ms_per_s"] for entry in found["pids"]]
    assert all(wait > 250 for wait in waits), f"ms/s each waited for the core: {waits}"
    assert found["runqueue_wait_ms_per_s_total"] == round(sum(waits), 1)
    assert [entry["idle_class"] for entry in found["pids"]] == [False, False]
    assert probe.generator_result()["runqueue_wait_ms_per_s"] is not None


def test_an_idle_class_process_waits_by_design_and_is_left_out_of_the_total() -> None:
    _, found = spinners_on_one_core(idle_class=True)
    normal, idle = found["pids"]
    assert (normal["idle_class"], idle["idle_class"]) == (False, True)
    # The idle one hardly gets the core (its wait is counted only once it does).
    assert found["runqueue_wait_ms_per_s_total"] == normal["runqueue_wait_ms_per_s"]
    assert normal["cpu_percent"] > 80
