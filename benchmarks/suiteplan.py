"""What the suite runs: its settings, the job list per scenario and server, and running one job.

A job is one program run (ramp, load, storm or idle) as a subprocess against a started server; its
JSON result is kept whole, its stderr (the progress lines) is passed through to ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import IO, Any

from benchmarks.servers import REPO_ROOT, Server

Json = dict[str, Any]
# Where a ramp starts, events/s, by server: close enough below each one's ceiling that doubling
# reaches it in a few steps (measured: relay tens of thousands, taky ~2k, OpenTAKServer ~50).
START_RATES = {"relay": 4000.0, "otszmq": 1000.0, "taky": 500.0, "ots": 25.0}
RAMP_SCENARIOS = ("sa-broadcast", "chat-dm", "mixed")
STDERR_TAIL = 30


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
    max_steps: int = 8
    precision: float = 0.15
    takserver_duration: float = 20.0
    idle_hold: float = 5.0
    scaling: bool = True
    scaling_clients: int = 50
    scaling_workers: tuple[int, ...] = (1, 2, 4)
    scaling_ingest: tuple[int, ...] = (1, 2)
    # One more scaling row with `otszmq serve --store false` (when serve has the switch).
    store_row: bool = True
    quick: bool = False

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

    def describe(self) -> Json:
        return {"scenario": self.scenario, "clients": self.clients, "program": self.program}


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
    counts = clients if clients is not None else cfg.clients.get(scenario, ())
    return [_job(cfg, scenario, server, count) for count in counts]


def _job(cfg: SuiteConfig, scenario: str, server: str, clients: int) -> Job:
    step_s = cfg.warmup + cfg.duration + 4.0
    common = ("--scenario", scenario, "--clients", str(clients), "--json")
    args: tuple[str, ...]
    if scenario in RAMP_SCENARIOS:
        start = START_RATES.get(server, 1000.0) / (10 if cfg.quick else 1)
        args = (
            *common,
            "--start-rate", f"{start:g}", "--duration", f"{cfg.duration:g}",
            "--warmup", f"{cfg.warmup:g}", "--max-steps", str(cfg.max_steps),
            "--precision", f"{cfg.precision:g}", "--settle-timeout", "10",
        )  # fmt: skip
        if cfg.quick:
            args += ("--drain", "0.5", "--pause", "0.1")
        return Job(scenario, clients, "benchmarks.ramp", args, 120 + (cfg.max_steps + 1) * step_s)
    if scenario == "takserver":
        # NOTE: SA repeats every 2 s in the settle: at 0.2 s, 500 clients would offer 2,500 SA/s
        # (1.25 M deliveries/s) before the measured load even starts.
        args = (
            *common,
            "--duration", f"{cfg.takserver_duration:g}", "--warmup", "0.2" if cfg.quick else "2",
            "--drain", "1" if cfg.quick else "3", "--settle-timeout", "3" if cfg.quick else "20",
            "--announce-every", "2",
        )  # fmt: skip
        if cfg.quick:
            args += ("--ping-every", "0.3")
        return Job(scenario, clients, "benchmarks.load", args, 120 + cfg.takserver_duration)
    if scenario == "connect-storm":
        wait = "0.5" if cfg.quick else "10"
        args = (*common, "--announce-wait", wait, "--storm-timeout", "5" if cfg.quick else "60")
        return Job(scenario, clients, "benchmarks.storm", args, 180)
    args = (*common, "--hold", f"{cfg.idle_hold:g}", "--connect-timeout", "20")
    if cfg.quick:
        args += ("--after-close", "0.2")
    return Job(scenario, clients, "benchmarks.idle", args, 300)


def _pump(stream: IO[str], tail: list[str]) -> None:
    """Passes a child's progress lines through to our stderr, keeping the last few."""
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line.rstrip())
        del tail[:-STDERR_TAIL]


def run_job(job: Job, server: Server) -> Json:
    pids = ",".join(str(pid) for pid in server.pids())
    argv = [
        sys.executable, "-m", job.program, *job.args, *server.load_args,
        "--port", str(server.port), "--server-pids", pids,
    ]  # fmt: skip
    began = time.monotonic()
    tail: list[str] = []
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    pump = threading.Thread(target=_pump, args=(proc.stderr, tail), daemon=True)
    pump.start()
    timer = threading.Timer(job.timeout, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read()
        code = proc.wait()
    finally:
        timer.cancel()
        pump.join(5)
    record: Json = {
        **job.describe(),
        "server": server.label,
        "server_kind": server.kind,
        "settings": server.settings,
        "argv": argv[1:],
        "returncode": code,
        "seconds": round(time.monotonic() - began, 1),
    }
    try:
        record["result"] = json_loads(out) if out.strip() else None
    except ValueError:
        record["result"] = None
    if code != 0 or record["result"] is None:
        record["error"] = "\n".join(tail[-10:]) or f"exit status {code}"
    return record


def json_loads(text: str) -> Json:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
