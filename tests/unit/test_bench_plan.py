"""The benchmark suite's plan for each server and the pieces of a load run that need no server.

How the suite drives the peers (benchmarks.profiles, benchmarks.suiteplan), where a ramp ends
(benchmarks.ramp), the bench record a re-serializing server hands back (benchmarks.cotgen and
results), and the report rows of a run that was capped or skipped (benchmarks.report).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cotgen, profiles, ramp, report, results, rounds, run_suite, suiteplan
from benchmarks.options import LoadConfig
from benchmarks.servers import Server
from benchmarks.suiteplan import Job, SuiteConfig, jobs_for, run_job, run_paired_job

CLIENTS = {
    "sa-broadcast": (10, 50),
    "takserver": (200, 500),
    "chat-dm": (10,),
    "mixed": (10,),
    "connect-storm": (500,),
    "idle-hold": (5000,),
}


def suite_config() -> SuiteConfig:
    return SuiteConfig(scenarios=tuple(CLIENTS), servers=("relay", "otszmq"), clients=CLIENTS)


def flag(args: tuple[str, ...], name: str) -> str:
    """The value of the last `name` in `args`: what argparse would use."""
    return args[len(args) - 1 - args[::-1].index(name) + 1]


# -- the bench record ---------------------------------------------------------------------------


def test_bench_record_is_read_back_in_the_order_a_reserializing_server_writes() -> None:
    # OpenTAKServer re-serializes with BeautifulSoup, which writes attributes alphabetically.
    factory = cotgen.SaFactory("1f2e3d4c", 3, 600)
    event = factory.event(factory.header(*cotgen.cot_times(datetime.now(UTC))), 12, 123456)
    attributes = re.search(rb"<__bench ([^/]*)/>", event)
    assert attributes is not None
    names = re.findall(rb"(\w+)=", attributes.group(1))
    assert names == sorted(names)
    records = b"".join(cotgen.bench_re("1f2e3d4c").findall(event))
    assert results.decode(records) == ([3], [12], [123456])


def test_callsigns_are_new_every_run_and_differ_from_the_uid() -> None:
    # OpenTAKServer refuses a new uid whose callsign an earlier connection had.
    first, second = cotgen.SaFactory("aaaaaaaa", 3, 600), cotgen.SaFactory("bbbbbbbb", 3, 600)
    assert first.callsign != second.callsign
    assert first.callsign != first.uid
    assert b"0003" in first.callsign


# -- the plan per server ------------------------------------------------------------------------


def test_peer_ramps_start_low_and_stop_at_a_collapse() -> None:
    ots = jobs_for(suite_config(), "sa-broadcast", "ots")
    assert [job.clients for job in ots] == [10, 50]
    ten, fifty = (job.args for job in ots)
    assert float(flag(ten, "--start-rate")) == 20.0
    assert float(flag(fifty, "--start-rate")) < float(flag(ten, "--start-rate"))
    assert float(flag(ten, "--max-rate")) <= 1000
    assert flag(ten, "--end-on-collapse") == "0.5"
    # OTS: the first SA late, announcements slow, a long settle; later flags win in argparse.
    assert float(flag(fifty, "--announce-delay")) > float(flag(ten, "--announce-delay")) >= 2
    assert float(flag(ten, "--settle-timeout")) > 10
    taky = jobs_for(suite_config(), "sa-broadcast", "taky")[0]
    assert float(flag(taky.args, "--start-rate")) == 500.0
    relay = jobs_for(suite_config(), "sa-broadcast", "relay")[0]
    assert flag(relay.args, "--end-on-collapse") == "0"
    assert "--announce-delay" not in relay.args


def test_a_peer_runs_fewer_clients_than_asked_and_says_why() -> None:
    jobs = jobs_for(suite_config(), "takserver", "ots")
    assert len(jobs) == 1  # 200 and 500 both capped to the same count: run once
    job = jobs[0]
    assert job.clients == profiles.PROFILES["ots"].limits["takserver"].clients
    assert job.note.startswith("200, 500 clients asked, 20 run: OpenTAKServer forks")
    idle = jobs_for(suite_config(), "idle-hold", "taky")[0]
    assert idle.clients == 1000 and "select()" in idle.note
    assert jobs_for(suite_config(), "idle-hold", "otszmq")[0].note == ""


def test_idle_hold_waits_for_a_forking_server_to_finish_its_forks() -> None:
    ots = jobs_for(suite_config(), "idle-hold", "ots")[0]
    assert float(flag(ots.args, "--hold")) == profiles.PROFILES["ots"].idle_hold_min >= 10
    assert float(flag(jobs_for(suite_config(), "idle-hold", "otszmq")[0].args, "--hold")) == 5
    quick = jobs_for(replace(suite_config(), quick=True).quickened(), "idle-hold", "ots")[0]
    assert float(flag(quick.args, "--hold")) < 1


def test_a_limit_without_clients_skips_the_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"mixed": profiles.Limit(None, "cannot parse 30 KiB events")}
    changed = profiles.Profile(start_rates=((2, 10.0),), limits=limits)
    monkeypatch.setitem(profiles.PROFILES, "ots", changed)
    jobs = jobs_for(suite_config(), "mixed", "ots")
    assert [(job.skipped, job.program) for job in jobs] == [
        ("cannot parse 30 KiB events", "benchmarks.ramp")
    ]


def test_runs_measure_the_process_tree_and_clean_between_steps() -> None:
    job = jobs_for(suite_config(), "sa-broadcast", "ots")[0]
    clean = ("bash", "benchmarks/peers/ots/clean.sh", "/tmp/x/ots", "300")
    server = Server("ots", "peer", 1, {}, clean, Path("/tmp/x/ots"), None, (11, 12))
    # A server with no live processes: run_job only builds the command line and runs it; the
    # port is 1, so the program fails at once, which is what the record then says.
    record = run_job(job, server)
    argv = record["argv"]
    assert flag(tuple(argv), "--server-pids") == "11,12"
    assert "--server-tree" in argv
    between = "bash benchmarks/peers/ots/clean.sh /tmp/x/ots 300"
    assert flag(tuple(argv), "--between-steps") == between
    assert record["returncode"] != 0 and record["error"]


def test_a_program_that_exits_0_without_json_is_a_failure_that_says_so() -> None:
    # `python -m this` prints the Zen of Python and exits 0, whatever its arguments.
    job = Job("sa-broadcast", 2, "this", (), timeout=30)
    server = Server("relay", "relay", 1, {}, (), None, None, (11,))
    record = run_job(job, server)
    assert record["returncode"] == 0 and record["result"] is None
    last = record["error"].splitlines()[-1]
    assert last.startswith("exit status 0, but its stdout (")
    assert "is not a JSON object" in last and "'The Zen of Python" in last


# -- where a ramp ends --------------------------------------------------------------------------


def step_result(ratio: float | None) -> dict[str, Any]:
    return {"row": {"delivery_ratio": ratio}}


def test_a_collapse_ends_the_ramp_only_above_a_passing_rate() -> None:
    cfg = ramp.RampConfig(load=LoadConfig(), end_on_collapse=0.5)
    search = ramp.Search(cfg)
    search.record(100.0, passed=False)
    assert not ramp.collapsed(cfg, step_result(0.0), search)  # nothing passed yet: halve
    search.record(50.0, passed=True)
    assert ramp.collapsed(cfg, step_result(0.2), search)
    assert ramp.collapsed(cfg, step_result(None), search)
    assert not ramp.collapsed(cfg, step_result(0.9), search)  # near the edge: bisect
    off = ramp.RampConfig(load=LoadConfig())
    assert not ramp.collapsed(off, step_result(0.0), search)


def load_result(rate: float, passed: bool, p99: float = 5.0) -> dict[str, Any]:
    """What benchmarks.load returns, with only the figures a ramp reads."""
    return {
        "send": {"offered_rate": rate, "sent_rate": rate, "skipped_burst": 0},
        "delivery": {"delivery_ratio": 1.0 if passed else 0.99, "deliveries_per_s": 9 * rate},
        "latency_ms": {"p50": 1.0, "p99": p99, "max": p99},
        "generator": {"cpu_percent": 10.0},
        "system": {"cpu_busy_percent": 50.0},
        "errors": [],
        "config": {},
    }


def scripted_ramp(
    monkeypatch: pytest.MonkeyPatch, outcomes: dict[float, list[bool]], half_p99s: list[float]
) -> tuple[dict[str, Any], list[float]]:
    """A ramp against a server whose steps pass or fail as `outcomes` says, rate by rate."""
    offered: list[float] = []

    def step(cfg: ramp.RampConfig, rate: float) -> dict[str, Any]:
        offered.append(rate)
        if rate in outcomes:
            return load_result(rate, outcomes[rate].pop(0))
        return load_result(rate, passed=True, p99=half_p99s.pop(0))

    monkeypatch.setattr(ramp, "step", step)
    monkeypatch.setattr(ramp, "PAUSE_AFTER_FAIL_S", 0.0)
    cfg = ramp.RampConfig(load=LoadConfig(), start_rate=1000.0, precision=0.5, pause=0.0)
    return ramp.run(cfg), offered


def test_a_failing_rate_is_run_again_and_fails_only_when_the_second_attempt_fails_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2000/s stalls once (a noisy neighbour), then passes; 4000/s fails twice: the server's limit.
    outcomes = {1000.0: [True], 2000.0: [False, True], 4000.0: [False, False], 2830.0: [True]}
    result, offered = scripted_ramp(monkeypatch, outcomes, half_p99s=[30.0, 10.0, 20.0])
    assert offered[:6] == [1000.0, 2000.0, 2000.0, 4000.0, 4000.0, 2830.0]
    assert result["max_sustainable_rate"] == 2830.0 and result["lowest_failing_rate"] == 4000.0
    superseded = [step["rate"] for step in result["steps"] if step.get("superseded")]
    assert superseded == [2000.0, 4000.0]
    # The half-rate latency is the median of three windows, and all three are kept.
    half = result["at_half"]
    assert offered[6:] == [1420.0] * 3 and half["rate"] == 1420.0
    assert half["row"]["p99_ms"] == 20.0
    assert [run["p99_ms"] for run in half["repeats"]] == [30.0, 10.0, 20.0]


def test_paired_ramps_take_turns_and_each_search_goes_its_own_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Port 1 tops out at 2000/s, port 2 at 4000/s; port 1's 2000/s stalls once and is confirmed.
    limits = {1: 2000.0, 2: 4000.0}
    stalls = {(1, 2000.0): 1}
    order: list[tuple[int, float]] = []
    events: list[tuple[str, int]] = []  # steps and idle waits, as they came

    def step(cfg: ramp.RampConfig, rate: float) -> dict[str, Any]:
        port = cfg.load.port
        order.append((port, rate))
        events.append(("step", port))
        if stalls.get((port, rate)):
            stalls[(port, rate)] -= 1
            return load_result(rate, passed=False)
        return load_result(rate, passed=rate <= limits[port], p99=float(port))

    def wait_until_idle(load: LoadConfig) -> float:
        events.append(("idle", load.port))
        return 0.0

    monkeypatch.setattr(ramp, "step", step)
    monkeypatch.setattr(ramp, "wait_until_idle", wait_until_idle)
    monkeypatch.setattr(ramp, "PAUSE_AFTER_FAIL_S", 0.0)
    first = ramp.RampConfig(load=LoadConfig(port=1), start_rate=1000.0, precision=0.5,
                            pause=0.0, half_repeats=2)  # fmt: skip
    second = replace(first, load=LoadConfig(port=2))
    results = ramp.run_paired([first, second])
    # A step of each in turn, the order reversed every round; a search that has ended stops.
    assert order[:8] == [
        (1, 1000.0), (2, 1000.0),
        (2, 2000.0), (1, 2000.0),
        (1, 2000.0), (2, 4000.0),
        (2, 8000.0), (1, 4000.0),
    ]  # fmt: skip
    assert [r["max_sustainable_rate"] for r in results] == [2000.0, 4000.0]
    assert [r["lowest_failing_rate"] for r in results] == [2830.0, 5660.0]
    # The half-rate windows alternate too, and each ramp has its own.
    halves = order[-4:]
    assert sorted(halves) == [(1, 1000.0), (1, 1000.0), (2, 2000.0), (2, 2000.0)]
    assert halves[0][0] != halves[1][0] and halves[2][0] != halves[3][0]
    assert [r["at_half"]["row"]["p99_ms"] for r in results] == [1.0, 2.0]
    # A server has worked off each of its steps, its last included, before the other's next.
    steps_at = [i for i, (what, _) in enumerate(events) if what == "step"]
    for here, there in itertools.pairwise(steps_at):
        if events[here][1] != events[there][1]:
            assert ("idle", events[here][1]) in events[here + 1 : there], events[here:there + 1]


def test_paired_ramp_flags_are_checked() -> None:
    common = ["--port", "9001", "--start-rate", "100", "--max-rate", "1000"]
    cfgs, _ = ramp.parse_args([*common, "--paired-port", "9002"])
    assert [cfg.load.port for cfg in cfgs] == [9001, 9002]
    assert [(cfg.start_rate, cfg.max_rate) for cfg in cfgs] == [(100.0, 1000.0)] * 2
    # Several paired servers, each with its own PIDs and rates, in the order of the ports.
    cfgs, _ = ramp.parse_args([
        *common, "--server-pids", "4",
        "--paired-port", "9002", "--paired-server-pids", "5,6", "--paired-start-rate", "200",
        "--paired-max-rate", "5000",
        "--paired-port", "9003", "--paired-server-pids", "7", "--paired-start-rate", "50",
        "--paired-max-rate", "800",
    ])  # fmt: skip
    assert [(c.load.port, c.load.server_pids, c.start_rate, c.max_rate) for c in cfgs] == [
        (9001, (4,), 100.0, 1000.0), (9002, (5, 6), 200.0, 5000.0), (9003, (7,), 50.0, 800.0)
    ]
    two = ["--paired-port", "9002", "--paired-port", "9003"]
    for wrong in (["--paired-server-pids", "5"], ["--paired-port", "9001"],
                  ["--paired-port", "9002", "--paired-server-pids", "x"],
                  ["--paired-port", "9002", "--server-pids", "4"],
                  ["--paired-port", "9002", "--paired-port", "9002"],
                  [*two, "--paired-start-rate", "200"],  # once for two ports
                  [*two, "--server-pids", "4", "--paired-server-pids", "5",
                   "--paired-server-pids", ""],  # PIDs for some servers only
                  ["--paired-port", "9002", "--paired-start-rate", "2000"],  # above its max
                  ["--paired-port", "9002", "--paired-start-rate", "1"]):  # below --min-rate
        with pytest.raises(SystemExit):
            ramp.parse_args([*common, *wrong])


def test_a_paired_job_gives_a_record_per_server(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = suite_config()
    kinds = ("relay", "otszmq", "otszmq-nostore")
    jobs = [jobs_for(cfg, "sa-broadcast", kind)[0] for kind in kinds]
    servers = [Server(kind, "otszmq", 9001 + i, {}, (), None, None, (11 + i,))
               for i, kind in enumerate(kinds)]  # fmt: skip
    launched: list[list[str]] = []
    out = '{"benchmark": "otszmq.ramp-paired", "ramps": [{"n": 1}, {"n": 2}, {"n": 3}]}'

    def launch(argv: list[str], timeout: float) -> tuple[int, str, float, list[str]]:
        launched.append(argv)
        return 0, out, 1.0, []

    monkeypatch.setattr(suiteplan, "_launch", launch)
    records = run_paired_job(list(zip(jobs, servers, strict=True)))
    argv = launched[0]
    # The first server's job is the command line; each other server brings its own rates.
    assert flag(tuple(argv), "--port") == "9001"
    assert flag(tuple(argv), "--start-rate") == jobs[0].flag("--start-rate")
    paired = [(argv[i + 1], argv[i + 3], argv[i + 5], argv[i + 7])
              for i, arg in enumerate(argv) if arg == "--paired-port"]  # fmt: skip
    assert paired == [
        (str(server.port), str(server.root_pids[0]), job.flag("--start-rate"),
         job.flag("--max-rate")) for job, server in zip(jobs[1:], servers[1:], strict=True)
    ]  # fmt: skip
    assert jobs[0].flag("--start-rate") != jobs[1].flag("--start-rate")  # the relay's own
    assert [(r["server"], r["paired_with"], r["result"]) for r in records] == [
        ("relay", ["otszmq", "otszmq-nostore"], {"n": 1}),
        ("otszmq", ["relay", "otszmq-nostore"], {"n": 2}),
        ("otszmq-nostore", ["relay", "otszmq"], {"n": 3}),
    ]
    assert not any("error" in record for record in records)
    out = '{"benchmark": "otszmq.ramp"}'  # not a paired result: every run failed, and says why
    records = run_paired_job(list(zip(jobs, servers, strict=True)))
    assert all(r["result"] is None and "no 'ramps' list of 3" in r["error"] for r in records)
    # Jobs that differ in more than their rates cannot share one command line.
    taky = jobs_for(cfg, "sa-broadcast", "taky")[0]  # --end-on-collapse, --min-rate of its own
    with pytest.raises(AssertionError):
        run_paired_job([(jobs[0], servers[0]), (taky, servers[1])])


def test_a_collapse_is_not_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ramp, "step", lambda cfg, rate: {
        **load_result(rate, passed=rate <= 1000.0),
        "delivery": {"delivery_ratio": 1.0 if rate <= 1000.0 else 0.1, "deliveries_per_s": 0.0},
    })  # fmt: skip
    cfg = ramp.RampConfig(load=LoadConfig(), start_rate=1000.0, pause=0.0, half=False,
                          end_on_collapse=0.5)  # fmt: skip
    result = ramp.run(cfg)
    assert [step["rate"] for step in result["steps"]] == [1000.0, 2000.0]
    assert result["steps"][-1]["ended_search"]


def test_between_steps_runs_the_command_and_keeps_its_status() -> None:
    assert ramp.run_between_steps("") is None
    done = ramp.run_between_steps("sh -c 'echo cleaned; exit 3'")
    assert done is not None
    assert done["returncode"] == 3 and done["output"] == "cleaned"
    missing = ramp.run_between_steps("/nonexistent/clean.sh")
    assert missing is not None and missing["returncode"] is None


# -- the report ---------------------------------------------------------------------------------


def test_report_says_why_a_run_is_missing_or_capped() -> None:
    runs = [
        {"scenario": "idle-hold", "clients": 5000, "server": "ots", "skipped": "forks"},
        {"scenario": "idle-hold", "clients": 5000, "server": "otszmq", "error": "boom\nlast"},
        {"scenario": "idle-hold", "clients": 50, "server": "taky", "note": "5000 asked",
         "error": "x"},
    ]  # fmt: skip
    rows = report.idle_rows(runs)
    assert rows[0][:3] == ["ots", "5000", "skipped: forks"]
    assert rows[1][:3] == ["otszmq", "5000", "failed: last"]
    assert rows[2][1] == "50 (capped)"
    assert all(len(row) == len(report.IDLE_HEADER) for row in rows)
    assert report.notes(runs) == ["- taky: 5000 asked.", ""]


def test_a_caveat_is_said_once_under_the_table() -> None:
    jobs = jobs_for(suite_config(), "sa-broadcast", "ots")
    assert all("deaf" in job.caveat for job in jobs)
    assert all(job.caveat == "" for job in jobs_for(suite_config(), "sa-broadcast", "taky"))
    runs = [{**job.describe(), "server": "ots", "error": "x"} for job in jobs]
    lines = report.notes(runs)
    assert len(lines) == 2 and lines[0].startswith("- ots: a client is sometimes left deaf")
    assert [row[1] for row in report.ramp_rows(runs)] == ["10", "50"]  # not capped


def test_the_latency_timeline_puts_a_stall_in_its_own_slice() -> None:
    # Window opens 1 s after the epoch; events sent at 1.0 s and 1.1 s arrive fast, the one sent
    # at 1.6 s is held 80 ms: only the third slice of 0.25 s shows it.
    window = results.Window(epoch_ns=0, start_ns=1_000_000_000, end_ns=2_000_000_000)
    tally = results.Tally(latencies_us=[2_000, 3_000, 80_000], sent_us=[1_000_000, 1_100_000,
                                                                         1_600_000])

    timeline = results.latency_timeline(tally, window, bucket_s=0.25)

    assert [(piece["t_s"], piece["count"], piece["max"]) for piece in timeline] == [
        (0.0, 2, 3.0), (0.5, 1, 80.0),
    ]


def test_the_half_rate_target_shows_the_median_and_every_window() -> None:
    half_rows = [{"p99_ms": p99, "p50_ms": 2.0, "system_busy_percent": 150.0,
                  "system_steal_percent": 1.0} for p99 in (30.0, 10.0, 20.0)]  # fmt: skip
    result = {"max_sustainable_rate": 9000.0, "at_half": {"row": half_rows[2],
              "repeats": half_rows}}  # fmt: skip
    relay = {"max_sustainable_rate": 10000.0}
    suite = {
        "machine": {"nproc": 2},
        "config": {"serve_args": [], "workers": 2, "ingest_processes": 1},
        "runs": [{"scenario": "sa-broadcast", "clients": 10, "server": "otszmq", "result": result},
                 {"scenario": "sa-broadcast", "clients": 10, "server": "relay", "result": relay}],
    }  # fmt: skip
    rows = {what: (measured, verdict) for what, measured, verdict in report.targets(suite)}
    measured, verdict = rows["sa-broadcast 10 clients, store on: p99 ≤ 25 ms at half rate"]
    assert measured.startswith("20.0 ms, median of 3: 10.0, 20.0, 30.0 (machine 150% busy")
    assert verdict == "met"
    assert rows["sa-broadcast 10 clients, store on: max rate ≥ 60% of relay"][1] == "met"


def test_the_targets_say_when_their_ramps_took_turns() -> None:
    def run(server: str, clients: int, rate: float, paired_with: object) -> dict[str, Any]:
        record = {"scenario": "sa-broadcast", "clients": clients, "server": server,
                  "result": {"max_sustainable_rate": rate}}  # fmt: skip
        return {**record, "paired_with": paired_with} if paired_with else record

    suite = {
        "machine": {"nproc": 2},
        "config": {"serve_args": [], "workers": 2, "ingest_processes": 1},
        "runs": [run("relay", 10, 15000.0, ["otszmq", "otszmq-nostore"]),
                 run("otszmq", 10, 9000.0, ["relay", "otszmq-nostore"]),
                 run("otszmq-nostore", 10, 10000.0, ["relay", "otszmq"]),
                 # A suite run before the relay took turns: one name, not a list.
                 run("relay", 50, 20000.0, None),
                 run("otszmq", 50, 7000.0, "otszmq-nostore"),
                 run("otszmq-nostore", 50, 11900.0, "otszmq")],
    }  # fmt: skip
    rows = {what: (measured, verdict) for what, measured, verdict in report.targets(suite)}
    ten = rows["store on: max rate within 10% of store off, 10 clients"]
    assert ten == ("90% (9,000 vs 10,000 events/s, the two ramps in turn)", "met")
    fifty = rows["store on: max rate within 10% of store off, 50 clients"]
    assert fifty == ("59% (7,000 vs 11,900 events/s, the two ramps in turn)", "**not met**")
    relay_ten = rows["sa-broadcast 10 clients, store on: max rate ≥ 60% of relay"]
    assert relay_ten == ("60% (9,000 vs 15,000 events/s, the ramps in turn)", "met")
    # 11,900 / 20,000 is 59.5%: shown to a tenth, not rounded onto the target.
    relay_fifty = rows["sa-broadcast 50 clients, store off: max rate ≥ 60% of relay"]
    assert relay_fifty == ("59.5% (11,900 vs 20,000 events/s)", "**not met**")


def test_a_figure_next_to_its_target_keeps_the_digit_that_decides_it() -> None:
    assert report._against(0.595, 0.6) == "59.5%"
    assert report._against(0.6049, 0.6) == "60%"
    assert report._against(0.897, 0.9) == "89.7%"
    assert report._against(0.894, 0.9) == "89%"
    assert report._against(25.02, 25.0, ms=True) == "25.02"
    assert report._against(24.96, 25.0, ms=True) == "25.0"  # met, and reads as met
    assert report._against(24.9, 25.0, ms=True) == "24.9"


def test_the_ratio_lines_show_otszmq_to_the_digit_that_decides_its_target() -> None:
    def run(server: str, rate: float) -> dict[str, Any]:
        return {"scenario": "sa-broadcast", "clients": 50, "server": server,
                "result": {"max_sustainable_rate": rate}}  # fmt: skip

    lines = report.ratio_lines([run("relay", 20000.0), run("otszmq", 11900.0), run("taky", 250.0)])
    assert "- 50 clients: otszmq / relay = **59.5%** (11,900 / 20,000 events/s)" in lines
    assert "- 50 clients: taky / relay = **1.25%** (250 / 20,000 events/s)" in lines


# -- rounds of the paired ramps -----------------------------------------------------------------


def broadcast_run(server: str, clients: int, rate: float, number: int,
                  half_p99: float | None = None) -> dict[str, Any]:  # fmt: skip
    """An sa-broadcast record of one round of the relay and otszmq's ramps in turn."""
    others = [name for name in ("relay", "otszmq", "otszmq-nostore") if name != server]
    result: dict[str, Any] = {"max_sustainable_rate": rate, "at_half": None, "steps": []}
    if half_p99 is not None:
        row = {"p99_ms": half_p99, "p50_ms": 1.0, "system_busy_percent": 100.0 + number}
        result["at_half"] = {"row": row, "repeats": [row]}
    return {"scenario": "sa-broadcast", "clients": clients, "server": server, "round": number,
            "paired_with": others, "result": result}  # fmt: skip


