"""benchmarks.load plus what a peer server needs and load.py does not have yet (interim shim).

    python benchmarks/peers/load_peer.py [SHIM OPTIONS] -- [benchmarks.load OPTIONS]

    python benchmarks/peers/load_peer.py --announce-delay 2 --announce-every 1 \
        --tree ots=$(cat RUN/pids) -- --port 18088 --clients 10 --rate 50 --json

Shim options (everything after `--` goes to benchmarks.load unchanged):
  --announce-delay S   each client waits S s after connecting before its first SA (default 0).
                       OpenTAKServer subscribes a client to its traffic only while handling the
                       client's first SA, and only if that client's RabbitMQ channel is already
                       open; an SA sent at once after connecting leaves the client deaf forever.
  --announce-every S   SA repeat interval during the settle (load.py's default: 0.2 s). At
                       0.2 s, 10 clients send OTS 50 SA/s, above what its single cot_parser
                       routes, and the backlog spills into the measured window.
  --sorted-bench-attrs
                       write the <__bench> element's attributes in alphabetical order (run, seq,
                       src, t) and read them back in that order. OpenTAKServer re-serializes every
                       CoT with BeautifulSoup, which sorts attributes: load.py's `run src seq t`
                       arrives as `run seq src t`, and its receivers then count nothing.
  --tree NAME=P,P      sample the whole process trees under these PIDs, including processes forked
                       during the run (OTS forks one eud_handler per client), over the measured
                       window; repeatable. Adds "server_tree" to the JSON result.

How: where load.py has --announce-delay/--announce-every itself, the two are handed on to it;
with an older load.py it sets its module-level `connect` (wrapped to sleep after connecting) and
`ANNOUNCE_EVERY_S`. It sets cotgen's `RECORD` and `bench_record` and results' `decode` (attribute
order), and procstat's `WindowProbe` (extended to sample the trees), then calls
benchmarks.load.main(); it refuses to run if those names change. The JSON result is load.py's,
plus "peer_shim" (the options above) and, with --tree, "server_tree". Delete this file once
load.py does all this itself (benchmarks/peers/README.md says what is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from benchmarks import cotgen, load, procstat, results

Json = dict[str, Any]
PROBES: list[TreeProbe] = []


def pss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class TreeProbe(procstat.WindowProbe):
    """WindowProbe that also samples whole process trees, found again at every sample."""

    trees: ClassVar[dict[str, tuple[int, ...]]] = {}

    def __init__(self, server_pids: tuple[int, ...]) -> None:
        super().__init__(server_pids)
        self.tree_watches: dict[str, dict[int, procstat.ProcWatch]] = {n: {} for n in self.trees}
        self.tree_started: float | None = None
        self.tree_stopped: float | None = None
        self.tree_pss: dict[str, int] = {}
        PROBES.append(self)

    def _sample_trees(self) -> None:
        for name, roots in self.trees.items():
            watches = self.tree_watches[name]
            for pid in procstat.process_tree(roots):
                watches.setdefault(pid, procstat.ProcWatch(pid))
            for watch in watches.values():
                if not watch.gone:
                    watch.sample()

    def start(self) -> None:
        super().start()
        self.tree_started = time.monotonic()
        self._sample_trees()

    def sample(self) -> None:
        super().sample()
        self._sample_trees()

    def stop(self) -> None:
        super().stop()
        self.tree_stopped = time.monotonic()
        self._sample_trees()
        for name, watches in self.tree_watches.items():
            self.tree_pss[name] = sum(
                pss_kb(pid) or 0 for pid, watch in watches.items() if not watch.gone
            )

    def tree_result(self) -> Json:
        if self.tree_started is None or self.tree_stopped is None:
            return {"window_seconds": None, "trees": {}}
        wall = self.tree_stopped - self.tree_started
        trees: Json = {}
        for name, watches in self.tree_watches.items():
            results = [watch.result() for watch in watches.values()]
            found = [entry for entry in results if entry["found"]]
            alive = [entry for entry in found if not entry["exited_during_window"]]
            cpu = sum(entry["cpu_seconds"] for entry in found)
            trees[name] = {
                "roots": list(self.trees[name]),
                "processes": len(found),
                "processes_at_end": len(alive),
                "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else None,
                "rss_kb": sum(entry["rss_kb"] for entry in alive),
                "pss_kb": self.tree_pss.get(name),
            }
        return {"window_seconds": round(wall, 3), "trees": trees}


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        cut = argv.index("--")
        own, rest = argv[:cut], argv[cut + 1 :]
    else:
        own, rest = [], argv
    parser = argparse.ArgumentParser(prog="load_peer", description=__doc__.split("\n")[0])
    parser.add_argument("--announce-delay", type=float, default=0.0)
    parser.add_argument("--announce-every", type=float, default=None)
    parser.add_argument("--sorted-bench-attrs", action="store_true")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=P,P")
    args = parser.parse_args(own)
    if args.announce_delay < 0 or (args.announce_every is not None and args.announce_every <= 0):
        parser.error("--announce-delay must be >= 0 and --announce-every > 0")
    trees: dict[str, tuple[int, ...]] = {}
    for spec in args.tree:
        name, _, pids = spec.partition("=")
        try:
            trees[name] = tuple(int(pid) for pid in pids.split(",") if pid.strip())
        except ValueError:
            parser.error(f"--tree: not NAME=PID,PID: {spec!r}")
        if not name or not trees[name]:
            parser.error(f"--tree: not NAME=PID,PID: {spec!r}")
    args.trees = trees
    return args, rest


def sort_bench_attrs() -> None:
    """Bench records as `seq="S" src="N" t="T"` (alphabetical, as BeautifulSoup writes them)."""
    sample = cotgen.bench_record(3, 12, 123456)
    if (
        sample != b'src="0003" seq="000000012" t="000000123456"'
        or cotgen.RECORD_FIELDS != 6
        or results.RECORD_FIELDS != 6  # type: ignore[attr-defined]
        or "decode" not in results.tally_receiver.__code__.co_names
    ):
        sys.exit(
            "load_peer: benchmarks.cotgen/results changed; --sorted-bench-attrs no longer applies"
        )
    cotgen.RECORD = rb'seq="\d{%d}" src="\d{%d}" t="\d{%d}"' % (
        cotgen.SEQ_DIGITS,
        cotgen.SRC_DIGITS,
        cotgen.T_DIGITS,
    )

    def bench_record(src: int, seq: int, t_us: int) -> bytes:
        return b'seq="%09d" src="%04d" t="%012d"' % (seq, src, t_us)

    def decode(blob: bytes) -> tuple[list[int], list[int], list[int]]:
        fields = blob.split(b'"')
        return (
            list(map(int, fields[3::6])),
            list(map(int, fields[1::6])),
            list(map(int, fields[5::6])),
        )

    cotgen.bench_record = bench_record
    results.decode = decode


def load_has_announce_flags() -> bool:
    fields = {field.name for field in dataclasses.fields(load.LoadConfig)}
    return {"announce_delay", "announce_every"} <= fields


def patch(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """Applies the shim options; returns the arguments for benchmarks.load.main()."""
    if load_has_announce_flags():
        # load.py has --announce-delay/--announce-every now (its delay runs after the barrier
        # that waits for all connections, which serves OTS the same): hand the values on.
        if args.announce_delay:
            rest = [*rest, "--announce-delay", str(args.announce_delay)]
        if args.announce_every is not None:
            rest = [*rest, "--announce-every", str(args.announce_every)]
    elif args.announce_delay or args.announce_every is not None:
        names = load.client_session.__code__.co_names
        if not ("connect" in names and "ANNOUNCE_EVERY_S" in names):
            sys.exit("load_peer: benchmarks.load changed; --announce-* no longer apply")
        original = load.connect
        delay = args.announce_delay

        async def connect_then_wait(cfg: Any, client: Any) -> None:
            await original(cfg, client)
            if delay:
                await asyncio.sleep(delay)

        load.connect = connect_then_wait
        if args.announce_every is not None:
            load.ANNOUNCE_EVERY_S = args.announce_every
    if args.sorted_bench_attrs:
        sort_bench_attrs()
    if args.trees:
        if not (hasattr(procstat, "WindowProbe") and "procstat" in load.run.__code__.co_names):
            sys.exit("load_peer: benchmarks.load changed; --tree no longer applies")
        TreeProbe.trees = args.trees
        procstat.WindowProbe = TreeProbe  # type: ignore[misc,assignment]
    return rest


def main(argv: list[str]) -> int:
    args, rest = parse(argv)
    rest = patch(args, rest)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = load.main(rest)
    if status != 0 or not out.getvalue().strip():
        sys.stdout.write(out.getvalue())
        return status
    result = json.loads(out.getvalue())
    result["peer_shim"] = {
        "announce_delay": args.announce_delay,
        "announce_every": args.announce_every,
        "sorted_bench_attrs": args.sorted_bench_attrs,
    }
    if args.trees and PROBES:
        result["server_tree"] = PROBES[-1].tree_result()
        if "--json" not in rest:
            for name, entry in result["server_tree"]["trees"].items():
                print(
                    f"tree {name}: {entry['processes']} processes  CPU {entry['cpu_percent']}%  "
                    f"RSS {entry['rss_kb']} kB  PSS {entry['pss_kb']} kB",
                    file=sys.stderr,
                )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
