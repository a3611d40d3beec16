"""Ramp: the max sustainable rate of a server under a rate scenario, by repeated load runs.

    python -m benchmarks.ramp --port 8088 --clients 50 --start-rate 2000 --duration 3 --json

A step is one full `benchmarks.load` run at one offered rate (fresh connections, fresh run id). It
passes when at least 99.9% of the owed deliveries arrived, p99 latency is under 1 s, and at least
99% of the offered rate was really sent (a server that stops reading holds the senders back). The
search doubles the rate from --start-rate until a step fails (halves it while the first steps
fail), then bisects (geometric midpoint) between the best pass and the lowest failure until they
are within --precision of each other or --max-steps is used up. The max sustainable rate is the
best passing rate. Unless --no-half, --half-repeats more steps at half that rate give the latency
of a server with headroom: the one with the median p99 stands for them (`at_half`), all are kept
(`at_half.repeats`). Every step's full result is in the JSON on stdout; a line per step on stderr.

For a server with a cliff rather than a slope (taky, OpenTAKServer), `--end-on-collapse RATIO` ends
the search at a step that delivers less than RATIO of what it owed once a lower rate has passed:
every higher rate collapses the same way, and each collapse leaves a backlog the server works on
long after. `--between-steps COMMAND` runs a command after every step (OpenTAKServer's
`benchmarks/peers/ots/clean.sh RUN_DIR`, which waits out its queue and deletes stale queues).

A rate fails only when a second attempt at it fails too (`--confirm-failures`), for every server
alike: on a shared 2-core VM one 3 s window can lose to a stall that is not the server's (other
processes, CPU stolen by the hypervisor), and the search would then bisect below the server's
real limit. A collapse (see above) is not run again: it is no borderline. All attempts are kept,
the last one counts. Each step says what limited it (`limited_by`): the generator (its core
saturated), the cores (the generator could not keep its pace while the server took the rest of
the 2 cores), other processes, or the server.

`--paired-port PORT` ramps another server too (repeat it for more), a step of each in turn, the
order reversed every round (`run_paired`): maxima whose ratio is the figure (otszmq against the
relay, otszmq with its store on and off) then meet the same minutes of a machine whose speed
drifts by tens of percent within an hour. Each server may have its own start and top rate
(`--paired-start-rate`, `--paired-max-rate`, in the order of the ports): the relay's ramp starts
where the relay ends, far above otszmq's.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import math
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import uvloop

from benchmarks import load, procstat
from benchmarks.jsonout import print_json
from benchmarks.options import (
    LoadConfig,
    add_load_flags,
    is_rate_scenario,
    load_config_from,
    pids_from,
)
from benchmarks.tls import TlsConfigError

Json = dict[str, Any]
MIN_DELIVERY_RATIO = 0.999
MAX_P99_MS = 1000.0
MIN_SENT_RATIO = 0.99
# After an overloaded step a server may still be working through queued events; give it time so
# the next step does not inherit that backlog.
PAUSE_AFTER_FAIL_S = 3.0
GENERATOR_SATURATED_PERCENT = 90.0
# Other processes and steal using this much CPU (100 = a core) during a step make it "disturbed".
DISTURBED_OTHER_PERCENT = 25.0
HALF_REPEATS = 3


@dataclass(frozen=True, slots=True)
class RampConfig:
    load: LoadConfig
    start_rate: float = 1000.0
    max_rate: float = 200_000.0
    min_rate: float = 10.0
    max_steps: int = 10
    precision: float = 0.1
    half: bool = True
    # Steps at half the max rate; the one with the median p99 stands for them.
    half_repeats: int = HALF_REPEATS
    pause: float = 1.0
    # Attempts more at a rate that failed before it counts as failed.
    confirm_failures: int = 1
    # A failing step that delivered less than this share of what it owed ends the search once a
    # lower rate has passed; 0: never.
    end_on_collapse: float = 0.0
    # Run after every step, split like a shell command line (no shell); empty: nothing.
    between_steps: str = ""


def judge(result: Json) -> list[str]:
    """Why a step is not sustainable; empty when it passed."""
    reasons: list[str] = []
    ratio = result["delivery"]["delivery_ratio"]
    if ratio is None or ratio < MIN_DELIVERY_RATIO:
        reasons.append(f"delivered {ratio if ratio is None else f'{ratio:.4%}'} < 99.9%")
    p99 = result["latency_ms"]["p99"]
    if p99 is None or p99 >= MAX_P99_MS:
        reasons.append(f"p99 {p99} ms >= {MAX_P99_MS:.0f} ms")
    sent, offered = result["send"]["sent_rate"] or 0.0, result["send"]["offered_rate"]
    if sent < MIN_SENT_RATIO * offered:
        reasons.append(f"sent {sent:.0f}/s < 99% of {offered:.0f}/s")
    return reasons


def limited_by(result: Json) -> str:
    """What most likely set the limit in a step: generator, cores, other processes or server.

    NOTE: on loopback the kernel does much of a delivery in the sender's context, so the server's
    CPU% understates its share; this is a hint for reading a table, not a verdict.
    """
    if (result["generator"]["cpu_percent"] or 0.0) >= GENERATOR_SATURATED_PERCENT:
        return "generator"
    if disturbed(result):
        return "other processes"
    if result["send"]["skipped_burst"] > 0:
        return "cores"
    return "server"


def disturbed(result: Json) -> bool:
    """Other processes, or the hypervisor (steal), took a sizeable share of the CPU."""
    system = result["system"]
    taken = (system.get("other_processes_cpu_percent") or 0.0) + (
        system.get("cpu_steal_percent") or 0.0
    )
    return taken >= DISTURBED_OTHER_PERCENT


def row(result: Json) -> Json:
    """The figures of one step that tables and plots use."""
    server = result.get("server") or {}
    return {
        "offered_rate": result["send"]["offered_rate"],
        "sent_rate": result["send"]["sent_rate"],
        "delivery_ratio": result["delivery"]["delivery_ratio"],
        "deliveries_per_s": result["delivery"]["deliveries_per_s"],
        "misdelivered": result["delivery"].get("misdelivered", 0),
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "max_ms": result["latency_ms"]["max"],
        "server_cpu_percent": server.get("cpu_percent_total"),
        "server_rss_kb": server.get("rss_kb_total"),
        "server_pss_kb": server.get("pss_kb_total"),
        "server_processes": server.get("processes"),
        "generator_cpu_percent": result["generator"]["cpu_percent"],
        "server_runqueue_wait_ms_per_s": server.get("runqueue_wait_ms_per_s_total"),
        "generator_runqueue_wait_ms_per_s": result["generator"].get("runqueue_wait_ms_per_s"),
        "system_busy_percent": result["system"]["cpu_busy_percent"],
        "system_steal_percent": result["system"].get("cpu_steal_percent"),
        "other_processes_cpu_percent": result["system"].get("other_processes_cpu_percent"),
        "limited_by": limited_by(result),
        "errors": len(result["errors"]),
    }


def _round3(value: float) -> float:
    """Three significant figures: rates that read well in a table."""
    digits = 2 - math.floor(math.log10(abs(value))) if value else 0
    return float(round(value, digits))


class Search:
    """Doubling, then bisection; `next_rate` is None when the search is done."""

    def __init__(self, cfg: RampConfig) -> None:
        self.cfg = cfg
        self.best: float | None = None  # highest passing rate
        self.lowest_fail: float | None = None

    def record(self, rate: float, passed: bool) -> None:
        if passed:
            self.best = rate if self.best is None else max(self.best, rate)
        else:
            self.lowest_fail = rate if self.lowest_fail is None else min(self.lowest_fail, rate)

    def next_rate(self, rate: float) -> float | None:
        cfg, best, fail = self.cfg, self.best, self.lowest_fail
        if fail is None:  # still climbing
            if best is not None and best >= cfg.max_rate:
                return None
            return min(cfg.max_rate, _round3(rate * 2))
        if best is None:  # still descending
            lower = _round3(rate / 2)
            return lower if lower >= cfg.min_rate else None
        if fail <= best * (1 + cfg.precision):
            return None
        middle = _round3(math.sqrt(best * fail))
        return middle if best < middle < fail else None


def progress(text: str, final: bool) -> None:
    """One line per step on stderr; on a terminal the running step is shown and overwritten."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
    elif final:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def describe(number: int, result: Json, reasons: list[str], who: str = "") -> str:
    figures = row(result)
    ratio = figures["delivery_ratio"]
    verdict = "PASS" if not reasons else "FAIL: " + "; ".join(reasons)
    bound = f" [limit: {figures['limited_by']}]" if reasons else ""
    if figures["other_processes_cpu_percent"]:
        bound += f" [others {figures['other_processes_cpu_percent']:.0f}% CPU]"
    if figures["misdelivered"]:
        bound += f" [misdelivered {figures['misdelivered']}]"
    return (
        f"  {who}step {number:2d}  {figures['offered_rate']:>9.0f}/s  "
        f"sent {figures['sent_rate']}/s  "
        f"delivered {'n/a' if ratio is None else f'{ratio:.3%}'}  "
        f"{figures['deliveries_per_s']} deliveries/s  p50 {figures['p50_ms']} "
        f"p99 {figures['p99_ms']} ms  {verdict}{bound}"
    )


