"""Load program for a TAK server: N simulated ATAK clients exchanging SA reports over TCP.

    python -m benchmarks.load --port 8088 --clients 10 --rate 20000 --duration 5 --warmup 1

Phases: connect all clients (barrier), each announces itself with an SA, settle until every client
has seen every other client's announcement or --settle-timeout passes (barrier), then send at the
offered aggregate rate for --warmup + --duration seconds, then drain. Only events sent inside the
measured window (after the warm-up) count towards loss, ordering and latency. See
benchmarks/README.md for every field of the JSON result printed on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # NOTE: `python benchmarks/load.py` puts benchmarks/ first on sys.path, not the repo root that
    # holds the `benchmarks` package; swap it so the imports below work both ways.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import json
import math
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import uvloop

from benchmarks import cotgen, procstat, results

Json = dict[str, Any]
NS = 1_000_000_000
# Bounds: a client's unsent bytes before the pacer skips its events (counted as blocked), and the
# largest unterminated tail kept between reads before the connection is judged broken.
WRITE_HIGH_WATER = 4 * 1024 * 1024
MAX_CARRY = 4 * 1024 * 1024
PROBE_EVERY_S = 0.25
# During the settle each client repeats its SA this often, as ATAK does, so that an announcement
# sent before the server had registered every connection is made up for.
ANNOUNCE_EVERY_S = 0.2


class BenchError(Exception):
    """A run that cannot go on (no server to connect to); main() prints it and exits 1."""


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


class DeliveryCounter:
    """Counts bench deliveries as they arrive, so the drain can end as soon as all are in."""

    __slots__ = ("count", "done", "target")

    def __init__(self) -> None:
        self.count = 0
        self.target = sys.maxsize
        self.done = asyncio.Event()

    def add(self, delivered: int) -> None:
        self.count += delivered
        if self.count >= self.target:
            self.done.set()

    def expect(self, target: int) -> None:
        self.target = target
        self.add(0)


class Settle:
    """Counts the clients that have seen an announcement from every other client."""

    def __init__(self, clients: int) -> None:
        self.waiting = clients
        self.done = asyncio.Event()

    def client_settled(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0:
            self.done.set()


class BenchClient(asyncio.Protocol):
    """One simulated EUD: writes what the pacer gives it and records every bench event it reads.

    PERF: the receive path is one rfind, one C-level findall and a join per read; no Python object
    per event survives the read. Decoding happens after the run (benchmarks.results).
    """

    def __init__(
        self,
        factory: cotgen.SaFactory,
        counter: DeliveryCounter,
        bench_pattern: re.Pattern[bytes],
        announce_pattern: re.Pattern[bytes],
        settle: Settle,
        peers: int,
    ) -> None:
        self.factory = factory
        self.chunks: list[results.Chunk] = []
        self.peers_seen: set[bytes] = set()
        self.settled = False
        self.error: str | None = None
        self._counter = counter
        self._bench_pattern = bench_pattern
        self._announce_pattern = announce_pattern
        self._settle = settle
        self._own_index = b"%0*d" % (cotgen.SRC_DIGITS, factory.index)
        self._peers = peers
        self._announcing = True
        self._paused = False
        self._carry = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # NOTE: uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = f"connection lost: {exc}" if exc else "closed by the server"
        self._transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    @property
    def writable(self) -> bool:
        """False while the transport is over its high-water mark or gone: the pacer then skips."""
        return self._transport is not None and not self._paused

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def end_announcements(self) -> None:
        self._announcing = False

    def data_received(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        end = buf.rfind(cotgen.EVENT_END)
        if end < 0:
            self._keep(buf)
            return
        if self._announcing:
            self._note_announcements(buf, end)
        records = self._bench_pattern.findall(buf, 0, end)
        if records:
            self.chunks.append((time.perf_counter_ns(), b"".join(records)))
            self._counter.add(len(records))
        self._carry = buf[end + cotgen.EVENT_END_LEN :]

    def _keep(self, buf: bytes) -> None:
        if len(buf) > MAX_CARRY:
            self.error = f"no </event> in {len(buf)} bytes; closing"
            self.close()
            buf = b""
        self._carry = buf

    def _note_announcements(self, buf: bytes, end: int) -> None:
        for index in self._announce_pattern.findall(buf, 0, end):
            if index != self._own_index:
                self.peers_seen.add(index)
        if not self.settled and len(self.peers_seen) >= self._peers:
            self.settled = True
            self._settle.client_settled()


async def connect(cfg: LoadConfig, client: BenchClient) -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: client, cfg.host, cfg.port), cfg.connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise BenchError(f"cannot connect to {cfg.host}:{cfg.port}: {reason}") from exc


async def client_session(
    cfg: LoadConfig, client: BenchClient, barrier: asyncio.Barrier, settle: Settle
) -> None:
    """Connect, wait for all to connect, announce until all have settled, wait for all.

    The settle ends once every client has read an SA from every other client, or after
    --settle-timeout; the run goes on either way (a lossy server must still be measured) and
    reports what was missing as settle.missing_announcements.
    """
    await connect(cfg, client)
    await barrier.wait()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.settle_timeout
    while not settle.done.is_set() and (remaining := deadline - loop.time()) > 0:
        client.write(client.factory.announcement(*cotgen.cot_times(datetime.now(UTC))))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settle.done.wait(), min(ANNOUNCE_EVERY_S, remaining))
    await barrier.wait()
    client.end_announcements()


@dataclass(slots=True)
class PacerResult:
    window: results.Window
    measured: list[tuple[int, int]]
    sent_total: int
    skipped_burst: int
    skipped_blocked: int
    max_tick_lag_ms: float
    event_bytes: int


@dataclass(slots=True)
class Pacer:
    """Deadline scheduler for all clients: wakes every tick and sends each client what it owes.

    Client i has sent its share when floor(elapsed * rate_i + i/N) tokens are used; the phase term
    spreads the clients' sends over the ticks at low rates. Tokens owed beyond --max-burst-ms of
    rate (after a stall of this process) are skipped rather than sent in a burst, so that the
    reported send rate shows a generator that could not keep up. A client whose socket is over its
    high-water mark has its events skipped too (counted as blocked).
    """

    cfg: LoadConfig
    clients: list[BenchClient]
    probe: procstat.WindowProbe
    epoch_ns: int
    tokens: list[int] = field(default_factory=list)
    next_seq: list[int] = field(default_factory=list)
    skipped_burst: int = 0
    skipped_blocked: int = 0
    max_lag_ns: int = 0

    async def run(self) -> PacerResult:
        count = len(self.clients)
        self.tokens = [0] * count
        self.next_seq = [0] * count
        tick_ns = int(self.cfg.tick_ms * 1e6)
        start = time.perf_counter_ns()
        window_start = start + int(self.cfg.warmup * NS)
        window_end = window_start + int(self.cfg.duration * NS)
        measured_lo: list[int] | None = None
        # The window runs from the tick whose tokens were the last ones before it to the last
        # tick that sent in it, so `sent` covers exactly `window_seconds` of tokens even when
        # ticks run late.
        last_tick = opened = closed = start
        next_probe = start
        ticks = 0
        while True:
            now = time.perf_counter_ns()
            self.max_lag_ns = max(self.max_lag_ns, now - (start + ticks * tick_ns))
            if now >= window_end:
                closed = last_tick
                self.probe.stop()
                break
            if measured_lo is None and now >= window_start:
                measured_lo, opened = list(self.next_seq), last_tick
                self.probe.start()
            elif measured_lo is not None and now >= next_probe:
                self.probe.sample()
                next_probe = now + int(PROBE_EVERY_S * NS)
            self._tick((now - start) / NS, (now - self.epoch_ns) // 1000)
            last_tick = now
            # Deadline-based: the next wake-up is the next tick boundary after now, so time spent
            # sending never accumulates as drift, and missed ticks are not replayed one by one.
            ticks = max(ticks + 1, (time.perf_counter_ns() - start) // tick_ns + 1)
            await asyncio.sleep(max(0.0, (start + ticks * tick_ns - time.perf_counter_ns()) / NS))
        if measured_lo is None:  # a window shorter than one tick
            measured_lo, opened = list(self.next_seq), closed
        return PacerResult(
            window=results.Window(self.epoch_ns, opened, closed),
            measured=list(zip(measured_lo, self.next_seq, strict=True)),
            sent_total=sum(self.next_seq),
            skipped_burst=self.skipped_burst,
            skipped_blocked=self.skipped_blocked,
            max_tick_lag_ms=round(self.max_lag_ns / 1e6, 3),
            event_bytes=self.clients[0].factory.sample_size(),
        )

    def _tick(self, elapsed_s: float, t_us: int) -> None:
        count = len(self.clients)
        per_client = self.cfg.rate / count
        cap = max(1, math.ceil(per_client * self.cfg.max_burst_ms / 1000.0))
        time_, stale = cotgen.cot_times(datetime.now(UTC))
        for index, client in enumerate(self.clients):
            due = int(elapsed_s * per_client + index / count) - self.tokens[index]
            if due <= 0:
                continue
            self.tokens[index] += due
            if due > cap:
                self.skipped_burst += due - cap
                due = cap
            if not client.writable:
                self.skipped_blocked += due
                continue
            factory = client.factory
            header = factory.header(time_, stale)
            first = self.next_seq[index]
            # PERF: one write per client per tick, however many events it owes.
            client.write(b"".join([factory.event(header, first + k, t_us) for k in range(due)]))
            self.next_seq[index] = first + due


async def run(cfg: LoadConfig) -> Json:
    """One full run: connect and settle, pace, drain, then compute the results."""
    started_at = datetime.now(UTC)
    run_id = secrets.token_hex(4)
    epoch_ns = time.perf_counter_ns()
    counter = DeliveryCounter()
    bench_pattern = cotgen.bench_re(run_id)
    announce_pattern = cotgen.announce_re(run_id)
    settle = Settle(cfg.clients)
    clients = [
        BenchClient(
            cotgen.SaFactory(run_id, index, cfg.event_size, cfg.cot_type),
            counter,
            bench_pattern,
            announce_pattern,
            settle,
            cfg.clients - 1,
        )
        for index in range(cfg.clients)
    ]
    try:
        settled = await settle_all(cfg, clients, settle)
        probe = procstat.WindowProbe(cfg.server_pids)
        with gc_paused():
            paced = await Pacer(cfg, clients, probe, epoch_ns).run()
            drain = await drain_all(cfg, counter, paced.sent_total)
    finally:
        for client in clients:
            client.close()
    return assemble(cfg, started_at, clients, settled, paced, drain, probe)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while sending and draining.

    PERF: a full collection stalls the loop for tens of ms (measured: ~30 ms), which shows up as
    generator latency. The receive path allocates no reference cycles, so nothing piles up.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def settle_all(cfg: LoadConfig, clients: list[BenchClient], settle: Settle) -> Json:
    began = time.perf_counter()
    barrier = asyncio.Barrier(len(clients))
    try:
        async with asyncio.TaskGroup() as group:
            for client in clients:
                group.create_task(client_session(cfg, client, barrier, settle))
    except* BenchError as errors:
        raise errors.exceptions[0] from None
    missing = sum(cfg.clients - 1 - len(client.peers_seen) for client in clients)
    return {
        "complete": missing == 0,
        "seconds": round(time.perf_counter() - began, 3),
        "missing_announcements": missing,
    }


async def drain_all(cfg: LoadConfig, counter: DeliveryCounter, sent_total: int) -> Json:
    began = time.perf_counter()
    counter.expect(sent_total * (cfg.clients - 1))
    # NOTE: whatever is still missing when the drain times out is reported as loss.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(counter.done.wait(), cfg.drain)
    return {"seconds": round(time.perf_counter() - began, 3), "complete": counter.done.is_set()}


def assemble(
    cfg: LoadConfig,
    started_at: datetime,
    clients: list[BenchClient],
    settle: Json,
    paced: PacerResult,
    drain: Json,
    probe: procstat.WindowProbe,
) -> Json:
    began = time.perf_counter()
    tally = results.Tally()
    for receiver, client in enumerate(clients):
        results.tally_receiver(receiver, client.chunks, paced.measured, paced.window, tally)
    delivery = results.delivery_result(tally, paced.measured, paced.window)
    delivery["drain"] = drain
    sent = sum(hi - lo for lo, hi in paced.measured)
    seconds = paced.window.seconds
    generator = probe.generator_result()
    generator["postprocess_seconds"] = round(time.perf_counter() - began, 3)
    return {
        "benchmark": "otszmq.load",
        "schema": 1,
        "started_at": started_at.isoformat(),
        "machine": procstat.machine_info(),
        "config": {**asdict(cfg), "server_pids": list(cfg.server_pids)},
        "settle": settle,
        "send": {
            "offered_rate": cfg.rate,
            "window_seconds": round(seconds, 3),
            "sent": sent,
            "sent_rate": round(sent / seconds, 1) if seconds else None,
            "sent_total": paced.sent_total,
            "skipped_burst": paced.skipped_burst,
            "skipped_blocked": paced.skipped_blocked,
            "max_tick_lag_ms": paced.max_tick_lag_ms,
            "event_bytes": paced.event_bytes,
        },
        "delivery": delivery,
        "latency_ms": results.latency_result(tally.latencies_us),
        "errors": [f"client {i}: {c.error}" for i, c in enumerate(clients) if c.error],
        "generator": generator,
        "system": probe.system_result(),
        "server": probe.server_result() if cfg.server_pids else None,
    }


def summary(result: Json) -> str:
    """A few lines for a human; the JSON on stdout has everything."""
    cfg, send, delivery = result["config"], result["send"], result["delivery"]
    lat, gen, server = result["latency_ms"], result["generator"], result["server"]
    loss = delivery["loss"]
    lines = [
        f"clients {cfg['clients']}  offered {send['offered_rate']:.0f}/s  "
        f"sent {send['sent_rate']}/s over {send['window_seconds']} s  "
        f"event {send['event_bytes']} B  "
        f"settle {'ok' if result['settle']['complete'] else 'INCOMPLETE'}",
        f"deliveries {delivery['deliveries_per_s']}/s  expected {delivery['expected']}  "
        f"delivered {delivery['delivered']}  loss {'n/a' if loss is None else f'{loss:.4%}'}  "
        f"dup {delivery['duplicates']}  out-of-order {delivery['out_of_order']}",
        f"latency ms  p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}",
        f"generator CPU {gen['cpu_percent']}%  machine busy "
        f"{result['system']['cpu_busy_percent']}% of {100 * (result['machine']['nproc'] or 1)}%  "
        f"skipped {send['skipped_burst']} (burst) "
        f"{send['skipped_blocked']} (blocked)  max tick lag {send['max_tick_lag_ms']} ms",
    ]
    if server is not None:
        lines.append(
            f"server CPU {server['cpu_percent_total']}%  RSS {server['rss_kb_total']} kB  "
            + " ".join(f"[{p['pid']}: {p.get('cpu_percent')}%]" for p in server["pids"])
        )
    lines.extend(result["errors"][:5])
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[LoadConfig, bool]:
    parser = argparse.ArgumentParser(prog="benchmarks.load", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="server address; loopback only")
    add("--port", type=int, default=8088)
    add("--clients", type=int, default=10, help="simulated EUDs (>= 2)")
    add("--rate", type=float, default=1000.0, help="aggregate events/s offered by all clients")
    add("--duration", type=float, default=5.0, help="measured window, s")
    add("--warmup", type=float, default=1.0, help="sending before the measured window, s")
    add("--drain", type=float, default=2.0, help="max wait for late deliveries, s")
    add("--event-size", type=int, default=600, help="pad each SA to about this many bytes")
    add("--cot-type", default="a-f-G-U-C", help="type of the measured events")
    add("--tick-ms", type=float, default=5.0, help="pacer period; events are batched per tick")
    add("--max-burst-ms", type=float, default=100.0, help="catch-up limit after a stall")
    add("--connect-timeout", type=float, default=5.0)
    add("--settle-timeout", type=float, default=5.0)
    add("--server-pids", default="", help="comma-separated PIDs to sample CPU%% and RSS of")
    add("--json", action="store_true", help="print only the JSON result (no summary on stderr)")
    args = parser.parse_args(argv)
    try:
        pids = tuple(int(pid) for pid in args.server_pids.split(",") if pid.strip())
    except ValueError:
        parser.error(f"--server-pids: not a comma-separated list of PIDs: {args.server_pids!r}")
    cfg = LoadConfig(
        host=args.host,
        port=args.port,
        clients=args.clients,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        drain=args.drain,
        event_size=args.event_size,
        cot_type=args.cot_type,
        tick_ms=args.tick_ms,
        max_burst_ms=args.max_burst_ms,
        connect_timeout=args.connect_timeout,
        settle_timeout=args.settle_timeout,
        server_pids=pids,
    )
    problem = validate(cfg)
    if problem:
        parser.error(problem)
    return cfg, bool(args.json)


def validate(cfg: LoadConfig) -> str | None:
    """The first thing wrong with `cfg`, named by its flag, or None."""
    try:
        loopback = ipaddress.ip_address(cfg.host).is_loopback
    except ValueError:
        loopback = False
    checks = [
        (loopback, f"--host: {cfg.host!r} is not a loopback IP address (e.g. 127.0.0.1, ::1)"),
        (0 < cfg.port < 65536, "--port: must be 1..65535"),
        (2 <= cfg.clients < cotgen.MAX_CLIENTS, f"--clients: must be 2..{cotgen.MAX_CLIENTS - 1}"),
        (cfg.rate > 0, "--rate: must be > 0"),
        (cfg.duration > 0, "--duration: must be > 0"),
        (cfg.warmup >= 0, "--warmup: must be >= 0"),
        (cfg.drain >= 0, "--drain: must be >= 0"),
        (cfg.tick_ms > 0, "--tick-ms: must be > 0"),
        (cfg.max_burst_ms >= cfg.tick_ms, "--max-burst-ms: must be >= --tick-ms"),
        (
            re.fullmatch(r"[A-Za-z0-9-]+", cfg.cot_type) is not None,
            "--cot-type: letters, digits and -",
        ),
    ]
    return next((message for ok, message in checks if not ok), None)


def main(argv: list[str] | None = None) -> int:
    cfg, json_only = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result: Json = uvloop.run(run(cfg))
    except BenchError as exc:
        print(f"benchmarks.load: {exc}", file=sys.stderr)
        return 1
    if not json_only:
        print(summary(result), file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
