"""``otszmq serve``: start every stage of one node as child processes and keep them up.

Start-up goes tier by tier (fan-out, workers, ingest), each child reporting
readiness over an inherited pipe; ingest only reports ready once a probe has
crossed the whole pipeline, so the "ready" line means clients can connect and be
served. A child that exits is restarted with exponential back-off while the
others keep serving (a client of a surviving ingest never notices a worker or
the fan-out restarting, beyond the events that were inside it). SIGTERM/SIGINT
stop the tiers in reverse order, each within a bounded time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from otszmq.config import Settings, child_flags
from otszmq.errors import OtszmqError

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
STORE_STOP_TIMEOUT = 30.0  # a full store queue takes ~4 s (SQLite) to ~10 s (PostgreSQL)
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0  # a child that ran this long has its back-off reset

_COMMON = ("data_dir", "log_level", "fanout_in", "fanout_out", "fanout_hwm", "stats_interval")
_STORE = (
    "store_priority", "store_work_slice", "store_raw_xml", "store_queue_limit", "store_batch_size",
    "store_flush_interval", "points_retention_days", "cot_retention_days",
    "chat_retention_days", "store_prune_interval",
)
_API = (
    "bind", "api_port", "api_workers", "upload_max_bytes", "https_port", "enroll_port",
    "tls_handshake_timeout",
)
_BRIDGE = (
    "server_id", "inject_endpoint", "max_event_size", "amqp_federation_exchange",
    "amqp_federated_groups", "amqp_inbound_exchange", "amqp_inbound_queue", "amqp_inbound_groups",
    "amqp_mirror", "amqp_mirror_federated", "amqp_buffer", "bridge_nice", "meshtastic",
    "meshtastic_root", "meshtastic_gateway_id",
    "meshtastic_position_interval", "meshtastic_group",
)
_INGEST = (
    "bind", "tcp_port", "tls_port", "tls_handshake_timeout", "ingest_processes",
    "max_event_size", "idle_timeout", "client_queue_bytes", "slow_client_timeout",
    "replay_limit", "pending_limit", "worker_inflight_limit", "source_inflight_limit",
)


class StartupError(OtszmqError):
    """A child failed to come up; the node is stopped."""


@dataclass
class Child:
    name: str
    tier: int  # start order; stopped in reverse
    argv: list[str]
    stop_timeout: float = STOP_TIMEOUT
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int = -1
    ready: bool = False
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: int = field(default=0)


def build_children(settings: Settings) -> list[Child]:
    """The processes of one node, with fully resolved endpoints."""
    resolved = dataclasses.replace(
        settings,
        data_dir=settings.data_dir.resolve(),
        fanout_in=settings.fanout_in_endpoint,
        fanout_out=settings.fanout_out_endpoint,
    )
    base = [sys.executable, "-m", "otszmq"]
    common = child_flags(resolved, _COMMON)
    children = [Child("fanout", 0, [*base, "fanout", *common, "--name", "fanout"])]
    if resolved.store:
        # Before the workers, so that its subscription exists before any record is published;
        # stopped after them, so that it takes what they sent and flushes it (which can take
        # seconds for a full queue), before the fan-out goes.
        children.append(Child("store", 1, [
            *base, "store", *common, "--name", "store", *child_flags(resolved, _STORE),
        ], stop_timeout=STORE_STOP_TIMEOUT))
    for i in range(resolved.worker_count):
        children.append(Child(f"worker-{i}", 2, [
            *base, "worker", *common, "--name", f"worker-{i}", "--ingest-processes",
            str(resolved.ingest_processes), "--work-endpoints", ",".join(resolved.worker_connects),
            "--store", str(resolved.store).lower(),
        ]))
    for i in range(resolved.ingest_processes):
        children.append(Child(f"ingest-{i}", 3, [
            *base, "ingest", *common, *child_flags(resolved, _INGEST), "--name", f"ingest-{i}",
            "--store", str(resolved.store).lower(),
            "--work-endpoint", resolved.work_endpoint_for(i),
            # Server-made events enter through the first ingest only: one place keeps their order.
            "--inject", "true" if i == 0 else "false",
        ]))
    if resolved.api_port:
        children.append(Child("api", 4, [
            *base, "api", *common, "--name", "api", *child_flags(resolved, _API),
        ]))
    if resolved.amqp_url:
        # Last: it injects through ingest 0 and mirrors what the workers route. Its URL goes
        # by environment (child_environment), like the database's.
        children.append(Child("bridge", 5, [
            *base, "bridge", *common, "--name", "bridge",
            *child_flags(dataclasses.replace(resolved, server_id=resolved.federation_id),
                         _BRIDGE),
        ]))
    return children


MALLOC_TUNABLE = "glibc.malloc.tcache_count"
MALLOC_TCACHE_COUNT = 2000
"""Freed chunks glibc keeps per size class and thread for reuse (its default: 7).