def rounds_suite(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"machine": {"nproc": 2},
            "config": {"serve_args": [], "workers": 2, "ingest_processes": 1}, "runs": runs}


def test_the_median_of_rounds_is_a_measured_value_and_keeps_every_round() -> None:
    found = rounds.median({1: 30.0, 2: 10.0, 3: 20.0, 4: 40.0})
    assert found is not None
    # The lower middle of four, not the mean of the two middle ones.
    assert (found.value, found.round, found.values) == (20.0, 3, (30.0, 10.0, 20.0, 40.0))
    assert rounds.median({}) is None
    # Records from before rounds existed are round 1.
    assert rounds.round_of({"server": "relay"}) == 1


def test_a_ratio_target_is_the_median_of_each_rounds_own_ratio() -> None:
    runs = [
        broadcast_run("relay", 50, 20000.0, 1), broadcast_run("otszmq", 50, 12000.0, 1, 30.0),
        broadcast_run("relay", 50, 30000.0, 2), broadcast_run("otszmq", 50, 9000.0, 2, 10.0),
        broadcast_run("relay", 50, 10000.0, 3), broadcast_run("otszmq", 50, 5000.0, 3, 20.0),
    ]  # fmt: skip
    rows = {what: (measured, verdict) for what, measured, verdict in
            report.targets(rounds_suite(runs))}  # fmt: skip
    # Rounds: 60 %, 30 %, 50 %: median 50 %, though the medians' ratio is 9,000 / 20,000 = 45 %.
    ratio = rows["sa-broadcast 50 clients, store on: max rate ≥ 60% of relay"]
    assert ratio == ("50% (5,000 vs 10,000 events/s in round 3, the ramps in turn; median of 3 "
                     "rounds: 60%, 30%, 50%)", "**not met**")  # fmt: skip
    half = rows["sa-broadcast 50 clients, store on: p99 ≤ 25 ms at half rate"]
    # The median round's machine load (round 3: 103 %), every round's p99 in round order.
    assert half == ("20.0 ms, median of 3 rounds (each the median of its windows): 30.0, 10.0, "
                    "20.0 (machine 103% busy of 200%)", "met")  # fmt: skip
    lines = report.ratio_lines(runs)
    assert lines[0] == ("- 50 clients: otszmq / relay = **50%** (5,000 / 10,000 events/s in "
                        "round 3; median of 3 rounds: 60%, 30%, 50%)")  # fmt: skip


