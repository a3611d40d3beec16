"""Command-line flags and the run configuration shared by the load, ramp, storm and idle programs.

The only place that turns a command line into a config; every check names the flag it is about.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

import uvloop

from benchmarks import cotgen
from benchmarks.jsonout import print_json
from benchmarks.scenarios import (
    RATE_SCENARIOS,
    SCENARIOS,
    TAKSERVER_PING_EVERY_S,
    TAKSERVER_SA_PER_CLIENT_S,
)
from benchmarks.tls import TlsFiles, files_from_flags


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server is and how to reach it: what every program needs."""

    host: str = "127.0.0.1"
    port: int = 8088
    tls: TlsFiles | None = None
    connect_timeout: float = 5.0
    server_pids: tuple[int, ...] = ()
    # Measure the --server-pids and all their descendants, found again at every sample.
    server_tree: bool = False


@dataclass(frozen=True, slots=True)
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 8088
    clients: int = 10
    rate: float = 1000.0
    duration: float = 5.0
    warmup: float = 1.0
    drain: float = 2.0
    event_size: int = 600
    cot_type: str = "a-f-G-U-C"
    tick_ms: float = 5.0
    max_burst_ms: float = 100.0
    connect_timeout: float = 5.0
    settle_timeout: float = 5.0
    server_pids: tuple[int, ...] = ()
    scenario: str = "sa-broadcast"
    # Each client pings (t-x-c-t) this often, s; 0: never. takserver: 10.
    ping_every: float = 0.0
    # Settle: first SA this long after connecting (OpenTAKServer drops a client whose SA comes
    # before its broker channel is up), then repeated every `announce_every` s (None: 0.2 s).
    announce_delay: float = 0.0
    announce_every: float | None = None
    tls: TlsFiles | None = None
    server_tree: bool = False


def add_endpoint_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="server address; loopback only")
    add("--port", type=int, default=8088)
    add("--connect-timeout", type=float, default=5.0, help="per connection, s")
    add("--server-pids", default="", help="comma-separated PIDs to sample CPU%%, RSS and PSS of")
    add("--server-tree", action="store_true",
        help="measure the --server-pids and all their descendants, looked for again at every "
             "sample (for a server that forks a process per client, as OpenTAKServer does)")
    add("--tls", action="store_true", help="connect over mutual TLS (needs --cert/--key/--ca)")
    add("--cert", help="client certificate, PEM")
    add("--key", help="client private key, PEM")
    add("--ca", help="CA that signed the server's certificate, PEM")
    add("--tls-server-name", help="check the server certificate names this host (default: no)")
    add("--json", action="store_true", help="print only the JSON result (no summary on stderr)")


def pids_from(parser: argparse.ArgumentParser, flag: str, text: str) -> tuple[int, ...]:
    """The PIDs of a comma-separated flag value (empty: none); a parser error if it is not."""
    try:
        return tuple(int(pid) for pid in text.split(",") if pid.strip())
    except ValueError:
        parser.error(f"{flag}: not a comma-separated list of PIDs: {text!r}")


