"""Servers under test for the suite: the relay, `otszmq serve`, and the peers' start/stop scripts.

Each is started on a free loopback port and reports ready by a line on its stdout; a reader thread
watches for that line (and keeps draining the pipe afterwards, so a chatty server never blocks on
a full pipe). `pids()` is asked again before every run, so a restarted child is still measured.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import procstat
from benchmarks.profiles import profile

REPO_ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = REPO_ROOT / "benchmarks" / "peers"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# The first start of a peer builds its venv (pip install), which can take minutes.
PEER_START_TIMEOUT = 900.0
# The suite raises its own descriptor limit to this before starting servers, which inherit it, so
# idle-hold measures memory and not a 1024-descriptor default; idle-hold reports what they got.
SERVER_NOFILE = 20_000
# A peer's clean-up between two runs against one server (ots/clean.sh waits until its backlog is
# worked off and deletes stale queues): at most this long, s.
PEER_CLEAN_TIMEOUT = 300


class ServerError(Exception):
    """A server that would not start; the suite records it and goes on with the others."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ReadyWatcher(threading.Thread):
    """Reads a process's stdout by lines; `ready` is set on the first line matching `pattern`."""

    def __init__(self, proc: subprocess.Popen[str], pattern: re.Pattern[str]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.pattern = pattern
        self.ready = threading.Event()
        self.match: re.Match[str] | None = None
        self.lines: list[str] = []

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if len(self.lines) < 200:
                self.lines.append(line.rstrip())
            if self.match is None and (found := self.pattern.search(line)):
                self.match = found
                self.ready.set()
        self.ready.set()  # EOF: wake the waiter, who sees no match

    def wait(self, timeout: float, what: str) -> re.Match[str]:
        if not self.ready.wait(timeout):
            raise ServerError(f"{what} not ready within {timeout:.0f} s")
        if self.match is None:
            tail = "\n".join(self.lines[-15:])
            raise ServerError(f"{what} exited ({self.proc.wait()}) before ready:\n{tail}")
        return self.match


@dataclass
class Server:
    """A started server: its port, how to find its processes, how to stop it."""

    label: str
    kind: str  # relay | otszmq | peer
    port: int = 0
    settings: dict[str, object] = field(default_factory=dict)
    # A peer's benchmarks/peers/NAME/clean.sh RUN_DIR TIMEOUT, to run between two runs.
    clean_command: tuple[str, ...] = ()
    data_dir: Path | None = None
    proc: subprocess.Popen[str] | None = None
    root_pids: tuple[int, ...] = ()

    def pids(self) -> tuple[int, ...]:
        """The server's processes now: the roots and all their descendants."""
        return tuple(procstat.process_tree(self.root_pids))

    def clean(self) -> str | None:
        """Runs the clean-up between two runs, if the server has one; what went wrong, or None."""
        if not self.clean_command:
            return None
        try:
            done = subprocess.run(
                self.clean_command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=PEER_CLEAN_TIMEOUT + 60, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return f"{shlex.join(self.clean_command)}: no exit in {PEER_CLEAN_TIMEOUT + 60} s"
        if done.returncode != 0:
            return f"{shlex.join(self.clean_command)}: exit {done.returncode}: {done.stderr[-300:]}"
        return None

    def stop(self) -> None:
        if self.kind == "peer":
            _stop_peer(self)
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.data_dir is not None and self.kind == "otszmq":
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _spawn(argv: Sequence[str], pattern: str, what: str, timeout: float) -> tuple[
    subprocess.Popen[str], re.Match[str]
]:
    proc = subprocess.Popen(
        list(argv),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    watcher = ReadyWatcher(proc, re.compile(pattern))
    watcher.start()
    try:
        return proc, watcher.wait(timeout, what)
    except ServerError:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise


def start_relay() -> Server:
    argv = [sys.executable, "-u", "-m", "benchmarks.relay", "--port", "0"]
    proc, match = _spawn(argv, r"relay ready on 127\.0\.0\.1:(\d+)", "relay", START_TIMEOUT)
    return Server("relay", "relay", int(match.group(1)), {}, (), None, proc, (proc.pid,))


def start_otszmq(
    workers: int, ingest: int, serve_args: Sequence[str] = (), label: str = "otszmq"
) -> Server:
    """`otszmq serve` in a fresh data dir; ready once it prints `otszmq ready:`."""
    data_dir = Path(tempfile.mkdtemp(prefix="otszmq-bench-"))
    port = free_port()
    argv = [
        sys.executable, "-m", "otszmq", "serve",
        "--data-dir", str(data_dir), "--bind", "127.0.0.1", "--tcp-port", str(port),
        "--workers", str(workers), "--ingest-processes", str(ingest),
        "--log-level", "warning", *serve_args,
    ]  # fmt: skip
    try:
        proc, _ = _spawn(argv, r"^otszmq ready:", label, START_TIMEOUT)
    except ServerError:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    settings: dict[str, object] = {
        "workers": workers,
        "ingest_processes": ingest,
        "serve_args": list(serve_args),
    }
    return Server(label, "otszmq", port, settings, (), data_dir, proc, (proc.pid,))


def peer_available(name: str) -> bool:
    return (PEERS_DIR / name / "start.sh").is_file() and (PEERS_DIR / name / "stop.sh").is_file()


def start_peer(name: str, peers_dir: Path) -> Server:
    """benchmarks/peers/NAME/start.sh RUN_DIR PORT; its last line names the server's pids.

    RUN_DIR is `peers_dir`/NAME and keeps the peer's venv, so only the first start installs it.
    """
    run_dir = peers_dir / name
    port = free_port()
    env = {**os.environ, **{variable: str(free_port()) for variable in profile(name).port_env}}
    try:
        done = subprocess.run(
            ["bash", str(PEERS_DIR / name / "start.sh"), str(run_dir), str(port)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PEER_START_TIMEOUT,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{name}: start.sh did not finish in {PEER_START_TIMEOUT:.0f} s") from exc
    match = re.search(r"ready on 127\.0\.0\.1:(\d+)(?: pids=([\d,]+))?", done.stdout)
    if done.returncode != 0 or match is None:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise ServerError(f"{name}: start.sh failed ({done.returncode}):\n{tail}")
    pids = tuple(int(pid) for pid in (match.group(2) or "").split(",") if pid)
    clean = PEERS_DIR / name / "clean.sh"
    command = ("bash", str(clean), str(run_dir), str(PEER_CLEAN_TIMEOUT)) if clean.is_file() else ()
    return Server(name, "peer", int(match.group(1)), {}, command, run_dir, None, pids)


def _stop_peer(server: Server) -> None:
    assert server.data_dir is not None
    subprocess.run(
        ["bash", str(PEERS_DIR / server.label / "stop.sh"), str(server.data_dir)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )


def serve_help() -> str:
    """`otszmq serve --help`: which flags this tree's serve has (it changes under development)."""
    done = subprocess.run(
        [sys.executable, "-m", "otszmq", "serve", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout


def bench_serve_flags(help_text: str, serve_args: Sequence[str] = ()) -> tuple[str, ...]:
    """Ports a CoT benchmark turns off, where serve has them and --serve-args does not set them.

    NOTE: the TLS port makes a CA at first start (seconds of key generation) and, like the HTTP
    API, binds a fixed port (8089, 8080) that another server on this machine may hold; neither is
    on the CoT path the suite measures.
    """
    flags: list[str] = []
    for flag in ("--tls-port", "--api-port"):
        if flag in help_text and flag not in serve_args:
            flags += [flag, "0"]
    return tuple(flags)


def serve_flags_for_bench() -> tuple[str, ...]:
    return bench_serve_flags(serve_help())


def git_state() -> dict[str, object]:
    """The commit measured and how many files differ from it (others edit the tree meanwhile)."""
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False
        )
        # NOTE: only trailing newlines: `status --porcelain` lines start with a status column.
        return done.stdout.rstrip("\n")

    changed = [line for line in git("status", "--porcelain").splitlines() if line]
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "subject": git("log", "-1", "--format=%s").strip(),
        "changed_files": len(changed),
        "changed_outside_benchmarks": sorted(
            line[3:] for line in changed if not line[3:].startswith(("benchmarks/", "BENCHMARKS"))
        ),
    }


def otszmq_stats(server: Server) -> object:
    """`otszmq stats --json` of a running node (its per-process counters), or the error text."""
    if server.kind != "otszmq" or server.data_dir is None:
        return None
    done = subprocess.run(
        [sys.executable, "-m", "otszmq", "stats", "--data-dir", str(server.data_dir), "--json",
         "--wait", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": (done.stderr or done.stdout)[-500:]}