IDLE_CPU_CORES = 0.15  # the server counts as drained below this much CPU...
IDLE_WINDOW_S = 0.5  # ...over a window this long
IDLE_TIMEOUT_S = 60.0


def wait_until_idle(cfg: LoadConfig) -> float:
    """Wait until the server has worked off what the last step left queued; seconds waited.

    NOTE: an overloaded step leaves seconds of buffered events in the server; without
    this the next step measures that backlog, not its own rate. Bounded by IDLE_TIMEOUT_S.
    """
    pids = procstat.server_processes(cfg.server_pids, cfg.server_tree)
    started = time.monotonic()
    while pids and time.monotonic() - started < IDLE_TIMEOUT_S:
        before = [procstat.read_proc(pid) for pid in pids]
        time.sleep(IDLE_WINDOW_S)
        after = [procstat.read_proc(pid) for pid in pids]
        used = sum(b2.cpu_seconds - b1.cpu_seconds
                   for b1, b2 in zip(before, after, strict=True) if b1 and b2)
        if used / IDLE_WINDOW_S < IDLE_CPU_CORES:
            break
    return time.monotonic() - started


BETWEEN_STEPS_TIMEOUT_S = 600.0


def run_between_steps(command: str) -> Json | None:
    """Runs --between-steps; what it did, for the step's record (None without one)."""
    if not command:
        return None
    began = time.monotonic()
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True,
            timeout=BETWEEN_STEPS_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        progress(f"  --between-steps failed: {exc}", True)
        return {"returncode": None, "seconds": round(time.monotonic() - began, 1),
                "error": str(exc)}  # fmt: skip
    if done.returncode != 0:
        progress(f"  --between-steps exited {done.returncode}: {done.stderr.strip()[-300:]}", True)
    return {
        "returncode": done.returncode,
        "seconds": round(time.monotonic() - began, 1),
        "output": (done.stdout + done.stderr).strip()[-500:],
    }