def endpoint_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Endpoint:
    pids = pids_from(parser, "--server-pids", args.server_pids)
    tls: TlsFiles | None = None
    if args.tls:
        files = files_from_flags(args.cert, args.key, args.ca, args.tls_server_name)
        if isinstance(files, str):
            parser.error(files)
        tls = files
    if not is_loopback(args.host):
        parser.error(f"--host: {args.host!r} is not a loopback IP address (e.g. 127.0.0.1, ::1)")
    if not 0 < args.port < 65536:
        parser.error("--port: must be 1..65535")
    if args.connect_timeout <= 0:
        parser.error("--connect-timeout: must be > 0")
    if args.server_tree and not pids:
        parser.error("--server-tree: needs --server-pids (the roots of the tree)")
    return Endpoint(args.host, args.port, tls, args.connect_timeout, pids, args.server_tree)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_load_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of benchmarks.load (ramp adds its own on top)."""
    add_endpoint_flags(parser)
    add = parser.add_argument
    add("--scenario", choices=SCENARIOS, default="sa-broadcast", help="what the clients do")
    add("--clients", type=int, default=10, help="simulated EUDs (>= 2)")
    add("--rate", type=float, default=None,
        help="aggregate events/s offered by all clients (default 1000; takserver: 1/s per client)")
    add("--duration", type=float, default=5.0, help="measured window, s")
    add("--warmup", type=float, default=1.0, help="sending before the measured window, s")
    add("--drain", type=float, default=2.0, help="max wait for late deliveries, s")
    add("--event-size", type=int, default=600, help="pad each SA to about this many bytes")
    add("--cot-type", default="a-f-G-U-C", help="type of the measured SA-shaped events")
    add("--tick-ms", type=float, default=5.0, help="pacer period; events are batched per tick")
    add("--max-burst-ms", type=float, default=100.0, help="catch-up limit after a stall")
    add("--settle-timeout", type=float, default=5.0)
    add("--ping-every", type=float, default=None,
        help="each client pings (t-x-c-t) this often, s; 0 never (default; takserver: 10)")
    add("--announce-delay", type=float, default=0.0, help="first SA this long after connecting, s")
    add("--announce-every", type=float, default=None, help="SA repeat during the settle, s")


def load_config_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> LoadConfig:
    endpoint = endpoint_from(parser, args)
    takserver = args.scenario == "takserver"
    rate = args.rate
    if rate is None:
        rate = args.clients * TAKSERVER_SA_PER_CLIENT_S if takserver else 1000.0
    ping_every = args.ping_every
    if ping_every is None:
        ping_every = TAKSERVER_PING_EVERY_S if takserver else 0.0
    cfg = LoadConfig(
        host=endpoint.host,
        port=endpoint.port,
        clients=args.clients,
        rate=rate,
        duration=args.duration,
        warmup=args.warmup,
        drain=args.drain,
        event_size=args.event_size,
        cot_type=args.cot_type,
        tick_ms=args.tick_ms,
        max_burst_ms=args.max_burst_ms,
        connect_timeout=endpoint.connect_timeout,
        settle_timeout=args.settle_timeout,
        server_pids=endpoint.server_pids,
        scenario=args.scenario,
        ping_every=ping_every,
        announce_delay=args.announce_delay,
        announce_every=args.announce_every,
        tls=endpoint.tls,
        server_tree=endpoint.server_tree,
    )
    problem = validate(cfg)
    if problem:
        parser.error(problem)
    return cfg


def validate(cfg: LoadConfig) -> str | None:
    """The first thing wrong with `cfg`, named by its flag, or None."""
    checks = [
        (is_loopback(cfg.host), f"--host: {cfg.host!r} is not a loopback IP address"),
        (0 < cfg.port < 65536, "--port: must be 1..65535"),
        (2 <= cfg.clients < cotgen.MAX_CLIENTS, f"--clients: must be 2..{cotgen.MAX_CLIENTS - 1}"),
        (cfg.rate > 0, "--rate: must be > 0"),
        (cfg.duration > 0, "--duration: must be > 0"),
        (cfg.warmup >= 0, "--warmup: must be >= 0"),
        (cfg.drain >= 0, "--drain: must be >= 0"),
        (cfg.tick_ms > 0, "--tick-ms: must be > 0"),
        (cfg.max_burst_ms >= cfg.tick_ms, "--max-burst-ms: must be >= --tick-ms"),
        (cfg.ping_every >= 0, "--ping-every: must be >= 0"),
        (cfg.announce_delay >= 0, "--announce-delay: must be >= 0"),
        (cfg.announce_every is None or cfg.announce_every > 0, "--announce-every: must be > 0"),
        (
            re.fullmatch(r"[A-Za-z0-9-]+", cfg.cot_type) is not None,
            "--cot-type: letters, digits and -",
        ),
    ]
    return next((message for ok, message in checks if not ok), None)


def is_rate_scenario(scenario: str) -> bool:
    return scenario in RATE_SCENARIOS


def with_rate(cfg: LoadConfig, rate: float) -> LoadConfig:
    return replace(cfg, rate=rate)


def run_and_report(
    program: str,
    work: Coroutine[Any, Any, dict[str, Any]],
    summary: Callable[[dict[str, Any]], str],
    json_only: bool,
    errors: tuple[type[Exception], ...],
) -> dict[str, Any] | None:
    """Run one program's measurement: its JSON on stdout, its summary on stderr unless
    ``json_only``; None (the error said on stderr) when it raised one of ``errors``."""
    try:
        result = uvloop.run(work)
    except errors as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return None
    if not json_only:
        print(summary(result), file=sys.stderr)
    print_json(result)
    return result