def test_the_store_target_pairs_store_on_and_off_round_by_round() -> None:
    runs = [
        broadcast_run("otszmq", 10, 9000.0, 1), broadcast_run("otszmq-nostore", 10, 10000.0, 1),
        broadcast_run("otszmq", 10, 7000.0, 2), broadcast_run("otszmq-nostore", 10, 10000.0, 2),
        broadcast_run("otszmq", 10, 12000.0, 3), broadcast_run("otszmq-nostore", 10, 13000.0, 3),
    ]  # fmt: skip
    (row,) = report.store_targets(rounds_suite(runs))
    assert row == ["store on: max rate within 10% of store off, 10 clients",
                   "90% (9,000 vs 10,000 events/s in round 1, the two ramps in turn; median of 3 "
                   "rounds: 90%, 70%, 92%)", "met"]  # fmt: skip


def test_a_server_that_ramped_apart_is_compared_with_the_relays_median() -> None:
    runs = [broadcast_run("relay", 10, rate, number)
            for number, rate in enumerate((30000.0, 10000.0, 20000.0), start=1)]  # fmt: skip
    taky = {"scenario": "sa-broadcast", "clients": 10, "server": "taky",
            "result": {"max_sustainable_rate": 200.0}}  # fmt: skip
    lines = report.ratio_lines([*runs, taky])
    assert lines[0] == "- 10 clients: taky / relay = **1.00%** (200 / 20,000 events/s)"


