"""Load program for a TAK server: N simulated ATAK clients exchanging CoT over TCP or TLS.

    python -m benchmarks.load --port 8088 --clients 10 --rate 20000 --duration 5 --warmup 1
    python -m benchmarks.load --port 8088 --scenario takserver --clients 200 --duration 20

Phases: connect all clients (barrier), each announces itself with an SA, settle until every client
has seen every other client's announcement or --settle-timeout passes (barrier), then send at the
offered aggregate rate for --warmup + --duration seconds, then drain. Only events sent inside the
measured window (after the warm-up) count towards loss, ordering and latency. See
benchmarks/README.md for every field of the JSON result printed on stdout.

`--scenario` picks what the clients send (benchmarks.scenarios); connect-storm and idle-hold are
handed to benchmarks.storm and benchmarks.idle, which print their own JSON.
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
import math
import re
import secrets
import ssl
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from benchmarks import cotgen, cotmix, procstat, results
from benchmarks.loadsummary import summary
from benchmarks.options import LoadConfig, add_load_flags, load_config_from, run_and_report
from benchmarks.scenarios import Kind, Plan, Sender
from benchmarks.tls import TlsConfigError, client_context

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
        sender: Sender | None = None,
        tls: ssl.SSLContext | None = None,
        count_pongs: bool = False,
    ) -> None:
        self.factory = factory
        self.sender = sender
        self.tls = tls
        self.pongs = 0
        self._count_pongs = count_pongs
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
        if self._count_pongs:
            self.pongs += buf.count(cotmix.PONG_MARK, 0, end)
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
    tls_name = cfg.tls.server_name if cfg.tls and client.tls else None
    try:
        await asyncio.wait_for(
            loop.create_connection(
                lambda: client,
                cfg.host,
                cfg.port,
                ssl=client.tls,
                server_hostname=(tls_name or cfg.host) if client.tls else None,
            ),
            cfg.connect_timeout,
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
    if cfg.announce_delay:
        await asyncio.sleep(cfg.announce_delay)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.settle_timeout
    every = cfg.announce_every or ANNOUNCE_EVERY_S
    while not settle.done.is_set() and (remaining := deadline - loop.time()) > 0:
        client.write(client.factory.announcement(*cotgen.cot_times(datetime.now(UTC))))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settle.done.wait(), min(every, remaining))
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
    bytes_sent: int
    pings_sent: int


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
    ping_tokens: list[int] = field(default_factory=list)
    bytes_sent: int = 0
    pings_sent: int = 0
    skipped_burst: int = 0
    skipped_blocked: int = 0
    max_lag_ns: int = 0

    async def run(self) -> PacerResult:
        count = len(self.clients)
        self.tokens = [0] * count
        self.next_seq = [0] * count
        self.ping_tokens = [0] * count
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
            bytes_sent=self.bytes_sent,
            pings_sent=self.pings_sent,
        )

    def _tick(self, elapsed_s: float, t_us: int) -> None:
        count = len(self.clients)
        per_client = self.cfg.rate / count
        cap = max(1, math.ceil(per_client * self.cfg.max_burst_ms / 1000.0))
        time_, stale = cotgen.cot_times(datetime.now(UTC))
        if self.cfg.ping_every:
            self._pings(elapsed_s, time_, stale)
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
            first = self.next_seq[index]
            # PERF: one write per client per tick, however many events it owes.
            data = client.sender.batch(time_, stale, first, due, t_us) if client.sender else b""
            client.write(data)
            self.bytes_sent += len(data)
            self.next_seq[index] = first + due

    def _pings(self, elapsed_s: float, time_: bytes, stale: bytes) -> None:
        """Each client pings every --ping-every s, phase-spread like the events; never skipped."""
        count = len(self.clients)
        per_client = 1.0 / self.cfg.ping_every
        for index, client in enumerate(self.clients):
            due = int(elapsed_s * per_client + index / count) - self.ping_tokens[index]
            if due > 0 and client.sender is not None:
                self.ping_tokens[index] += due
                client.write(client.sender.ping(time_, stale))
                self.pings_sent += 1


async def run(cfg: LoadConfig) -> Json:
    """One full run: connect and settle, pace, drain, then compute the results."""
    started_at = datetime.now(UTC)
    run_id = secrets.token_hex(4)
    epoch_ns = time.perf_counter_ns()
    counter = DeliveryCounter()
    bench_pattern = cotgen.bench_re(run_id)
    announce_pattern = cotgen.announce_re(run_id)
    settle = Settle(cfg.clients)
    plan = Plan.for_scenario(cfg.scenario, cfg.clients)
    tls = client_context(cfg.tls) if cfg.tls else None
    clients: list[BenchClient] = []
    for index in range(cfg.clients):
        factory = cotgen.SaFactory(run_id, index, cfg.event_size, cfg.cot_type)
        sender = Sender(plan, factory, run_id)
        clients.append(
            BenchClient(
                factory,
                counter,
                bench_pattern,
                announce_pattern,
                settle,
                cfg.clients - 1,
                sender=sender,
                tls=tls,
                count_pongs=cfg.ping_every > 0,
            )
        )
    try:
        settled = await settle_all(cfg, clients, settle)
        probe = procstat.WindowProbe(cfg.server_pids, cfg.server_tree)
        with gc_paused():
            paced = await Pacer(cfg, clients, probe, epoch_ns).run()
            drain = await drain_all(cfg, counter, expected_total(plan, paced))
            if cfg.ping_every:
                await pongs_all(cfg, clients, paced.pings_sent)
    finally:
        for client in clients:
            client.close()
    return assemble(cfg, started_at, clients, settled, paced, drain, probe, plan)


def expected_total(plan: Plan, paced: PacerResult) -> int:
    """Deliveries owed for every event sent (warm-up included): the drain waits for these."""
    if plan.broadcast_only:
        return paced.sent_total * (plan.clients - 1)
    everything = [(0, hi) for _, hi in paced.measured]
    return sum(plan.expected_pairs(everything).values())


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


async def pongs_all(cfg: LoadConfig, clients: list[BenchClient], pings: int) -> None:
    """Gives the last pings' pongs up to --drain s to come back (a server answers at once)."""
    deadline = time.monotonic() + cfg.drain
    while sum(client.pongs for client in clients) < pings and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def drain_all(cfg: LoadConfig, counter: DeliveryCounter, owed: int) -> Json:
    began = time.perf_counter()
    counter.expect(owed)
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
    plan: Plan | None = None,
) -> Json:
    began = time.perf_counter()
    tally = results.Tally()
    routed = plan is not None and plan.pattern != (Kind.SA,)
    for receiver, client in enumerate(clients):
        results.tally_receiver(
            receiver, client.chunks, paced.measured, paced.window, tally,
            plan if routed else None,
        )
    owed = plan.expected_pairs(paced.measured) if plan is not None and routed else None
    delivery = results.delivery_result(tally, paced.measured, paced.window, owed)
    delivery["drain"] = drain
    sent = sum(hi - lo for lo, hi in paced.measured)
    seconds = paced.window.seconds
    generator = probe.generator_result()
    generator["postprocess_seconds"] = round(time.perf_counter() - began, 3)
    config = {**asdict(cfg), "server_pids": list(cfg.server_pids)}
    if cfg.tls is not None:
        config["tls"] = {key: str(value) for key, value in asdict(cfg.tls).items()}
    pongs = sum(client.pongs for client in clients)
    return {
        "benchmark": "otszmq.load",
        "schema": 1,
        "scenario": cfg.scenario,
        "started_at": started_at.isoformat(),
        "machine": procstat.machine_info(),
        "config": config,
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
            "bytes_per_event_mean": (
                round(paced.bytes_sent / paced.sent_total, 1) if paced.sent_total else None
            ),
        },
        "delivery": delivery,
        "latency_ms": results.latency_result(tally.latencies_us),
        "latency_ms_timeline": results.latency_timeline(tally, paced.window),
        "latency_ms_by_kind": results.latency_by_kind(
            tally, {kind.value: kind.name.lower() for kind in Kind}
        ),
        "pings": {
            "every_s": cfg.ping_every,
            "sent": paced.pings_sent,
            "pongs": pongs,
            "pong_ratio": round(pongs / paced.pings_sent, 4) if paced.pings_sent else None,
        },
        "errors": [f"client {i}: {c.error}" for i, c in enumerate(clients) if c.error],
        "generator": generator,
        "system": probe.system_result(),
        "server": probe.server_result() if cfg.server_pids else None,
    }


def parse_args(argv: list[str]) -> tuple[LoadConfig, bool]:
    parser = argparse.ArgumentParser(prog="benchmarks.load", description=__doc__.split("\n")[0])
    add_load_flags(parser)
    args = parser.parse_args(argv)
    return load_config_from(parser, args), bool(args.json)


def delegated(argv: list[str]) -> str | None:
    """The scenario named on the command line when another program runs it, else None."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--scenario")
    known, _ = probe.parse_known_args(argv)
    return known.scenario if known.scenario in ("connect-storm", "idle-hold") else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    other = delegated(argv)
    if other is not None:
        # NOTE: imported here so a plain load run does not pull them in.
        from benchmarks import idle, storm  # noqa: PLC0415

        return storm.main(argv) if other == "connect-storm" else idle.main(argv)
    cfg, json_only = parse_args(argv)
    result = run_and_report("benchmarks.load", run(cfg), summary, json_only,
                            (BenchError, TlsConfigError))
    return 1 if result is None else 0


if __name__ == "__main__":
    sys.exit(main())
