"""idle-hold: M idle connections held open; the server's memory per connection.

    python -m benchmarks.idle --port 8088 --clients 5000 --server-pids 1234,1235 --hold 5
    python -m benchmarks.load --scenario idle-hold --port 8088 --clients 5000 ...   # the same

The server's RSS (summed over `--server-pids`, from /proc) is read before any client connects and
again after M connections have been open and silent for `--hold` s; the difference over the
connections still open is the memory one idle connection costs. Connections are opened at most
`--connect-concurrency` at a time so the listen backlog never overflows (a SYN retry would only
slow the set-up). Idle clients send nothing (`--announce`: one SA each; every other client then
receives it, so that is no longer idle). Also reported: open file descriptors and the `Max open
files` limit of every server process (a limit below M is the first thing that breaks), and the RSS
once the connections are closed again.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import secrets
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from benchmarks import cotgen, procstat
from benchmarks.options import Endpoint, add_endpoint_flags, endpoint_from, run_and_report
from benchmarks.tls import TlsConfigError, client_context

Json = dict[str, Any]
BASELINE_WAIT_S = 0.5
SAMPLE_EVERY_S = 0.5
# Descriptors a server needs besides client sockets (listeners, ZeroMQ, logs): the headroom below
# which its `Max open files` is reported as too low for M connections.
FD_HEADROOM = 64


@dataclass(frozen=True, slots=True)
class IdleConfig:
    endpoint: Endpoint
    clients: int = 1000
    hold: float = 5.0
    concurrency: int = 200
    announce: bool = False
    after_close: float = 2.0


class IdleClient(asyncio.Protocol):
    """Holds its connection; counts what it is sent and never parses it."""

    def __init__(self, closing: list[bool]) -> None:
        self.transport: asyncio.Transport | None = None
        self.bytes_in = 0
        self.lost: str | None = None
        self._closing = closing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._closing[0]:
            self.lost = f"connection lost: {exc}" if exc else "closed by the server"


def server_fds(pids: tuple[int, ...], clients: int) -> Json:
    per_pid = {
        pid: {"fds": procstat.fd_count(pid), "fd_limit": procstat.fd_limit(pid)} for pid in pids
    }
    limits = [entry["fd_limit"] for entry in per_pid.values() if entry["fd_limit"] is not None]
    return {
        "per_pid": {str(pid): entry for pid, entry in per_pid.items()},
        "total_fds": sum(entry["fds"] or 0 for entry in per_pid.values()),
        # NOTE: one process accepts the connections, and we do not know which: if even the most
        # generous limit is too small, the server cannot hold M connections.
        "max_fd_limit": max(limits) if limits else None,
        "limit_enough": (max(limits) >= clients + FD_HEADROOM) if limits else None,
    }


async def open_all(
    cfg: IdleConfig, clients: list[IdleClient], tls: ssl.SSLContext | None, sa: list[bytes]
) -> list[str]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(cfg.concurrency)
    host, port = cfg.endpoint.host, cfg.endpoint.port
    server_name = cfg.endpoint.tls.server_name if cfg.endpoint.tls else None
    errors: list[str] = []

    async def one(index: int, client: IdleClient) -> None:
        async with gate:
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
                errors.append(f"client {index}: connect: {exc or type(exc).__name__}")
                return
        if sa and client.transport is not None:
            client.transport.write(sa[index])

    await asyncio.gather(*(one(index, client) for index, client in enumerate(clients)))
    return errors


async def run(cfg: IdleConfig) -> Json:
    started_at = datetime.now(UTC)
    fd_limit = procstat.raise_fd_limit(cfg.clients + 256)
    roots, tree = cfg.endpoint.server_pids, cfg.endpoint.server_tree

    def server() -> tuple[int, ...]:
        # NOTE: asked again at each reading: a forking server has one more process per client.
        return procstat.server_processes(roots, tree)

    tls = client_context(cfg.endpoint.tls) if cfg.endpoint.tls else None
    run_id = secrets.token_hex(4)
    times = cotgen.cot_times(started_at)
    announcements = (
        [cotgen.SaFactory(run_id, i, 0).announcement(*times) for i in range(cfg.clients)]
        if cfg.announce
        else []
    )
    fds_before = server_fds(server(), cfg.clients)
    first_kb, _ = procstat.rss_kb(server())
    await asyncio.sleep(BASELINE_WAIT_S)
    before_kb, before_per_pid = procstat.rss_kb(server())
    before_pss_kb = procstat.pss_kb_total(server())
    closing = [False]
    clients = [IdleClient(closing) for _ in range(cfg.clients)]
    began = time.monotonic()
    errors = await open_all(cfg, clients, tls, announcements)
    opened_s = time.monotonic() - began
    samples: list[int] = []
    hold_until = time.monotonic() + cfg.hold
    while time.monotonic() < hold_until:
        samples.append(procstat.rss_kb(server())[0])
        await asyncio.sleep(SAMPLE_EVERY_S)
    after_kb, after_per_pid = procstat.rss_kb(server())
    after_pss_kb = procstat.pss_kb_total(server())
    fds_after = server_fds(server(), cfg.clients)
    generator_kb = procstat.self_max_rss_kb()
    held = sum(1 for client in clients if client.transport is not None)
    closing[0] = True
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(cfg.after_close)
    closed_kb, _ = procstat.rss_kb(server())
    lost = [f"client {i}: {c.lost}" for i, c in enumerate(clients) if c.lost]
    delta_kb = after_kb - before_kb
    return {
        "benchmark": "otszmq.idle",
        "schema": 1,
        "scenario": "idle-hold",
        "started_at": started_at.isoformat(),
        "machine": procstat.machine_info(),
        "config": {
            "host": cfg.endpoint.host,
            "port": cfg.endpoint.port,
            "tls": cfg.endpoint.tls is not None,
            "clients": cfg.clients,
            "hold": cfg.hold,
            "concurrency": cfg.concurrency,
            "announce": cfg.announce,
            "after_close": cfg.after_close,
            "server_pids": list(roots),
            "server_tree": tree,
        },
        "fd_limit": fd_limit,
        "connections": {
            "attempted": cfg.clients,
            "held": held,
            "all_held": held == cfg.clients,
            "open_seconds": round(opened_s, 3),
            "connect_errors": len(errors),
            "lost_during_hold": len(lost),
            "bytes_received": sum(client.bytes_in for client in clients),
        },
        "server_rss_kb": {
            "first": first_kb,
            "before": before_kb,
            "after": after_kb,
            "max_during_hold": max(samples, default=after_kb),
            "after_close": closed_kb,
            "before_per_pid": {str(pid): kb for pid, kb in before_per_pid.items()},
            "after_per_pid": {str(pid): kb for pid, kb in after_per_pid.items()},
        },
        # RSS counts the pages forks share once per process; PSS divides them among the sharers.
        "server_pss_kb": {"before": before_pss_kb, "after": after_pss_kb},
        "per_connection": {
            "server_rss_kib": round(delta_kb / held, 2) if held and roots else None,
            "server_pss_kib": (
                round((after_pss_kb - before_pss_kb) / held, 2)
                if held and after_pss_kb is not None and before_pss_kb is not None
                else None
            ),
            "generator_rss_max_kib": round(generator_kb / held, 2) if held else None,
        },
        "server_fds": {"before": fds_before, "after": fds_after},
        "errors": (errors + lost)[:20],
        "system": {"loadavg": list(os.getloadavg())},
    }


def summary(result: Json) -> str:
    conns, rss = result["connections"], result["server_rss_kb"]
    limit = result["server_fds"]["after"]
    lines = [
        f"idle-hold  held {conns['held']}/{conns['attempted']} for {result['config']['hold']} s "
        f"(opened in {conns['open_seconds']} s)",
        f"server RSS {rss['before']} -> {rss['after']} kB  = "
        f"{result['per_connection']['server_rss_kib']} KiB per connection  "
        f"(after close {rss['after_close']} kB)",
        f"server fds {limit['total_fds']}  max fd limit {limit['max_fd_limit']}  "
        f"enough: {limit['limit_enough']}",
    ]
    lines.extend(result["errors"][:5])
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[IdleConfig, bool]:
    parser = argparse.ArgumentParser(prog="benchmarks.idle", description=__doc__.split("\n")[0])
    add_endpoint_flags(parser)
    add = parser.add_argument
    add("--scenario", choices=["idle-hold"], default="idle-hold")
    add("--clients", type=int, default=1000, help="idle connections to hold")
    add("--hold", type=float, default=5.0, help="how long they are held before measuring, s")
    add("--connect-concurrency", type=int, default=200, help="connects in flight at once")
    add("--announce", action="store_true", help="each client sends one SA after connecting")
    add("--after-close", type=float, default=2.0, help="wait before the RSS after closing, s")
    args = parser.parse_args(argv)
    endpoint = endpoint_from(parser, args)
    if not 1 <= args.clients < cotgen.MAX_CLIENTS:
        parser.error(f"--clients: must be 1..{cotgen.MAX_CLIENTS - 1}")
    if args.hold < 0 or args.after_close < 0 or args.connect_concurrency < 1:
        parser.error("--hold, --after-close must be >= 0 and --connect-concurrency >= 1")
    cfg = IdleConfig(
        endpoint, args.clients, args.hold, args.connect_concurrency, args.announce, args.after_close
    )
    return cfg, bool(args.json)


def main(argv: list[str] | None = None) -> int:
    cfg, json_only = parse_args(sys.argv[1:] if argv is None else argv)
    result = run_and_report("benchmarks.idle", run(cfg), summary, json_only, (TlsConfigError,))
    return 1 if result is None or result["connections"]["held"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
