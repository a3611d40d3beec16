"""The store stage alone: CPU per record and drain rate of a real ``otszmq store`` process.

    python -m benchmarks.store --records 100000 --rate 20000
    python -m benchmarks.store --records 100000 --rate 0          # as fast as it drains
    python -m benchmarks.store --database-url postgresql://postgres@127.0.0.1/otszmq_bench

What a node's store costs is hard to read off a full node on 2 cores: it runs niced beside
routing and the generator, so its CPU% there says how much it was *given*. Here it runs alone
(no niceness) against a fresh database. The program binds the two ends a store connects to (the
fan-out's XPUB for records, its XSUB side for the stats), starts ``otszmq store``, waits for its
subscription, then publishes record frames exactly as workers do: SA records of ``--uids`` EUDs
built by the worker's own code (parse, then ``record_from_event``), ``--batch`` per frame, paced
at ``--rate`` records/s (0: unpaced). It reads the store's counters until every record is
accounted for (written, dropped, failed or malformed) and reports the CPU per record of the
store's two processes (the receiver and its writer process, also each on its own), the records
written per second of wall time, and what was dropped. JSON on stdout, a summary on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import zmq

from benchmarks import procstat
from benchmarks.cotgen import SaFactory, cot_times
from benchmarks.jsonout import print_json
from otszmq.store.records import RecordFields, pack_records, record_from_event
from otszmq.wire import TOPIC_RECORD, TOPIC_STATS
from otszmq.workers.cot import CotParser

Json = dict[str, Any]
START_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 120.0
ACCOUNTED = ("records_written", "records_dropped", "records_failed", "records_malformed")


@dataclass(frozen=True, slots=True)
class StoreBenchConfig:
    records: int = 100_000
    rate: float = 20_000.0  # records/s offered; 0: as fast as the socket takes them
    batch: int = 100  # records per frame (a worker's drain round under load)
    uids: int = 50
    event_size: int = 600
    database_url: str = ""  # empty: SQLite in a temporary data directory
    raw_xml: bool = True
    batch_size: int = 500  # --store-batch-size of the store
    flush_interval: float = 0.0  # --store-flush-interval of the store


def record_frames(config: StoreBenchConfig) -> list[bytes]:
    """The record frames to send: SA records of ``uids`` EUDs, 10 ms apart, as a worker packs
    them."""
    factories = [SaFactory("5708e000", index, config.event_size) for index in range(config.uids)]
    parser = CotParser()
    start = datetime.now(UTC) - timedelta(seconds=config.records / 100)
    frames: list[bytes] = []
    batch: list[RecordFields] = []
    for n in range(config.records):
        factory = factories[n % config.uids]
        header = factory.header(*cot_times(start + timedelta(milliseconds=10 * n)))
        fields = record_from_event(parser.parse(factory.event(header, n, n)), factory.uid.decode())
        assert fields is not None
        batch.append(fields)
        if len(batch) == config.batch:
            frames.append(pack_records(batch))
            batch = []
    if batch:
        frames.append(pack_records(batch))
    return frames


def _counters(stats: zmq.Socket[bytes], timeout_s: float) -> dict[str, int] | None:
    if not stats.poll(int(timeout_s * 1000)):
        return None
    snapshot = msgpack.unpackb(stats.recv_multipart()[1])
    return snapshot["counters"] if snapshot.get("role") == "store" else None


def run(config: StoreBenchConfig) -> Json:
    frames = record_frames(config)
    with tempfile.TemporaryDirectory(prefix="otszmq-store-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        url = config.database_url or f"sqlite:///{data_dir / 'otszmq.db'}"
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        records_out, stats_in = f"ipc://{tmp}/out.ipc", f"ipc://{tmp}/in.ipc"
        pub = context.socket(zmq.XPUB)
        stats = context.socket(zmq.SUB)
        for sock in (pub, stats):
            sock.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 0)  # nothing dropped on our side: the store's queue decides
        pub.bind(records_out)
        stats.setsockopt(zmq.SUBSCRIBE, TOPIC_STATS)
        stats.bind(stats_in)
        ready_r, ready_w = os.pipe()
        argv = [
            sys.executable, "-m", "otszmq", "store", "--data-dir", str(data_dir),
            "--fanout-out", records_out, "--fanout-in", stats_in, "--database-url", url,
            "--stats-interval", "0.2", "--store-priority", "normal", "--log-level", "warning",
            "--store-raw-xml", "true" if config.raw_xml else "false",
            "--store-batch-size", str(config.batch_size),
            "--store-flush-interval", str(config.flush_interval), "--ready-fd", str(ready_w),
        ]
        proc = subprocess.Popen(argv, pass_fds=(ready_w,))
        os.close(ready_w)
        try:
            if not pub.poll(int(START_TIMEOUT_S * 1000)) or pub.recv() != b"\x01" + TOPIC_RECORD:
                raise RuntimeError("the store did not subscribe to records")
            if not os.read(ready_r, 16).startswith(b"ready"):
                raise RuntimeError("the store did not report ready")
            # The store and its writer process (started before the store reports ready).
            pids = tuple(procstat.process_tree((proc.pid,)))
            before = _samples(pids)
            started = time.monotonic()
            per_frame = config.batch / config.rate if config.rate > 0 else 0.0
            for index, frame in enumerate(frames):
                if per_frame:
                    delay = started + index * per_frame - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                pub.send_multipart((TOPIC_RECORD, frame))
            sent_s = time.monotonic() - started
            counters: dict[str, int] = {}
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while sum(counters.get(name, 0) for name in ACCOUNTED) < config.records:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the store never accounted for every record: {counters}")
                counters = _counters(stats, 1.0) or counters
            settled_s = time.monotonic() - started
            after = _samples(pids)
            db_bytes = sum(p.stat().st_size for p in data_dir.glob("otszmq.db*"))
        finally:
            proc.terminate()
            proc.wait(30)
            os.close(ready_r)
            pub.close()
            stats.close()
            context.term()
    cpu_by_process = [later.cpu_seconds - earlier.cpu_seconds
                      for earlier, later in zip(before, after, strict=True)]
    cpu_s = sum(cpu_by_process)
    written = counters.get("records_written", 0)
    return {
        "benchmark": "otszmq.store",
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(),
        "machine": procstat.machine_info(),
        "config": {**asdict(config), "database": url.split(":", 1)[0]},
        "records": config.records,
        "written": written,
        "dropped": counters.get("records_dropped", 0),
        "failed": counters.get("records_failed", 0) + counters.get("records_malformed", 0),
        "send_seconds": round(sent_s, 3),
        "seconds": round(settled_s, 3),
        "written_per_s": round(written / settled_s),
        "store_cpu_seconds": round(cpu_s, 3),
        "store_cpu_us_per_record": round(cpu_s / max(1, written) * 1e6, 2),
        "store_cpu_percent": round(100 * cpu_s / settled_s, 1),
        # The receiving process first, then its writer process.
        "store_cpu_seconds_by_process": [round(seconds, 3) for seconds in cpu_by_process],
        "store_rss_kb": sum(sample.rss_kb for sample in after),
        "database_bytes": db_bytes,
    }


def _samples(pids: tuple[int, ...]) -> list[procstat.ProcSample]:
    """A sample of each of ``pids``; RuntimeError naming one that is gone."""
    samples = []
    for pid in pids:
        sample = procstat.read_proc(pid)
        if sample is None:
            raise RuntimeError(f"store process {pid} is gone")
        samples.append(sample)
    return samples


def parse_args(argv: list[str]) -> StoreBenchConfig:
    parser = argparse.ArgumentParser(prog="benchmarks.store", description=__doc__.split("\n")[0])
    add = parser.add_argument
    defaults = StoreBenchConfig()
    add("--records", type=int, default=defaults.records)
    add("--rate", type=float, default=defaults.rate, help="records/s offered; 0: unpaced")
    add("--batch", type=int, default=defaults.batch, help="records per frame")
    add("--uids", type=int, default=defaults.uids, help="distinct EUDs reporting")
    add("--event-size", type=int, default=defaults.event_size)
    add("--database-url", default="", help="default: SQLite in a temporary directory")
    add("--no-raw-xml", action="store_true", help="the store does not keep each event's XML")
    add("--batch-size", type=int, default=defaults.batch_size, help="records per transaction")
    add("--flush-interval", type=float, default=defaults.flush_interval,
        help="seconds a transaction may wait to fill")
    args = parser.parse_args(argv)
    if args.records < 1 or args.batch < 1 or args.uids < 1 or args.rate < 0:
        parser.error("--records, --batch and --uids must be >= 1, --rate >= 0")
    return StoreBenchConfig(
        records=args.records, rate=args.rate, batch=args.batch, uids=args.uids,
        event_size=args.event_size, database_url=args.database_url, raw_xml=not args.no_raw_xml,
        batch_size=args.batch_size, flush_interval=args.flush_interval,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = run(config)
    except RuntimeError as exc:
        print(f"benchmarks.store: {exc}", file=sys.stderr)
        return 1
    print(
        f"store {result['config']['database']}: {result['written']}/{result['records']} written "
        f"in {result['seconds']} s ({result['written_per_s']}/s), {result['dropped']} dropped; "
        f"CPU {result['store_cpu_us_per_record']} us/record ({result['store_cpu_percent']}%)",
        file=sys.stderr,
    )
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