def collapsed(cfg: RampConfig, done: Json, search: Search) -> bool:
    """A step far below the delivery criterion above a rate that passed: the search ends."""
    ratio = done["row"]["delivery_ratio"]
    return (
        cfg.end_on_collapse > 0
        and search.best is not None
        and (ratio is None or ratio < cfg.end_on_collapse)
    )


def step(cfg: RampConfig, rate: float) -> Json:
    return dict(uvloop.run(load.run(replace(cfg.load, rate=rate))))


def attempt(cfg: RampConfig, rate: float, number: int, who: str = "") -> Json:
    """One load run at `rate`, judged, with --between-steps after it; `who` starts its lines."""
    progress(f"  {who}step {number:2d}  {rate:>9.0f}/s  running...", False)
    result = step(cfg, rate)
    reasons = judge(result)
    progress(describe(number, result, reasons, who), True)
    return {"rate": rate, "passed": not reasons, "reasons": reasons, "row": row(result),
            "result": result, "between_steps": run_between_steps(cfg.between_steps)}


class Ramp:
    """One server's search, a step at a time: `run` drives one alone, `run_paired` several in
    turn."""

    def __init__(self, cfg: RampConfig, *, paired: bool = False) -> None:
        self.cfg = cfg
        # Paired: the other server's next step must not meet this one's backlog, and each
        # line of the progress says whose step it is.
        self.settle_after_last = paired
        self.who = f":{cfg.load.port} " if paired else ""
        self.label = f"{cfg.load.scenario} x{cfg.load.clients} on {cfg.load.host}:{cfg.load.port}"
        self.started_at = datetime.now(UTC)
        self.search = Search(cfg)
        self.steps: list[Json] = []
        self.rate: float | None = cfg.start_rate  # the next rate to try; None: search done
        self.rates = 0  # rates searched
        self.attempts = 0  # attempts at the current rate
        self.half_runs: list[Json] = []
        progress(f"ramp {self.label}: max {cfg.max_steps} steps of ~{_step_seconds(cfg):.0f} s",
                 True)

    @property
    def searching(self) -> bool:
        return self.rate is not None and self.rates < self.cfg.max_steps

    def advance(self) -> None:
        """One attempt at the current rate, and what it means for the search."""
        cfg, search = self.cfg, self.search
        assert self.rate is not None
        rate = self.rate
        self.steps.append(attempt(cfg, rate, len(self.steps) + 1, self.who))
        done = self.steps[-1]
        reasons = done["reasons"]
        self.attempts += 1
        if reasons and self.attempts <= cfg.confirm_failures and not collapsed(cfg, done, search):
            done["superseded"] = True
            progress(f"  {self.who}failed: the same rate once more, to confirm", True)
            time.sleep(PAUSE_AFTER_FAIL_S)
            done["idle_wait_s"] = round(wait_until_idle(cfg.load), 2)
            return
        self.rates, self.attempts = self.rates + 1, 0
        search.record(rate, not reasons)
        if reasons and collapsed(cfg, done, search):
            done["ended_search"] = f"delivered < {cfg.end_on_collapse:.0%} (--end-on-collapse)"
            progress(f"  {self.who}collapsed above a passing rate: {done['ended_search']}", True)
            self.rate = None
        else:
            self.rate = search.next_rate(rate)
        if self.searching or self.settle_after_last:
            time.sleep(cfg.pause if not reasons else max(cfg.pause, PAUSE_AFTER_FAIL_S))
            done["idle_wait_s"] = round(wait_until_idle(cfg.load), 2)

    @property
    def half_rate(self) -> float | None:
        """The rate of the steps at half the maximum; None if there are none to run."""
        if not self.cfg.half or self.search.best is None:
            return None
        return _round3(self.search.best / 2)

    def half_step(self) -> None:
        """One step at half the maximum (half_rate must not be None)."""
        cfg, rate = self.cfg, self.half_rate
        assert rate is not None
        if not self.settle_after_last:  # else it went idle after its last step already
            wait_until_idle(cfg.load)
        progress(f"  {self.who}half     {rate:>9.0f}/s  running...", False)
        result = step(cfg, rate)
        self.half_runs.append({
            "rate": rate, "reasons": judge(result), "row": row(result), "result": result,
            "between_steps": run_between_steps(cfg.between_steps),
        })  # fmt: skip
        line = describe(0, result, self.half_runs[-1]["reasons"], self.who)
        progress(line.replace("step  0", "half   ", 1), True)
        if self.settle_after_last:
            wait_until_idle(cfg.load)

    def result(self) -> Json:
        """The ramp's JSON (see the module docstring)."""
        cfg, search, steps = self.cfg, self.search, self.steps
        at_half = None
        if self.half_runs:
            # NOTE: a 3 s window's p99 is decided by its slowest 30 ms of traffic, so one window
            # reports whether a stall happened to fall in it as much as how the server runs; the
            # median of a few is the server's latency with headroom.
            by_p99 = sorted(self.half_runs, key=lambda run: math.inf if run["row"]["p99_ms"] is None
                            else run["row"]["p99_ms"])  # fmt: skip
            at_half = {**by_p99[(len(by_p99) - 1) // 2],
                       "repeats": [run["row"] for run in self.half_runs]}
        failing = [
            s for s in steps
            if not s["passed"] and s["rate"] == search.lowest_fail and not s.get("superseded")
        ]
        progress(
            f"ramp {self.label}: max sustainable rate {search.best}/s"
            + (f" (next failed at {search.lowest_fail}/s)" if search.lowest_fail else ""),
            True,
        )
        return {
            "benchmark": "otszmq.ramp",
            "schema": 1,
            "scenario": cfg.load.scenario,
            "started_at": self.started_at.isoformat(),
            "machine": procstat.machine_info(),
            "config": {
                **{key: value for key, value in asdict(cfg).items() if key != "load"},
                "load": steps[0]["result"]["config"] if steps else None,
            },
            "criteria": {
                "min_delivery_ratio": MIN_DELIVERY_RATIO,
                "max_p99_ms": MAX_P99_MS,
                "min_sent_ratio": MIN_SENT_RATIO,
            },
            "max_sustainable_rate": search.best,
            "lowest_failing_rate": search.lowest_fail,
            "failure_limited_by": failing[-1]["row"]["limited_by"] if failing else None,
            "at_max": next(
                (s["row"] for s in steps if s["rate"] == search.best and s["passed"]), None
            ),
            "at_half": at_half,
            "steps": steps,
        }


def run(cfg: RampConfig) -> Json:
    ramp = Ramp(cfg)
    while ramp.searching:
        ramp.advance()
    if ramp.half_rate is not None:
        for _ in range(cfg.half_repeats):
            ramp.half_step()
    return ramp.result()


def run_paired(cfgs: Sequence[RampConfig]) -> list[Json]:
    """Ramps of several servers, a step of each in turn, the order reversed every round.

    Why: this machine's speed drifts by tens of percent within an hour, so two maxima measured
    one ramp after the other compare the two stretches of time as much as the two servers. In
    turn, each server's steps meet the same minutes; each search still goes its own way.
    """
    ramps = [Ramp(cfg, paired=True) for cfg in cfgs]
    order = list(ramps)
    while any(ramp.searching for ramp in ramps):
        for ramp in order:
            if ramp.searching:
                ramp.advance()
        order.reverse()
    repeats = max(cfg.half_repeats for cfg in cfgs)
    for number in range(repeats):
        for ramp in order:
            if ramp.half_rate is not None and number < ramp.cfg.half_repeats:
                ramp.half_step()
        order.reverse()
    return [ramp.result() for ramp in ramps]


def _step_seconds(cfg: RampConfig) -> float:
    return cfg.load.warmup + cfg.load.duration + 1.0 + cfg.pause


def parse_args(argv: list[str]) -> tuple[list[RampConfig], bool]:
    parser = argparse.ArgumentParser(prog="benchmarks.ramp", description=__doc__.split("\n")[0])
    add_load_flags(parser)
    add = parser.add_argument
    add("--start-rate", type=float, default=None, help="first step, events/s (default --rate)")
    add("--max-rate", type=float, default=200_000.0, help="never offer more, events/s")
    add("--max-steps", type=int, default=10, help="steps in the search (the half step is extra)")
    add("--precision", type=float, default=0.1, help="stop when fail <= pass x (1 + this)")
    add("--pause", type=float, default=1.0, help="between steps, s")
    add("--no-half", action="store_true", help="skip the steps at half the max rate")
    add("--half-repeats", type=int, default=HALF_REPEATS,
        help="steps at half the max rate; the one with the median p99 stands for them")
    add("--confirm-failures", type=int, default=1,
        help="attempts more at a failing rate before it counts as failed")
    add("--min-rate", type=float, default=10.0,
        help="while the first steps fail the rate halves, but never below this, events/s")
    add("--end-on-collapse", type=float, default=0.0, metavar="RATIO",
        help="end the search at a failing step that delivered less than RATIO (0..1) of what it "
             "owed, once a lower rate has passed (a server with a cliff); 0: never (default)")
    add("--between-steps", default="", metavar="COMMAND",
        help="run COMMAND (split like a shell line, no shell) after every step, e.g. a peer's "
             "clean-up script; its exit status and time are kept with the step")
    add("--paired-port", type=int, action="append", default=[], metavar="PORT",
        help="ramp the server on this port too (repeat for more), a step of each in turn (the "
             "order reversed every round): maxima that met the same minutes of a drifting "
             "machine. The JSON is then {'ramps': [this port's, each paired port's in order]}")
    add("--paired-server-pids", action="append", default=[], metavar="PIDS",
        help="each paired server's --server-pids, in the order of the ports (--server-tree "
             "applies to all)")
    add("--paired-start-rate", type=float, action="append", default=[], metavar="RATE",
        help="each paired server's --start-rate, in the order of the ports (default: ours)")
    add("--paired-max-rate", type=float, action="append", default=[], metavar="RATE",
        help="each paired server's --max-rate, in the order of the ports (default: ours)")
    args = parser.parse_args(argv)
    loaded = load_config_from(parser, args)
    if not is_rate_scenario(loaded.scenario):
        parser.error(f"--scenario: {loaded.scenario} has no rate to ramp")
    start = args.start_rate if args.start_rate is not None else loaded.rate
    if not 0 < start <= args.max_rate:
        parser.error("--start-rate: must be > 0 and <= --max-rate")
    if args.max_steps < 1 or args.precision <= 0 or args.pause < 0 or args.confirm_failures < 0:
        parser.error("--max-steps must be >= 1, --precision > 0, --pause, --confirm-failures >= 0")
    if args.half_repeats < 1:
        parser.error("--half-repeats: must be >= 1 (--no-half skips the half-rate steps)")
    if not 0 < args.min_rate <= start:
        parser.error("--min-rate: must be > 0 and <= --start-rate")
    if not 0 <= args.end_on_collapse <= 1:
        parser.error("--end-on-collapse: must be 0..1")
    try:
        shlex.split(args.between_steps)
    except ValueError as exc:
        parser.error(f"--between-steps: {exc}")
    cfg = RampConfig(
        load=loaded,
        start_rate=start,
        max_rate=args.max_rate,
        max_steps=args.max_steps,
        precision=args.precision,
        half=not args.no_half,
        half_repeats=args.half_repeats,
        pause=args.pause,
        confirm_failures=args.confirm_failures,
        min_rate=args.min_rate,
        end_on_collapse=args.end_on_collapse,
        between_steps=args.between_steps,
    )
    return [cfg, *_paired_configs(parser, args, cfg)], bool(args.json)


def _paired_configs(
    parser: argparse.ArgumentParser, args: argparse.Namespace, cfg: RampConfig
) -> list[RampConfig]:
    """The ramps of the --paired-port servers: ours with their port, PIDs and rates."""
    ports: list[int] = args.paired_port
    for name in ("server_pids", "start_rate", "max_rate"):
        given = getattr(args, f"paired_{name}")
        if given and len(given) != len(ports):
            parser.error(f"--paired-{name.replace('_', '-')}: give it once for each --paired-port "
                         f"({len(ports)}), or not at all; it was given {len(given)} times")
    if len(set(ports)) != len(ports) or cfg.load.port in ports or not all(
        0 < port < 65536 for port in ports
    ):
        parser.error("--paired-port: ports other than --port, each given once")
    pids = [
        pids_from(parser, "--paired-server-pids", text) for text in args.paired_server_pids
    ] or [()] * len(ports)
    if len({bool(cfg.load.server_pids), *map(bool, pids)}) > 1:
        parser.error("--paired-server-pids: give PIDs for every server or for none")
    starts = args.paired_start_rate or [cfg.start_rate] * len(ports)
    tops = args.paired_max_rate or [cfg.max_rate] * len(ports)
    paired = []
    for port, server_pids, start, top in zip(ports, pids, starts, tops, strict=True):
        if not cfg.min_rate <= start <= top:
            parser.error(f"--paired-start-rate / --paired-max-rate of port {port}: need "
                         f"--min-rate <= start <= max, got {start:g} and {top:g}")
        load_cfg = replace(cfg.load, port=port, server_pids=server_pids)
        paired.append(replace(cfg, load=load_cfg, start_rate=start, max_rate=top))
    return paired


def main(argv: list[str] | None = None) -> int:
    cfgs, _ = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = run(cfgs[0]) if len(cfgs) == 1 else {
            "benchmark": "otszmq.ramp-paired", "schema": 1, "ramps": run_paired(cfgs)
        }
    except (load.BenchError, TlsConfigError) as exc:
        print(f"benchmarks.ramp: {exc}", file=sys.stderr)
        return 1
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
