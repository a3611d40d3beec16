"""connect-storm: N clients connect at once; how long until all are connected and hear a broadcast.

    python -m benchmarks.storm --port 8088 --clients 500
    python -m benchmarks.load --scenario connect-storm --port 8088 --clients 500   # the same

What a server sees when a unit's devices all come back after a network outage. Every client opens
its connection at the same moment and, as ATAK does, sends its SA as soon as it is connected
(`--no-announce`: it does not). Once every connection attempt has ended, client 0 sends a marker
(`b-m-p-s-m`, broadcast) every `--probe-every` s until every other connected client has read one.
Reported, from the moment the storm starts: when the last connection was up (`all_connected_s`),
when the last client had read a broadcast (`all_received_s`), and when every client had read every
other's SA (`all_announced_s`, the map complete everywhere), plus connect times, errors, and the
server's CPU and RSS over the storm.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import re
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from benchmarks import cotgen, cotmix, procstat, results
from benchmarks.options import Endpoint, add_endpoint_flags, endpoint_from, run_and_report
from benchmarks.tls import TlsConfigError, client_context

Json = dict[str, Any]
MAX_CARRY = 4 * 1024 * 1024
SAMPLE_EVERY_S = 0.25


@dataclass(frozen=True, slots=True)
class StormConfig:
    endpoint: Endpoint
    clients: int = 500
    timeout: float = 30.0
    probe_every: float = 0.1
    announce: bool = True
    # A server without map state (the relay) never completes the map for clients that connected
    # after an SA went by: do not wait the whole storm timeout for that.
    announce_wait: float = 10.0


class StormClient(asyncio.Protocol):
    """Records when it connected, when it first read a probe, and whose SAs it has read."""

    def __init__(
        self,
        index: int,
        sa: bytes | None,
        probe_re: re.Pattern[bytes],
        announce_re: re.Pattern[bytes],
        storm: Storm,
    ) -> None:
        self.index = index
        self.connected_ns: int | None = None
        self.probe_ns: int | None = None
        self.announced_ns: int | None = None
        self.peers_seen: set[bytes] = set()
        self.error: str | None = None
        self._sa = sa
        self._probe_re = probe_re
        self._announce_re = announce_re
        self._own = b"%0*d" % (cotgen.SRC_DIGITS, index)
        self._storm = storm
        self._carry = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connected_ns = time.perf_counter_ns()
        if self._sa is not None:
            self.transport.write(self._sa)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None and not self._storm.closing:
            self.error = f"connection lost: {exc}" if exc else "closed by the server"
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        end = buf.rfind(cotgen.EVENT_END)
        if end < 0:
            self._carry = buf if len(buf) <= MAX_CARRY else b""
            return
        now = time.perf_counter_ns()
        if self.probe_ns is None and self._probe_re.search(buf, 0, end):
            self.probe_ns = now
            self._storm.changed.set()
        if self.announced_ns is None:
            for index in self._announce_re.findall(buf, 0, end):
                if index != self._own:
                    self.peers_seen.add(index)
            if len(self.peers_seen) >= self._storm.clients - 1:
                self.announced_ns = now
                self._storm.changed.set()
        self._carry = buf[end + cotgen.EVENT_END_LEN :]


class Storm:
    """What the clients share: how many there are and a wake-up for the waiting coroutine."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.closing = False
        self.changed = asyncio.Event()


async def connect(
    cfg: StormConfig, client: StormClient, tls: ssl.SSLContext | None
) -> str | None:
    loop = asyncio.get_running_loop()
    host, port = cfg.endpoint.host, cfg.endpoint.port
    server_name = cfg.endpoint.tls.server_name if cfg.endpoint.tls else None
    try:
        await asyncio.wait_for(
            loop.create_connection(
                lambda: client,
                host,
                port,
                ssl=tls,
                server_hostname=(server_name or host) if tls else None,
            ),
            cfg.endpoint.connect_timeout,
        )
    except (OSError, TimeoutError) as exc:
        client.error = f"connect: {exc or type(exc).__name__}"
        return client.error
    return None


