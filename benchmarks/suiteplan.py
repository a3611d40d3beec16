"""What the suite runs: its settings, the job list per scenario and server, and running one job.

A job is one program run (ramp, load, storm or idle) as a subprocess against a started server; its
JSON result is kept whole, its stderr (the progress lines) is passed through to ours.
"""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from benchmarks.profiles import profile
from benchmarks.ramp import HALF_REPEATS
from benchmarks.servers import REPO_ROOT, Server

Json = dict[str, Any]
RAMP_SCENARIOS = ("sa-broadcast", "chat-dm", "mixed")
PROGRAMS = {
    **{scenario: "benchmarks.ramp" for scenario in RAMP_SCENARIOS},
    "takserver": "benchmarks.load",
    "connect-storm": "benchmarks.storm",
    "idle-hold": "benchmarks.idle",
}
STDERR_TAIL = 30
# --quick divides every ramp rate by this.
QUICK_RATE_DIVISOR = 10.0


# NOTE: finer than the tightest target judged from two ramps (store on within 10% of off): each
# max rate is up to `precision` below the true one, so a ratio of two is off by as much. One more
# rate per ramp than 15% needed, hence one more step.
RAMP_PRECISION = 0.05
RAMP_MAX_STEPS = 9
# NOTE: one paired ramp each moved by 5-30 % between two runs of an hour on this machine, which
# one ramp per server cannot tell from a 10 % target's margin; the median of three can.
PAIRED_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class SuiteConfig:
    scenarios: tuple[str, ...]
    servers: tuple[str, ...]
    peers: tuple[str, ...] = ()
    workers: int = 2
    ingest_processes: int = 1
    serve_args: tuple[str, ...] = ()
    clients: dict[str, tuple[int, ...]] = field(default_factory=dict)
    duration: float = 3.0
    warmup: float = 1.0
    max_steps: int = RAMP_MAX_STEPS
    precision: float = RAMP_PRECISION
    # How many times the paired ramps run (run_suite); the ratio targets take their median.
    paired_rounds: int = PAIRED_ROUNDS
    takserver_duration: float = 20.0
    idle_hold: float = 5.0
    scaling: bool = True
    scaling_clients: int = 50
    scaling_workers: tuple[int, ...] = (1, 2, 4)
    scaling_ingest: tuple[int, ...] = (1, 2)
    # One more scaling row with `otszmq serve --store false` (when serve has the switch).
    store_row: bool = True
    quick: bool = False
    # Where the peers' run dirs (and venvs) live: DIR/NAME.
    peers_dir: str = ""

    def quickened(self) -> SuiteConfig:
        """--quick: 3 clients, sub-second windows, 2 ramp steps; proves the suite runs."""
        return replace(
            self,
            clients={name: (3,) for name in self.clients},
            duration=0.5,
            warmup=0.2,
            max_steps=2,
            takserver_duration=1.0,
            idle_hold=0.3,
            scaling_clients=3,
            scaling_workers=(1,),
            scaling_ingest=(1,),
        )


@dataclass(frozen=True, slots=True)
class Job:
    scenario: str
    clients: int
    program: str
    args: tuple[str, ...]
    timeout: float
    # Why the server runs this scenario with fewer clients than asked ("" when it does not).
    note: str = ""
    # Why the server does not run this scenario at all; a job with a reason is not run.
    skipped: str = ""
    # What a reader of the scenario's table must know about this server's row.
    caveat: str = ""

    def flag(self, name: str) -> str:
        """The value of one of its program's flags (the last, if given more than once)."""
        values = [value for key, value in itertools.pairwise(self.args) if key == name]
        if not values:
            raise KeyError(f"{self.program} job has no {name}")
        return values[-1]

    def describe(self) -> Json:
        described: Json = {
            "scenario": self.scenario, "clients": self.clients, "program": self.program
        }
        if self.note:
            described["note"] = self.note
        if self.skipped:
            described["skipped"] = self.skipped
        if self.caveat:
            described["caveat"] = self.caveat
        return described


@dataclass(frozen=True, slots=True)
class Setting:
    """One otszmq configuration of the scaling table."""

    workers: int
    ingest: int
    store: bool = True

    def label(self) -> str:
        return f"otszmq w{self.workers} i{self.ingest}" + ("" if self.store else " store off")

    def serve_args(self) -> tuple[str, ...]:
        return () if self.store else ("--store", "false")

    def describe(self) -> Json:
        return {"workers": self.workers, "ingest": self.ingest, "store": self.store}


