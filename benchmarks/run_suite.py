"""The benchmark suite: every scenario against every server, side by side, in one run.

    python -m benchmarks.run_suite                        # relay + otszmq, all scenarios, scaling
    python -m benchmarks.run_suite --peers taky,ots       # plus the peers (benchmarks/peers/)
    python -m benchmarks.run_suite --report-only benchmarks/results/suite-20260101-120000.json

For each scenario it starts each server fresh on a free loopback port (the relay; `otszmq serve`
with --workers/--ingest-processes and any --serve-args; each peer through its start.sh, in
--peers-dir/NAME, which keeps its venv between suite runs), runs the scenario's programs against it
(benchmarks.ramp for rate scenarios, benchmarks.load for the takserver shape, benchmarks.storm,
benchmarks.idle) with the server's settings from benchmarks.profiles, and stops it. Between two
runs against a peer with a clean.sh (OpenTAKServer), that runs, within ramps too. In sa-broadcast,
the relay, otszmq and otszmq-nostore are started together and ramped in turn, a step of each
(benchmarks.ramp --paired-port), --paired-rounds times: the targets are ratios of their maxima,
judged on the median over the rounds (benchmarks.rounds). Then the otszmq scaling
runs (sa-broadcast ramps with other worker and ingest counts). Everything measured goes into one
JSON file under benchmarks/results/; BENCHMARKS.md at the repo root and PNG plots under
benchmarks/plots/ are written from it (again with --report-only). Progress goes to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import os
import shlex
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from benchmarks import procstat, report, rounds, servers
from benchmarks.scenarios import SCENARIOS
from benchmarks.suiteplan import (
    PAIRED_ROUNDS,
    RAMP_MAX_STEPS,
    RAMP_PRECISION,
    Job,
    Setting,
    SuiteConfig,
    jobs_for,
    run_job,
    run_paired_job,
    scaling_settings,
)

Json = dict[str, Any]


# otszmq without its store, side by side with the relay and the peers, which store nothing: the
# like-for-like routing figure, and the store's cost as the ratio to the otszmq row of the same run.
NOSTORE = "otszmq-nostore"
NOSTORE_SCENARIOS = frozenset({"sa-broadcast"})
# The targets are ratios of maxima (otszmq to the relay, store on to store off): in these
# scenarios the ramps of these servers (those of them in --servers) run in turn, step by step
# (benchmarks.ramp --paired-port), so that a drift of the machine falls on all of them alike.
PAIRED = ("relay", "otszmq", NOSTORE)
PAIRED_SCENARIOS = frozenset({"sa-broadcast"})


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        message = f"not a comma-separated list of integers: {text!r}"
        raise argparse.ArgumentTypeError(message) from exc


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_args(argv: list[str]) -> tuple[SuiteConfig, argparse.Namespace]:
    description = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="benchmarks.run_suite", description=description)
    add = parser.add_argument
    add("--scenarios", type=_names, default=SCENARIOS, help="comma-separated (default: all)")
    add("--servers", type=_names, default=("relay", "otszmq", NOSTORE),
        help=f"relay,otszmq,{NOSTORE} ({NOSTORE}: otszmq with --store false, in "
             f"{', '.join(sorted(NOSTORE_SCENARIOS))} only)")
    add("--peers", type=_names, default=(), help="peers to add, e.g. taky,ots")
    add("--peers-dir", type=Path, default=Path(tempfile.gettempdir()) / "otszmq-bench-peers",
        help="run dirs of the peers (DIR/NAME); each keeps its venv, so only the first start "
             "installs it (OpenTAKServer: ~2.5 min). Keep it short: taky's socket path is in it")
    add("--workers", type=int, default=2, help="otszmq --workers for the side-by-side runs")
    add("--ingest-processes", type=int, default=1, help="otszmq --ingest-processes")
    add("--serve-args", default="",
        help="extra arguments for `otszmq serve`, one shell-quoted string (e.g. a store switch)")
    add("--broadcast-clients", type=_ints, default=(10, 50), help="sa-broadcast client counts")
    add("--takserver-clients", type=_ints, default=(200, 500), help="takserver client counts")
    add("--dm-clients", type=_ints, default=(10,), help="chat-dm client counts")
    add("--mixed-clients", type=_ints, default=(10,), help="mixed client counts")
    add("--storm-clients", type=_ints, default=(500,), help="connect-storm client counts")
    add("--idle-clients", type=_ints, default=(5000,), help="idle-hold connection counts")
    add("--duration", type=float, default=3.0, help="measured window of each ramp step, s")
    add("--warmup", type=float, default=1.0, help="warm-up of each ramp step, s")
    add("--max-steps", type=int, default=RAMP_MAX_STEPS,
        help="rates tried per ramp (a failed one is tried twice; plus the steps at half rate)")
    add("--precision", type=float, default=RAMP_PRECISION, help="ramp bisection precision")
    add("--paired-rounds", type=int, default=PAIRED_ROUNDS,
        help="how many times the ramps in turn run (sa-broadcast: relay, otszmq, "
             f"{NOSTORE}); the ratio and half-rate targets take the median over the rounds")
    add("--takserver-duration", type=float, default=20.0, help="takserver window, s")
    add("--idle-hold", type=float, default=5.0, help="idle-hold: hold before measuring, s")
    add("--no-scaling", action="store_true", help="skip the otszmq scaling runs")
    add("--scaling-clients", type=int, default=50)
    add("--scaling-workers", type=_ints, default=(1, 2, 4))
    add("--scaling-ingest", type=_ints, default=(1, 2))
    add("--no-store-row", action="store_true", help="no scaling row with `--store false`")
    add("--quick", action="store_true", help="tiny everything: checks the suite runs (seconds)")
    add("--no-plots", action="store_true", help="write BENCHMARKS.md without plots")
    add("--out", type=Path, default=servers.REPO_ROOT / "BENCHMARKS.md")
    add("--plots-dir", type=Path, default=servers.REPO_ROOT / "benchmarks" / "plots")
    add("--results-dir", type=Path, default=servers.REPO_ROOT / "benchmarks" / "results")
    add("--report-only", type=Path, metavar="SUITE_JSON", help="only rewrite the report from it")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"--scenarios: unknown {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    if set(args.servers) - {"relay", "otszmq", NOSTORE}:
        parser.error(f"--servers: relay, otszmq and/or {NOSTORE} (peers go in --peers)")
    if args.paired_rounds < 1:
        parser.error(f"--paired-rounds: at least 1, got {args.paired_rounds}")
    missing = [name for name in args.peers if not servers.peer_available(name)]
    if missing:
        parser.error(f"--peers: no benchmarks/peers/<name>/start.sh and stop.sh for {missing}")
    cfg = SuiteConfig(
        scenarios=tuple(args.scenarios),
        servers=tuple(args.servers),
        peers=tuple(args.peers),
        workers=args.workers,
        ingest_processes=args.ingest_processes,
        serve_args=tuple(shlex.split(args.serve_args)),
        clients={
            "sa-broadcast": args.broadcast_clients,
            "takserver": args.takserver_clients,
            "chat-dm": args.dm_clients,
            "mixed": args.mixed_clients,
            "connect-storm": args.storm_clients,
            "idle-hold": args.idle_clients,
        },
        duration=args.duration,
        warmup=args.warmup,
        max_steps=args.max_steps,
        precision=args.precision,
        paired_rounds=args.paired_rounds,
        takserver_duration=args.takserver_duration,
        idle_hold=args.idle_hold,
        scaling=not args.no_scaling,
        scaling_clients=args.scaling_clients,
        scaling_workers=args.scaling_workers,
        scaling_ingest=args.scaling_ingest,
        store_row=not args.no_store_row,
        quick=args.quick,
        peers_dir=str(args.peers_dir.resolve()),
    )
    return (cfg.quickened() if args.quick else cfg), args


def log(text: str) -> None:
    print(f"[suite {datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def start(kind: str, cfg: SuiteConfig, setting: Setting | None = None) -> servers.Server:
    if kind == "relay":
        return servers.start_relay()
    if kind == NOSTORE:
        return servers.start_otszmq(cfg.workers, cfg.ingest_processes,
                                    (*cfg.serve_args, "--store", "false"), NOSTORE)
    if kind == "otszmq":
        if setting is None:
            return servers.start_otszmq(cfg.workers, cfg.ingest_processes, cfg.serve_args)
        args = cfg.serve_args + setting.serve_args()
        return servers.start_otszmq(setting.workers, setting.ingest, args, setting.label())
    return servers.start_peer(kind, Path(cfg.peers_dir))


def run_on(server_kind: str, jobs: list[Job], cfg: SuiteConfig,
           setting: Setting | None = None) -> list[Json]:
    """Starts one server, runs `jobs` against it, stops it; one record per job. A skipped job
    (the server cannot do it) is recorded with its reason, and alone starts no server."""
    skipped = [{**job.describe(), "server": server_kind} for job in jobs if job.skipped]
    for record in skipped:
        log(f"{record['scenario']} x{record['clients']} on {server_kind}: skipped "
            f"({record['skipped']})")
    jobs = [job for job in jobs if not job.skipped]
    if not jobs:
        return skipped
    started = start_all([server_kind], cfg, setting)
    if isinstance(started, str):
        return skipped + [{**job.describe(), "server": server_kind, "error": started}
                          for job in jobs]  # fmt: skip
    (server,) = started
    log(f"{server.label} ready on 127.0.0.1:{server.port} (pids {server.pids()})")
    records: list[Json] = list(skipped)
    try:
        for number, job in enumerate(jobs):
            problem = server.clean() if number else None
            if problem:
                log(f"{server.label}: clean-up before the next run failed: {problem}")
            log(f"{job.scenario} x{job.clients} on {server.label}"
                + (f" ({job.note})" if job.note else ""))
            record = run_job(job, server)
            if problem:
                record["clean_up_failed"] = problem
            records.append(record)
        add_stats(records, started)
    finally:
        stop_all(started)
    return records


def run_paired_on(kinds: list[str], scenario: str, cfg: SuiteConfig) -> list[Json]:
    """Starts these servers side by side, ramps them in turn at each client count (a step of
    each, benchmarks.ramp --paired-port) `cfg.paired_rounds` times, stops them; a record per
    round, client count and server, with its `round` (from 1)."""
    jobs = {kind: jobs_for(cfg, scenario, kind) for kind in kinds}
    started = start_all(kinds, cfg)
    if isinstance(started, str):
        return [{**job.describe(), "server": kind, "error": started}
                for kind in kinds for job in jobs[kind]]  # fmt: skip
    log(", ".join(f"{server.label} on 127.0.0.1:{server.port}" for server in started)
        + " ready, ramped in turn")
    records: list[Json] = []
    total = cfg.paired_rounds
    try:
        # Round by round, every client count in each: a count's rounds spread over the run.
        for number in range(1, total + 1):
            for same_count in zip(*jobs.values(), strict=True):
                job = same_count[0]
                log(f"{job.scenario} x{job.clients} on {', '.join(kinds)}, in turn"
                    + (f", round {number} of {total}" if total > 1 else ""))
                paired = run_paired_job(list(zip(same_count, started, strict=True)))
                records.extend({**record, "round": number} for record in paired)
        add_stats(records, started)
    finally:
        stop_all(started)
    return records


def start_all(
    kinds: list[str], cfg: SuiteConfig, setting: Setting | None = None
) -> list[servers.Server] | str:
    """Starts each server; if one fails to start, stops those started and says why."""
    started: list[servers.Server] = []
    try:
        for kind in kinds:
            started.append(start(kind, cfg, setting))
    except servers.ServerError as exc:
        stop_all(started)
        log(f"{' and '.join(kinds)}: {exc}")
        return str(exc)
    return started


def stop_all(started: list[servers.Server]) -> None:
    for server in started:
        server.stop()


def add_stats(records: list[Json], started: list[servers.Server]) -> None:
    """Each otszmq server's counters, read once its jobs are done, with its last record."""
    for server in started:
        stats = servers.otszmq_stats(server)
        own = [record for record in records if record["server"] == server.label]
        if stats is not None and own:
            own[-1]["otszmq_stats"] = stats


