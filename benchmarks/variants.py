"""One otszmq, several configurations, the same load: throughput and cost as ratios.

The questions the issues ask of a feature — what does TLS cost next to plain TCP, the store
next to no store, the RabbitMQ bridge next to none — are answered here the same way: every
variant is a fresh ``otszmq serve``, all started before the first run, and the runs are
interleaved (A, B, A, B, ...) so that the noise of this shared 2-core machine falls on all of
them alike. Fixed-rate rounds give server CPU per event and latency; ``--ramp`` adds each
variant's max sustainable rate (benchmarks.ramp). JSON on stdout, a table on stderr.

    python -m benchmarks.variants tcp,tls --clients 10 --rates 2000,6000 --rounds 3 --ramp
    python -m benchmarks.variants store-off,store-on
    python -m benchmarks.variants bridge-off,bridge-on --amqp-url amqp://guest:guest@127.0.0.1/
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from benchmarks import load, procstat, ramp
from benchmarks.jsonout import print_json
from benchmarks.options import LoadConfig
from benchmarks.report import watched_counters
from benchmarks.servers import Server, ServerError, free_port, otszmq_stats, start_otszmq
from benchmarks.tls import TlsFiles

Json = dict[str, Any]

BENCH_USER = "bench"


@dataclass(frozen=True)
class Variant:
    name: str
    serve_args: tuple[str, ...]
    what: str
    tls: bool = False  # clients connect to the mutual-TLS port with an issued certificate
    needs_amqp: bool = False


_NO_EXTRAS = ("--api-port", "0", "--store", "false")
VARIANTS = {
    v.name: v for v in (
        Variant("tcp", (*_NO_EXTRAS, "--tls-port", "0"), "plain TCP, no store, no API"),
        Variant("tls", _NO_EXTRAS, "mutual TLS (certificate from otszmq cert issue)", tls=True),
        Variant("store-off", ("--api-port", "0", "--tls-port", "0", "--store", "false"),
                "no store"),
        Variant("store-on", ("--api-port", "0", "--tls-port", "0", "--store", "true"),
                "store on (SQLite in the data dir)"),
        Variant("bridge-off", (*_NO_EXTRAS, "--tls-port", "0"), "no RabbitMQ bridge"),
        Variant("bridge-on", (*_NO_EXTRAS, "--tls-port", "0"),
                "RabbitMQ bridge mirroring every event", needs_amqp=True),
    )
}


@dataclass
class Running:
    variant: Variant
    server: Server
    tls: TlsFiles | None
    port: int


def _otszmq(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "otszmq", *args], check=True, capture_output=True,
                   timeout=120)


def start(variant: Variant, workers: int, amqp_url: str) -> Running:
    tls_port = free_port() if variant.tls else 0
    args = list(variant.serve_args)
    if variant.tls:
        args += ["--tls-port", str(tls_port)]
    if variant.needs_amqp:
        args += ["--amqp-url", amqp_url]
    server = start_otszmq(workers, 1, args, label=f"otszmq {variant.name}")
    if not variant.tls:
        return Running(variant, server, None, server.port)
    assert server.data_dir is not None
    certs = server.data_dir / "bench-certs"
    data_dir = str(server.data_dir)
    _otszmq("user", "add", BENCH_USER, "--data-dir", data_dir)
    _otszmq("cert", "issue", BENCH_USER, "--data-dir", data_dir, "--out", str(certs),
            "--key-size", "2048", "--p12-password", "bench")
    files = TlsFiles(certs / f"{BENCH_USER}.pem", certs / f"{BENCH_USER}.key", certs / "ca.pem")
    return Running(variant, server, files, tls_port)


def load_config(base: LoadConfig, running: Running) -> LoadConfig:
    return replace(base, port=running.port, tls=running.tls,
                   server_pids=running.server.pids(), server_tree=True)


def per_event_us(row: Json) -> float | None:
    cpu, rate = row.get("server_cpu_percent"), row.get("sent_rate")
    if not isinstance(cpu, (int, float)) or not isinstance(rate, (int, float)) or not rate:
        return None
    return round(cpu / 100 / rate * 1e6, 1)


def all_servers(base: LoadConfig, runs: list[Running]) -> LoadConfig:
    """For waiting until every variant's server is idle (the last run's backlog is gone)."""
    pids = tuple(pid for running in runs for pid in running.server.root_pids)
    return replace(base, server_pids=pids, server_tree=True)


def fixed_rounds(runs: list[Running], base: LoadConfig, rates: list[float], rounds: int
                 ) -> dict[str, list[Json]]:
    rows: dict[str, list[Json]] = {r.variant.name: [] for r in runs}
    for number in range(rounds):
        for rate in rates:
            for running in runs:
                ramp.progress(f"round {number + 1} {running.variant.name} {rate:.0f}/s ...",
                              False)
                ramp.wait_until_idle(all_servers(base, runs))
                result = uvloop.run(load.run(replace(load_config(base, running), rate=rate)))
                step = ramp.row(result)
                step["server_us_per_event"] = per_event_us(step)
                # Cumulative, so consecutive runs' difference is what this run cost.
                step["counters_after"] = watched_counters(otszmq_stats(running.server))
                rows[running.variant.name].append(step)
                ramp.progress(
                    f"round {number + 1} {running.variant.name:10s} {rate:>7.0f}/s  delivered "
                    f"{step['delivery_ratio']}  p99 {step['p99_ms']} ms  server "
                    f"{step['server_us_per_event']} us/event", True)
    return rows


def summarize(rows: list[Json], rate: float) -> Json:
    at = [r for r in rows if r["offered_rate"] == rate]

    def median(key: str) -> float | None:
        values = [float(r[key]) for r in at if isinstance(r.get(key), (int, float))]
        return round(statistics.median(values), 2) if values else None

    return {"rate": rate, "runs": len(at), "server_us_per_event": median("server_us_per_event"),
            "p50_ms": median("p50_ms"), "p99_ms": median("p99_ms"),
            "delivery_ratio": min((r["delivery_ratio"] or 0.0 for r in at), default=None)}


def ratio(a: object, b: object) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return round(a / b, 3)
    return None


def table(result: Json) -> str:
    variants: dict[str, Json] = result["variants"]
    names = list(variants)
    base = names[0]
    lines = ["| variant | rate/s | server µs/event | p50 / p99 ms | delivered | "
             f"µs/event vs {base} |", "|---|---|---|---|---|---|"]
    for name in names:
        for summary in variants[name]["fixed"]:
            base_summary = next(s for s in variants[base]["fixed"]
                                if s["rate"] == summary["rate"])
            lines.append(
                f"| {name} | {summary['rate']:.0f} | {summary['server_us_per_event']} | "
                f"{summary['p50_ms']} / {summary['p99_ms']} | {summary['delivery_ratio']} | "
                f"{ratio(summary['server_us_per_event'], base_summary['server_us_per_event'])} |")
    ramps = {n: v.get("max_sustainable_rate") for n, v in variants.items()}
    if any(rate is not None for rate in ramps.values()):
        lines.append("")
        lines.append(f"| variant | max sustainable events/s | vs {base} |")
        lines.append("|---|---|---|")
        for name, rate in ramps.items():
            lines.append(f"| {name} | {rate} | {ratio(rate, ramps[base])} |")
    lines.append("")
    for name in names:
        counters = variants[name].get("counters")
        if counters is None:
            lines.append(f"- {name}: no counters (otszmq stats did not answer)")
        else:
            lines.append(f"- {name}: " + (", ".join(counters) or "no drops, losses or errors"))
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.variants", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("variants", help="comma-separated, the first is the baseline: " + ", ".join(VARIANTS))
    add("--clients", type=int, default=10)
    add("--rates", default="2000,5000", help="comma-separated fixed rates, events/s")
    add("--rounds", type=int, default=3, help="interleaved rounds of every rate")
    add("--duration", type=float, default=5.0, help="seconds measured per run")
    add("--warmup", type=float, default=1.0)
    add("--workers", type=int, default=2, help="otszmq --workers")
    add("--ramp", action="store_true", help="also find each variant's max sustainable rate")
    add("--ramp-start", type=float, default=4000.0)
    add("--ramp-steps", type=int, default=6)
    add("--ramp-precision", type=float, default=0.15,
        help="bisect until the failing rate is within this share of the best pass")
    add("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/",
        help="for bridge-on: the broker (127.0.0.1 only)")
    add("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or len(names) < 2:
        parser.error(f"variants: need two or more of {', '.join(VARIANTS)}; got {args.variants}")
    args.names = names
    try:
        args.rate_list = [float(r) for r in args.rates.split(",") if r]
    except ValueError:
        parser.error(f"--rates: not numbers: {args.rates}")
    if args.rounds < 1 or not args.rate_list:
        parser.error("--rounds must be >= 1 and --rates non-empty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    base = LoadConfig(clients=args.clients, duration=args.duration, warmup=args.warmup)
    runs: list[Running] = []
    started_at = datetime.now(UTC)
    try:
        for name in args.names:
            runs.append(start(VARIANTS[name], args.workers, args.amqp_url))
        rows = fixed_rounds(runs, base, args.rate_list, args.rounds)
        variants: dict[str, Json] = {}
        for running in runs:
            name = running.variant.name
            entry: Json = {
                "what": running.variant.what,
                "serve_args": running.server.settings.get("serve_args", []),
                "fixed": [summarize(rows[name], rate) for rate in args.rate_list],
                "runs": rows[name],
            }
            if args.ramp:
                ramp.wait_until_idle(all_servers(base, runs))
                found = ramp.run(ramp.RampConfig(
                    load=load_config(base, running), start_rate=args.ramp_start,
                    max_steps=args.ramp_steps, precision=args.ramp_precision, half=False,
                ))
                entry["max_sustainable_rate"] = found["max_sustainable_rate"]
                entry["ramp_steps"] = [s["row"] for s in found["steps"]]
            # What the node dropped, coalesced or lost over all its runs (e.g. store records
            # the writer could not keep up with, events the bridge could not hand over).
            entry["counters"] = watched_counters(otszmq_stats(running.server))
            variants[name] = entry
    except (ServerError, load.BenchError, subprocess.CalledProcessError) as exc:
        print(f"benchmarks.variants: {exc}", file=sys.stderr)
        return 1
    finally:
        for running in runs:
            running.server.stop()
    result: Json = {
        "benchmark": "otszmq.variants",
        "schema": 1,
        "started_at": started_at.isoformat(),
        "machine": procstat.machine_info(),
        "config": {"clients": args.clients, "rates": args.rate_list, "rounds": args.rounds,
                   "duration": args.duration, "workers": args.workers},
        "variants": variants,
    }
    result["table"] = table(result)
    print(result["table"], file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print_json(result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