def scaling_settings(cfg: SuiteConfig, store_switch: bool) -> list[Setting]:
    """Every worker count with one ingest, every ingest count with the side-by-side worker count
    (run_suite reuses the side-by-side run for that one), and the side-by-side setting with the
    store off when `store_switch` (serve has `--store`)."""
    settings = [Setting(workers, 1) for workers in cfg.scaling_workers]
    settings += [Setting(cfg.workers, ingest) for ingest in cfg.scaling_ingest if ingest != 1]
    if cfg.store_row and store_switch:
        settings.append(Setting(cfg.workers, cfg.ingest_processes, store=False))
    return list(dict.fromkeys(settings))


def jobs_for(
    cfg: SuiteConfig, scenario: str, server: str, clients: tuple[int, ...] | None = None
) -> list[Job]:
    """The jobs of one scenario on one server, one per client count; a server's limit
    (benchmarks.profiles) lowers a count, or turns the job into a skipped one that says why."""
    counts = clients if clients is not None else cfg.clients.get(scenario, ())
    drives = profile(server)
    limit = drives.limits.get(scenario)
    caveat = drives.caveats.get(scenario, "")
    if limit is not None and limit.clients is None:
        program = PROGRAMS[scenario]
        return [Job(scenario, count, program, (), 0, skipped=limit.reason) for count in counts]
    cap = None if limit is None else limit.clients
    asked: dict[int, list[int]] = {}
    for count in counts:
        asked.setdefault(count if cap is None else min(count, cap), []).append(count)
    jobs = []
    for count, wanted in asked.items():
        note = ""
        if limit is not None and wanted != [count]:
            note = f"{', '.join(map(str, wanted))} clients asked, {count} run: {limit.reason}"
        jobs.append(replace(_job(cfg, scenario, server, count), note=note, caveat=caveat))
    return jobs


def _job(cfg: SuiteConfig, scenario: str, server: str, clients: int) -> Job:
    drives = profile(server)
    step_s = cfg.warmup + cfg.duration + 4.0 + drives.extra_step_seconds
    common = ("--scenario", scenario, "--clients", str(clients), "--json")
    args: tuple[str, ...]
    if scenario in RAMP_SCENARIOS:
        scale = 1 / QUICK_RATE_DIVISOR if cfg.quick else 1.0
        steps = min(cfg.max_steps, drives.max_steps or cfg.max_steps)
        args = (
            *common,
            "--start-rate", f"{drives.start_rate(clients) * scale:g}",
            *drives.ramp_args(scale),
            "--duration", f"{cfg.duration:g}",
            "--warmup", f"{cfg.warmup:g}", "--max-steps", str(steps),
            "--precision", f"{cfg.precision:g}", "--settle-timeout", "10",
            *drives.load_args(clients),
        )  # fmt: skip
        if cfg.quick:
            args += ("--drain", "0.5", "--pause", "0.1")
        # Each rate may be run twice (a failure is confirmed), plus the steps at half the max.
        timeout = 120 + (2 * steps + HALF_REPEATS) * step_s
        return Job(scenario, clients, PROGRAMS[scenario], args, timeout)
    if scenario == "takserver":
        # NOTE: SA repeats every 2 s in the settle: at 0.2 s, 500 clients would offer 2,500 SA/s
        # (1.25 M deliveries/s) before the measured load even starts.
        args = (
            *common,
            "--duration", f"{cfg.takserver_duration:g}", "--warmup", "0.2" if cfg.quick else "2",
            "--drain", "1" if cfg.quick else "3", "--settle-timeout", "3" if cfg.quick else "20",
            "--announce-every", "2",
        )  # fmt: skip
        args += drives.load_args(clients)
        if cfg.quick:
            args += ("--ping-every", "0.3")
        timeout = 120 + cfg.takserver_duration + drives.extra_step_seconds
        return Job(scenario, clients, PROGRAMS[scenario], args, timeout)
    if scenario == "connect-storm":
        wait = "0.5" if cfg.quick else "10"
        args = (*common, "--announce-wait", wait, "--storm-timeout", "5" if cfg.quick else "60")
        return Job(scenario, clients, PROGRAMS[scenario], args, 180)
    hold = cfg.idle_hold if cfg.quick else max(cfg.idle_hold, drives.idle_hold_min)
    args = (*common, "--hold", f"{hold:g}", "--connect-timeout", "20")
    if cfg.quick:
        args += ("--after-close", "0.2")
    return Job(scenario, clients, PROGRAMS[scenario], args, 300 + hold)


def _pump(stream: IO[str], tail: list[str]) -> None:
    """Passes a child's progress lines through to our stderr, keeping the last few."""
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line.rstrip())
        del tail[:-STDERR_TAIL]