async def wait_until(storm: Storm, done: Callable[[], bool], deadline: float) -> bool:
    """Waits until `done()` holds or the monotonic `deadline` passes; True if it holds."""
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        storm.changed.clear()
        try:
            await asyncio.wait_for(storm.changed.wait(), min(remaining, 0.5))
        except TimeoutError:
            continue
    return True


async def sample_while(probe: procstat.WindowProbe, stop: asyncio.Event) -> None:
    while not stop.is_set():
        probe.sample()
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
        except TimeoutError:
            continue


async def run(cfg: StormConfig) -> Json:
    started_at = datetime.now(UTC)
    fd_limit = procstat.raise_fd_limit(cfg.clients + 256)
    run_id = secrets.token_hex(4)
    tls = client_context(cfg.endpoint.tls) if cfg.endpoint.tls else None
    times = cotgen.cot_times(datetime.now(UTC))
    storm = Storm(cfg.clients)
    probe_re, announce_re = cotgen.bench_re(run_id), cotgen.announce_re(run_id)
    clients = [
        StormClient(
            index,
            cotgen.SaFactory(run_id, index, 0).announcement(*times) if cfg.announce else None,
            probe_re,
            announce_re,
            storm,
        )
        for index in range(cfg.clients)
    ]
    probe = procstat.WindowProbe(cfg.endpoint.server_pids, cfg.endpoint.server_tree)
    sampling = asyncio.Event()
    probe.start()
    sampler = asyncio.create_task(sample_while(probe, sampling))
    t0 = time.perf_counter_ns()
    deadline = time.monotonic() + cfg.timeout
    try:
        await asyncio.gather(*(connect(cfg, client, tls) for client in clients))
        attempts_done_ns = time.perf_counter_ns()
        connected = [c for c in clients if c.connected_ns is not None and c.transport]
        receivers = [c for c in connected if c.index != 0]
        probes_sent = await send_probes(cfg, clients[0], receivers, storm, run_id, deadline)
        if cfg.announce:
            until = min(deadline, time.monotonic() + cfg.announce_wait)
            await wait_until(
                storm, lambda: all(c.announced_ns is not None for c in connected), until
            )
    finally:
        sampling.set()
        await sampler
        probe.stop()
        storm.closing = True
        for client in clients:
            if client.transport is not None:
                client.transport.close()
    return assemble(cfg, started_at, clients, t0, attempts_done_ns, probes_sent, probe, fd_limit)


async def send_probes(
    cfg: StormConfig,
    sender: StormClient,
    receivers: list[StormClient],
    storm: Storm,
    run_id: str,
    deadline: float,
) -> int:
    """Client 0 broadcasts a marker every --probe-every s until every receiver has read one."""
    if sender.transport is None:
        return 0
    markers = cotmix.MarkerFactory(run_id, 0)
    sent = 0
    epoch = time.perf_counter_ns()
    while sender.transport is not None and time.monotonic() < deadline:
        time_, stale = cotgen.cot_times(datetime.now(UTC))
        t_us = (time.perf_counter_ns() - epoch) // 1000
        sender.transport.write(markers.marker(time_, stale, sent, t_us))
        sent += 1
        until = min(deadline, time.monotonic() + cfg.probe_every)
        if await wait_until(storm, lambda: all(c.probe_ns for c in receivers), until):
            break
    return sent


def _seconds(ns: int | None, t0: int) -> float | None:
    return None if ns is None else round((ns - t0) / 1e9, 4)