PERF: a worker frees a whole batch of ~600-byte event buffers and libxml2 nodes at once, and an
ingest a whole routed batch; past 7 per size the rest go back through glibc's bins
(unlink_chunk, malloc_consolidate: 17% of a worker's CPU in perf). Measured here, two fresh
nodes side by side, 10 clients at 26,000 events/s, 3 interleaved rounds: server CPU 127.9% vs
135.0%, p99 17.7-19.0 ms vs 23.9-27.6 ms, RSS +4%. Other C libraries ignore the variable."""


def malloc_tunables(current: str) -> str:
    """``GLIBC_TUNABLES`` for a child: ``current`` plus our tcache count, unless it sets one."""
    if MALLOC_TUNABLE in current:
        return current  # the admin's choice wins
    ours = f"{MALLOC_TUNABLE}={MALLOC_TCACHE_COUNT}"
    return f"{current}:{ours}" if current else ours


def child_environment(settings: Settings) -> dict[str, str]:
    """The children's environment: ours, plus the secrets among the settings, plus the
    allocator tuning (:func:`malloc_tunables`; glibc reads it when a process starts).

    NOTE: the database and broker URLs (which may hold passwords) and the Meshtastic channel
    keys go by environment, not argv: every local user can read a process's argv (ps).
    """
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = malloc_tunables(env.get("GLIBC_TUNABLES", ""))
    env["OTSZMQ_DATABASE_URL"] = settings.store_database_url
    if settings.amqp_url:
        env["OTSZMQ_AMQP_URL"] = settings.amqp_url
        env["OTSZMQ_MESHTASTIC_CHANNELS"] = ",".join(settings.meshtastic_channels)
    return env


class Supervisor:
    def __init__(self, settings: Settings, children: list[Child]) -> None:
        self.settings = settings
        self.children = children
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._stop_requested = False
        self._env = child_environment(settings)

    def run(self) -> int:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            for tier in sorted({child.tier for child in self.children}):
                self._start_tier(tier)
            if not self._stop_requested:
                self._announce_ready()
                self._watch()
        except StartupError as exc:
            log.error("start-up failed: %s", exc)
            self._stop_all()
            return 1
        self._stop_all()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop_requested = True

    # -- start-up ----------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        ready_r, ready_w = os.pipe()
        argv = [*child.argv, "--ready-fd", str(ready_w)]
        # NOTE: its own process group, so that a terminal's Ctrl-C (SIGINT to the whole
        # foreground group) reaches only the supervisor, which stops the tiers in order.
        child.proc = subprocess.Popen(argv, pass_fds=(ready_w,), env=self._env, process_group=0)
        os.close(ready_w)
        child.ready_fd, child.ready = ready_r, False
        child.started_at, child.restart_at = time.monotonic(), None
        self._selector.register(ready_r, selectors.EVENT_READ, child)
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    def _start_tier(self, tier: int) -> None:
        members = [child for child in self.children if child.tier == tier]
        for child in members:
            self._spawn(child)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(child.ready for child in members) and not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiting = ", ".join(c.name for c in members if not c.ready)
                raise StartupError(f"{waiting} not ready after {START_TIMEOUT:g} s")
            self._wait(remaining)
            for child in members:
                if child.proc is not None and child.proc.poll() is not None and not child.ready:
                    raise StartupError(
                        f"{child.name} exited with code {child.proc.returncode} during start-up"
                    )

    def _announce_ready(self) -> None:
        s = self.settings
        tcp = f"CoT/TCP {s.bind}:{s.tcp_port}" if s.tcp_port else "CoT/TCP off"
        tls = f"CoT/TLS {s.bind}:{s.tls_port}" if s.tls_port else "CoT/TLS off"
        api = f"HTTP {s.bind}:{s.api_port}" if s.api_port else "HTTP off"
        # HTTPS and enrollment are listeners of the API process: off with it.
        if s.api_port and s.https_port:
            api += f", HTTPS {s.bind}:{s.https_port}"
        if s.api_port and s.enroll_port:
            api += f", enrollment {s.bind}:{s.enroll_port}"
        print(
            f"otszmq ready: {tcp}, {tls}, {api}, {s.worker_count} workers, "
            f"{s.ingest_processes} ingest, "
            f"data dir {s.data_dir.resolve()}",
            flush=True,
        )

    # -- steady state --------------------------------------------------------------------

    def _wait(self, timeout: float | None) -> None:
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self._drain_wakeups()
            else:
                self._read_ready(key.data)
        self._reap()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _read_ready(self, child: Child) -> None:
        data = os.read(child.ready_fd, 64)
        if data.startswith(b"ready"):
            child.ready = True
        self._selector.unregister(child.ready_fd)
        os.close(child.ready_fd)
        child.ready_fd = -1

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is None or proc.poll() is None or child.restart_at is not None:
                continue
            if child.ready_fd >= 0:
                self._selector.unregister(child.ready_fd)
                os.close(child.ready_fd)
                child.ready_fd = -1
            if self._stop_requested:
                continue
            if now - child.started_at > STABLE_AFTER:
                child.failures = 0
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**child.failures)
            child.failures += 1
            child.restart_at = now + delay
            log.warning(
                "%s (pid %d) exited with code %s; restarting in %.1f s",
                child.name, proc.pid, proc.returncode, delay,
            )

    def _watch(self) -> None:
        while not self._stop_requested:
            due = [c.restart_at for c in self.children if c.restart_at is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            self._wait(timeout)
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None and child.restart_at <= now and not (
                    self._stop_requested
                ):
                    child.restarts += 1
                    self._spawn(child)

    # -- shutdown ----------------------------------------------------------------------

    def _stop_all(self) -> None:
        for tier in sorted({child.tier for child in self.children}, reverse=True):
            members = [c for c in self.children if c.tier == tier and c.proc is not None]
            for child in members:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            for child in members:
                assert child.proc is not None
                try:
                    child.proc.wait(max(0.0, started + child.stop_timeout - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %g s; killing it", child.name,
                                child.stop_timeout)
                    child.proc.kill()
                    child.proc.wait()
        log.info("node stopped")
