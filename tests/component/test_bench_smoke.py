"""Smoke test of the benchmark programs: the load generator against the reference relay.

Checks that both programs run and that the JSON result has its documented shape, and that a lossless
relay shows no loss. It asserts nothing about speed: benchmarks are programs, not timed tests.
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

import pytest

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


def run_load(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.load", *args],
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


def test_load_exits_non_zero_when_nothing_listens() -> None:
    # A bound socket that never listens holds the port, and every connect to it is refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        done = run_load("--port", str(port), "--clients", "2", "--duration", "0.1")
    assert done.returncode == 1
    assert f"cannot connect to 127.0.0.1:{port}" in done.stderr
    assert done.stdout == ""