def assemble(
    cfg: StormConfig,
    started_at: datetime,
    clients: list[StormClient],
    t0: int,
    attempts_done_ns: int,
    probes_sent: int,
    probe: procstat.WindowProbe,
    fd_limit: Json,
) -> Json:
    connected = [c for c in clients if c.connected_ns is not None]
    connect_us = [((c.connected_ns or t0) - t0) // 1000 for c in connected]
    receivers = [c for c in connected if c.index != 0]
    received = [c.probe_ns for c in receivers if c.probe_ns is not None]
    announced = [c.announced_ns for c in connected if c.announced_ns is not None]
    everyone_received = bool(receivers) and len(received) == len(receivers)
    everyone_announced = cfg.announce and bool(connected) and len(announced) == len(connected)
    errors = [f"client {c.index}: {c.error}" for c in clients if c.error]
    return {
        "benchmark": "otszmq.storm",
        "schema": 1,
        "scenario": "connect-storm",
        "started_at": started_at.isoformat(),
        "machine": procstat.machine_info(),
        "config": {
            "host": cfg.endpoint.host,
            "port": cfg.endpoint.port,
            "tls": cfg.endpoint.tls is not None,
            "clients": cfg.clients,
            "timeout": cfg.timeout,
            "probe_every": cfg.probe_every,
            "announce": cfg.announce,
            "announce_wait": cfg.announce_wait,
            "server_pids": list(cfg.endpoint.server_pids),
            "server_tree": cfg.endpoint.server_tree,
        },
        "fd_limit": fd_limit,
        "connect": {
            "attempted": len(clients),
            "connected": len(connected),
            "failed": len(clients) - len(connected),
            "all_connected": len(connected) == len(clients),
            "all_connected_s": _seconds(max(c.connected_ns or t0 for c in connected), t0)
            if connected
            else None,
            "attempts_done_s": _seconds(attempts_done_ns, t0),
            "connect_ms": results.latency_result(connect_us),
        },
        "broadcast": {
            "probes_sent": probes_sent,
            "receivers": len(receivers),
            "received": len(received),
            "all_received": everyone_received,
            "all_received_s": _seconds(max(received), t0) if everyone_received else None,
        },
        "announce": {
            "complete": everyone_announced,
            "clients_complete": len(announced),
            "all_announced_s": _seconds(max(announced), t0) if everyone_announced else None,
            "missing": sum(cfg.clients - 1 - len(c.peers_seen) for c in connected)
            if cfg.announce
            else None,
        },
        "errors_count": len(errors),
        "errors": errors[:20],
        "generator": probe.generator_result(),
        "system": probe.system_result(),
        "server": probe.server_result() if cfg.endpoint.server_pids else None,
    }


def summary(result: Json) -> str:
    connect, broadcast, announce = result["connect"], result["broadcast"], result["announce"]
    lines = [
        f"connect-storm  clients {result['config']['clients']}  connected "
        f"{connect['connected']}/{connect['attempted']} by {connect['all_connected_s']} s  "
        f"connect p99 {connect['connect_ms']['p99']} ms",
        f"broadcast read by {broadcast['received']}/{broadcast['receivers']} by "
        f"{broadcast['all_received_s']} s ({broadcast['probes_sent']} probes)  "
        f"map complete everywhere by {announce['all_announced_s']} s",
    ]
    server = result["server"]
    if server is not None:
        lines.append(f"server CPU {server['cpu_percent_total']}%  RSS {server['rss_kb_total']} kB")
    lines.extend(result["errors"][:5])
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[StormConfig, bool]:
    parser = argparse.ArgumentParser(prog="benchmarks.storm", description=__doc__.split("\n")[0])
    add_endpoint_flags(parser)
    add = parser.add_argument
    add("--scenario", choices=["connect-storm"], default="connect-storm")
    add("--clients", type=int, default=500)
    add("--storm-timeout", type=float, default=30.0, help="longest storm, s")
    add("--probe-every", type=float, default=0.1, help="broadcast probe period, s")
    add("--no-announce", action="store_true", help="clients send no SA on connecting")
    add("--announce-wait", type=float, default=10.0,
        help="after the broadcast, wait at most this long for every client's map, s")
    args = parser.parse_args(argv)
    endpoint = endpoint_from(parser, args)
    if not 2 <= args.clients < cotgen.MAX_CLIENTS:
        parser.error(f"--clients: must be 2..{cotgen.MAX_CLIENTS - 1}")
    if args.storm_timeout <= 0 or args.probe_every <= 0 or args.announce_wait < 0:
        parser.error("--storm-timeout, --probe-every: must be > 0; --announce-wait: >= 0")
    cfg = StormConfig(
        endpoint,
        args.clients,
        args.storm_timeout,
        args.probe_every,
        not args.no_announce,
        args.announce_wait,
    )
    return cfg, bool(args.json)


def main(argv: list[str] | None = None) -> int:
    cfg, json_only = parse_args(sys.argv[1:] if argv is None else argv)
    result = run_and_report("benchmarks.storm", run(cfg), summary, json_only, (TlsConfigError,))
    return 1 if result is None or result["connect"]["connected"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