def test_the_table_shows_the_median_round_and_every_rounds_max() -> None:
    runs = [broadcast_run("otszmq", 10, rate, number, half_p99=float(number))
            for number, rate in enumerate((9000.0, 7000.0, 8000.0), start=1)]  # fmt: skip
    (row,) = report.ramp_rows(runs)
    assert row[2] == "8,000 (median of 9,000, 7,000, 8,000)"
    assert row[4] == "1.0 / 3.0"  # the half-rate step of that round, round 3
    assert [run["round"] for run in rounds.collapsed(runs)] == [3]


def test_the_suite_runs_every_round_of_the_paired_ramps(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = replace(suite_config(), paired_rounds=3)
    started = [Server(kind, "otszmq", 9001 + i, {}, (), None, None, (11 + i,))
               for i, kind in enumerate(("relay", "otszmq"))]  # fmt: skip
    ran: list[tuple[int, tuple[str, ...]]] = []

    def paired_job(pairs: list[tuple[Job, Server]]) -> list[dict[str, Any]]:
        ran.append((pairs[0][0].clients, tuple(server.label for _, server in pairs)))
        rate = 1000.0 * len(ran)
        return [{"server": server.label, "clients": job.clients, "scenario": job.scenario,
                 "result": {"max_sustainable_rate": rate}} for job, server in pairs]  # fmt: skip

    monkeypatch.setattr(run_suite, "start_all", lambda kinds, cfg: started)
    monkeypatch.setattr(run_suite, "stop_all", lambda servers: None)
    monkeypatch.setattr(run_suite, "add_stats", lambda records, servers: None)
    monkeypatch.setattr(run_suite, "run_paired_job", paired_job)
    records = run_suite.run_paired_on(["relay", "otszmq"], "sa-broadcast", cfg)
    # Round by round, both client counts in each.
    assert [clients for clients, _ in ran] == [10, 50, 10, 50, 10, 50]
    assert [(r["server"], r["clients"], r["round"]) for r in records[:4]] == [
        ("relay", 10, 1), ("otszmq", 10, 1), ("relay", 50, 1), ("otszmq", 50, 1),
    ]
    assert {r["round"] for r in records} == {1, 2, 3}
    # The scaling table reuses the 50-client round with the median max rate: round 2 (4,000/s).
    setting = suiteplan.Setting(cfg.workers, cfg.ingest_processes)
    reused = run_suite.reusable(records, cfg, setting)
    assert reused is not None and reused["round"] == 2


def test_paired_rounds_must_be_at_least_one() -> None:
    with pytest.raises(SystemExit):
        run_suite.parse_args(["--paired-rounds", "0"])
    cfg, _ = run_suite.parse_args(["--paired-rounds", "2"])
    assert cfg.paired_rounds == 2


def test_a_steps_machine_load_says_how_long_the_processes_waited_for_a_core() -> None:
    row = {"system_busy_percent": 180.4, "system_steal_percent": 0.0,
           "server_runqueue_wait_ms_per_s": 951.0, "generator_runqueue_wait_ms_per_s": 194.6}
    assert report._machine_load(row, 2) == (
        " (machine 180% busy of 200%, 0% stolen, waiting for a core: server 0.95 s/s, "
        "generator 0.19 s/s)")  # fmt: skip
    # Results from before the waits were measured read as they did.
    del row["server_runqueue_wait_ms_per_s"]
    assert report._machine_load(row, 2) == " (machine 180% busy of 200%, 0% stolen)"
