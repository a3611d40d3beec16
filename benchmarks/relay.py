"""The machine's ceiling: the least work any Python server can do to relay CoT between clients.

    python -m benchmarks.relay --port 8088
    python -m benchmarks.relay --port 8089 --tls --cert server.pem --key server.key --ca ca.pem

A uvloop TCP server with no XML parsing, no routing, no storage: it cuts each client's stream after
its last complete `</event>` (keeping the unterminated tail for the next read) and queues those
complete events for every other client; once per event-loop iteration each client gets everything
queued for it in one `transport.write`. Prints `relay ready on 127.0.0.1:PORT` when listening
(`--port 0` picks a free port) and its byte counts on stderr when stopped by SIGINT/SIGTERM.
With `--tls` it speaks mutual TLS (clients must present a certificate signed by `--ca`), so the
load program's TLS client side can be measured against the same least-work server.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

if __name__ == "__main__" and not __package__:
    # NOTE: `python benchmarks/relay.py` puts benchmarks/ first on sys.path, not the repo root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import uvloop

from benchmarks.tls import TlsConfigError, TlsFiles, files_from_flags, server_context

EVENT_END = b"</event>"


DEFAULT_MAX_BACKLOG = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RelayConfig:
    host: str = "127.0.0.1"
    port: int = 8088
    # Bounds, each with its policy: a client whose unsent bytes pass max_backlog is disconnected
    # (slow consumer); a client that sends max_carry bytes without an </event> is disconnected.
    max_backlog: int = DEFAULT_MAX_BACKLOG
    max_carry: int = 4 * 1024 * 1024
    tls: TlsFiles | None = None


@dataclass(slots=True)
class RelayStats:
    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    slow_disconnects: int = 0
    oversize_disconnects: int = 0


class Hub:
    """The connected clients, and the writes waiting for the end of this loop iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cfg: RelayConfig) -> None:
        self.cfg = cfg
        self.stats = RelayStats()
        self.clients: list[RelayClient] = []
        self._loop = loop
        self._dirty: list[RelayClient] = []
        self._flush_scheduled = False

    def publish(self, source: RelayClient, events: bytes) -> None:
        for client in self.clients:
            if client is not source:
                if not client.pending:
                    self._dirty.append(client)
                client.pending.append(events)
        if not self._flush_scheduled:
            # PERF: call_soon callbacks run once the loop has dispatched every read of this poll
            # and before it polls again, so all reads of one iteration make one write per client.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            client.flush()

    def join(self, client: RelayClient) -> None:
        self.stats.connections += 1
        self.clients.append(client)

    def leave(self, client: RelayClient) -> None:
        if client in self.clients:
            self.clients.remove(client)


class RelayClient(asyncio.Protocol):
    def __init__(self, hub: Hub) -> None:
        self.pending: list[bytes] = []
        self._hub = hub
        self._carry = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # NOTE: uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._hub.join(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.pending.clear()
        self._hub.leave(self)

    def data_received(self, data: bytes) -> None:
        self._hub.stats.bytes_in += len(data)
        buf = self._carry + data if self._carry else data
        # NOTE: the complete events of a read are contiguous, so cutting once after the last
        # </event> hands every complete event on, in order, with no per-event work.
        cut = buf.rfind(EVENT_END)
        if cut < 0:
            self._keep(buf)
            return
        cut += len(EVENT_END)
        self._carry = buf[cut:]
        self._hub.publish(self, buf[:cut] if cut < len(buf) else buf)

    def _keep(self, buf: bytes) -> None:
        if len(buf) > self._hub.cfg.max_carry:
            self._hub.stats.oversize_disconnects += 1
            self.drop()
            return
        self._carry = buf

    def flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending.clear()
        transport.write(data)
        self._hub.stats.bytes_out += len(data)
        if transport.get_write_buffer_size() > self._hub.cfg.max_backlog:
            self._hub.stats.slow_disconnects += 1
            self.drop()

    def drop(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._carry = b""


async def serve(cfg: RelayConfig) -> RelayStats:
    loop = asyncio.get_running_loop()
    hub = Hub(loop, cfg)
    context: ssl.SSLContext | None = server_context(cfg.tls) if cfg.tls else None
    server = await loop.create_server(
        lambda: RelayClient(hub), cfg.host, cfg.port, backlog=1024, ssl=context
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(f"relay ready on {cfg.host}:{port}{' (tls)' if context else ''}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        for client in list(hub.clients):
            client.drop()
        await server.wait_closed()
    return hub.stats


def parse_args(argv: list[str]) -> RelayConfig:
    parser = argparse.ArgumentParser(prog="benchmarks.relay", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen address; loopback only")
    parser.add_argument("--port", type=int, default=8088, help="0 picks a free port")
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=DEFAULT_MAX_BACKLOG,
        help="unsent bytes past which a slow client is disconnected",
    )
    parser.add_argument("--tls", action="store_true", help="mutual TLS (needs --cert/--key/--ca)")
    parser.add_argument("--cert", help="server certificate, PEM")
    parser.add_argument("--key", help="server private key, PEM")
    parser.add_argument("--ca", help="CA that signs the clients' certificates, PEM")
    args = parser.parse_args(argv)
    tls: TlsFiles | None = None
    if args.tls:
        files = files_from_flags(args.cert, args.key, args.ca)
        if isinstance(files, str):
            parser.error(files)
        tls = files
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--host: {args.host!r} is not a loopback IP address (e.g. 127.0.0.1, ::1)")
    if not 0 <= args.port < 65536:
        parser.error("--port: must be 0..65535")
    return RelayConfig(host=args.host, port=args.port, max_backlog=args.max_backlog, tls=tls)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        stats: RelayStats = uvloop.run(serve(cfg))
    except OSError as exc:
        print(f"benchmarks.relay: cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    except TlsConfigError as exc:
        print(f"benchmarks.relay: {exc}", file=sys.stderr)
        return 1
    print(f"relay stopped: {stats}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