def run_job(job: Job, server: Server) -> Json:
    """Runs `job`'s program against `server`; the record of the run, its JSON result included."""
    argv = _argv(job, server)
    if job.program == "benchmarks.ramp" and server.clean_command:
        argv += ["--between-steps", shlex.join(server.clean_command)]
    code, out, seconds, tail = _launch(argv, job.timeout)
    result, problem = _parse_result(out)
    return _record(job, server, argv, code, seconds, result, problem, tail)


def run_paired_job(pairs: Sequence[tuple[Job, Server]]) -> list[Json]:
    """Runs one ramp job (a scenario and client count) against several servers at once, a step
    of each in turn (benchmarks.ramp --paired-port), each with its own job's start and top rate;
    a record per server, as run_job would give, each naming the others in `paired_with`."""
    (job, first), others = pairs[0], pairs[1:]
    assert others and all(j.program == "benchmarks.ramp" and not s.clean_command for j, s in pairs)
    # NOTE: one command line serves them all: the jobs may differ in their rates, nothing else.
    assert len({_without_rates(j.args) for j, _ in pairs}) == 1, [j.args for j, _ in pairs]
    argv = _argv(job, first)
    for other_job, server in others:
        argv += [
            "--paired-port", str(server.port),
            "--paired-server-pids", ",".join(str(pid) for pid in server.root_pids),
            "--paired-start-rate", other_job.flag("--start-rate"),
            "--paired-max-rate", other_job.flag("--max-rate"),
        ]  # fmt: skip
    # All ramps in one program, each step run once: the time of one ramp per server.
    code, out, seconds, tail = _launch(argv, sum(j.timeout for j, _ in pairs))
    result, problem = _parse_result(out)
    ramps = result.get("ramps") if result is not None else None
    if result is not None and (not isinstance(ramps, list) or len(ramps) != len(pairs)):
        result, problem = None, f"its JSON has no 'ramps' list of {len(pairs)}"
    records = []
    for index, (own_job, server) in enumerate(pairs):
        own = ramps[index] if result is not None and ramps is not None else None
        record = _record(own_job, server, argv, code, seconds, own, problem, tail)
        others_labels = [other.label for _, other in pairs if other is not server]
        records.append({**record, "paired_with": others_labels})
    return records


PAIRED_RATE_FLAGS = ("--start-rate", "--max-rate")


def _without_rates(args: tuple[str, ...]) -> tuple[str, ...]:
    """A ramp job's flags less the rate flags that each paired server gets its own of."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in PAIRED_RATE_FLAGS:
            skip = True
        else:
            kept.append(arg)
    return tuple(kept)


def _argv(job: Job, server: Server) -> list[str]:
    # The roots and --server-tree: the program finds their descendants at every sample, so the
    # per-client forks of a forking server (OpenTAKServer) are measured too.
    pids = ",".join(str(pid) for pid in server.root_pids)
    return [
        sys.executable, "-m", job.program, *job.args,
        "--port", str(server.port), "--server-pids", pids, "--server-tree",
    ]  # fmt: skip


def _launch(argv: list[str], timeout: float) -> tuple[int, str, float, list[str]]:
    """Runs a benchmark program, passing its progress through; exit status, stdout, seconds
    and the last lines of its stderr. Killed after `timeout` seconds."""
    began = time.monotonic()
    tail: list[str] = []
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    pump = threading.Thread(target=_pump, args=(proc.stderr, tail), daemon=True)
    pump.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read()
        code = proc.wait()
    finally:
        timer.cancel()
        pump.join(5)
    return code, out, round(time.monotonic() - began, 1), tail


def _parse_result(out: str) -> tuple[Json | None, str]:
    """The program's JSON object, or None and what is wrong with its stdout."""
    if not out.strip():
        return None, "no JSON on its stdout"
    try:
        return json_loads(out), ""
    except ValueError as exc:
        return None, (
            f"its stdout ({len(out)} characters) is not a JSON object: {exc}; "
            f"it began {out[:60]!r}"
        )


def _record(
    job: Job, server: Server, argv: list[str], code: int, seconds: float, result: Json | None,
    problem: str, tail: list[str],
) -> Json:
    record: Json = {
        **job.describe(),
        "server": server.label,
        "server_kind": server.kind,
        "settings": server.settings,
        "argv": argv[1:],
        "returncode": code,
        "seconds": seconds,
        "result": result,
    }
    if code != 0 or result is None:
        lines = tail[-10:]
        if code == 0:
            # NOTE: the last line is what the report shows; a program's own last line may
            # well be its success summary.
            lines.append(f"exit status 0, but {problem}")
        record["error"] = "\n".join(lines) or f"exit status {code}"
    return record


def json_loads(text: str) -> Json:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