def reusable(records: list[Json], cfg: SuiteConfig, setting: Setting) -> Json | None:
    """The side-by-side otszmq sa-broadcast record for this scaling setting, if there is one
    (of several rounds, the one with the median max rate)."""
    side_by_side = Setting(cfg.workers, cfg.ingest_processes, store="--store" not in cfg.serve_args)
    if setting != side_by_side:
        return None
    same = [
        record
        for record in records
        if record["scenario"] == "sa-broadcast"
        and record["server"] == "otszmq"
        and record["clients"] == cfg.scaling_clients
        and record.get("result") is not None
    ]
    return rounds.representative(same) if same else None


def run_suite(cfg: SuiteConfig, store_switch: bool) -> Json:
    started = datetime.now(UTC)
    began = time.monotonic()
    fd_limit = procstat.raise_fd_limit(servers.SERVER_NOFILE)
    kinds = list(cfg.servers) + list(cfg.peers)
    records: list[Json] = []
    for scenario in cfg.scenarios:
        together = [kind for kind in PAIRED if kind in kinds and scenario in PAIRED_SCENARIOS]
        for kind in kinds:
            if kind == NOSTORE and scenario not in NOSTORE_SCENARIOS:
                continue
            if len(together) > 1 and kind in together:
                if kind == together[0]:
                    records.extend(run_paired_on(together, scenario, cfg))
                continue
            records.extend(run_on(kind, jobs_for(cfg, scenario, kind), cfg))
    if cfg.scaling and "otszmq" in cfg.servers:
        for setting in scaling_settings(cfg, store_switch):
            same = reusable(records, cfg, setting)
            if same is not None:
                # The side-by-side run already measured this setting in this suite run.
                records.append({**same, "scaling": setting.describe(), "reused": True})
                continue
            jobs = jobs_for(cfg, "sa-broadcast", "otszmq", clients=(cfg.scaling_clients,))
            for record in run_on("otszmq", jobs, cfg, setting):
                records.append({**record, "scaling": setting.describe()})
    return {
        "benchmark": "otszmq.suite",
        "schema": 1,
        "started_at": started.isoformat(),
        "seconds": round(time.monotonic() - began, 1),
        "machine": procstat.machine_info(),
        "tree": servers.git_state(),
        "loadavg_at_end": list(os.getloadavg()),
        "fd_limit": fd_limit,
        "config": asdict(cfg),
        "command": " ".join(shlex.quote(arg) for arg in sys.argv),
        "runs": records,
    }


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(sys.argv[1:] if argv is None else argv)
    plots = not args.no_plots
    if plots and not report.plotting_available():
        print(report.MISSING_MATPLOTLIB, file=sys.stderr)
        return 2
    if args.report_only is not None:
        suite = json.loads(args.report_only.read_text(encoding="utf-8"))
    else:
        help_text = servers.serve_help() if "otszmq" in cfg.servers else ""
        bench_flags = servers.bench_serve_flags(help_text, cfg.serve_args)
        cfg = replace(cfg, serve_args=bench_flags + cfg.serve_args)
        suite = run_suite(cfg, store_switch="--store" in help_text)
        args.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = args.results_dir / f"suite-{stamp}.json"
        path.write_text(json.dumps(suite, indent=1), encoding="utf-8")
        log(f"results in {path}")
    written = report.write(suite, args.out, args.plots_dir if plots else None)
    log(f"wrote {args.out}" + (f" and {len(written)} plots in {args.plots_dir}" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
