"""The floor: CPU each stage of otszmq must spend per event, measured in-process on one core.

A relay that does not parse can forward an event for the cost of its reads and writes; a TAK
server parses each event once (it must know the sender, the type, the destinations, the groups).
This measures, with the server's own code and a realistic 600-byte SA, the per-event work of
every stage that cannot be skipped, and the ceiling it sets on a machine with this many cores:

    ingest in      frame one event out of a read (XmlFramer.feed)
    worker         parse (lxml + field extraction, BATCH events per libxml2 call as a worker
                   does: CotParser.parse_batch), route, pack the routed header
    store record   with the store on, the worker's extra work: the event's store record and
                   its share of the round's packed records (not in the ceiling: the store
                   can be off)
    ingest out     unpack the routed header, once per event, plus per receiver a delivery
                   (registry lookup, batch append, and the write's share of the join)

Nothing here is a socket or a process boundary, so the numbers are lower bounds: the pipeline's
ZeroMQ hops, system calls and the kernel's loopback work come on top. Compare the ceiling with
the relay's measured max rate (BENCHMARKS.md) to see whether a ratio target can be met at all.

    python -m benchmarks.floor --clients 10,50 --cores 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from benchmarks import procstat
from benchmarks.cotgen import SaFactory, cot_times
from benchmarks.jsonout import print_json
from otszmq.ingest.framing import XmlFramer
from otszmq.safexml import hardened_parser
from otszmq.store.records import pack_records, record_from_event
from otszmq.wire import SourceHeader, SourceKind, pack_routed_batch, unpack_routed_batch
from otszmq.workers.cot import CotEvent, CotParser
from otszmq.workers.router import route
from otszmq.workers.service import routed_entry

Json = dict[str, Any]

REPEATS = 5
BATCH = 100  # events per routed batch, about what a worker's drain round holds under load


def per_call_us(work: Callable[[], object], calls: int) -> float:
    """The fastest of REPEATS timings of ``calls`` calls, in microseconds per call (the
    fastest: noise on a shared machine only ever adds)."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def sample_event() -> bytes:
    factory = SaFactory("f100f100", 1, 600)
    return factory.event(factory.header(*cot_times(datetime.now(UTC))), 1, 1)


def measure(calls: int) -> Json:
    event = sample_event()
    parser = CotParser()
    raw_parser = hardened_parser()
    framer = XmlFramer(1 << 20)
    source = SourceHeader(SourceKind.EVENT, "ingest", 1, "peer", "uid", ("__ANON__",), "")

    batch = [event] * BATCH
    # lxml's own parse of the same events joined under one element: what the batch parse
    # cannot go below (no field is read).
    joined = b"<b>" + b"".join(batch) + b"</b>"

    def worker() -> None:
        # One drain round's worth, as a worker handles it: parsed in batches, each routed,
        # packed once (measured per call, reported per event).
        out = []
        for parsed in parser.parse_batch(batch):
            assert isinstance(parsed, CotEvent), parsed
            out.append(routed_entry(source, route(parsed, source), parsed))
        pack_routed_batch("w", 1, out)

    # A routed batch of BATCH events is unpacked once by ingest: per event, a share of it.
    parsed = parser.parse(event)
    one = routed_entry(source, route(parsed, source), parsed)
    routed = pack_routed_batch("w", 1, [one] * BATCH)

    record = record_from_event(parsed, "uid", source.groups_in)
    assert record is not None, "an SA always makes a store record"
    records = [record] * BATCH
    store_calls = [0]

    def store_record() -> None:
        record_from_event(parsed, "uid", source.groups_in)
        store_calls[0] += 1
        if store_calls[0] % BATCH == 0:
            pack_records(records)

    writes: list[bytes] = []

    def deliver_one() -> None:
        # The per-receiver work of a delivery (otszmq.ingest.delivery) and the flush: append to the
        # receiver's batch; the join below is paid once per receiver per loop turn.
        writes.append(event)
        if len(writes) >= 8:
            b"".join(writes)
            writes.clear()

    return {
        "event_bytes": len(event),
        "lxml_parse_us": round(per_call_us(lambda: etree.fromstring(event, raw_parser), calls), 2),
        "lxml_parse_batched_us": round(
            per_call_us(lambda: etree.fromstring(joined, raw_parser), calls // BATCH) / BATCH, 2
        ),
        "ingest_in_us": round(per_call_us(lambda: framer.feed(event), calls), 2),
        "worker_us": round(per_call_us(worker, calls // BATCH) / BATCH, 2),
        "worker_store_record_us": round(per_call_us(store_record, calls), 2),
        "ingest_out_per_event_us": round(
            per_call_us(lambda: unpack_routed_batch(routed), calls // BATCH) / BATCH, 2
        ),
        "ingest_out_per_delivery_us": round(per_call_us(deliver_one, calls), 3),
    }


def ceiling(costs: Json, clients: int, cores: int, generator_us: float) -> Json:
    """Events/s the measured work allows when ``cores`` cores do nothing else but it (and the
    generator, at ``generator_us`` per event, if given)."""
    per_event = (costs["ingest_in_us"] + costs["worker_us"] + costs["ingest_out_per_event_us"]
                 + costs["ingest_out_per_delivery_us"] * (clients - 1))
    return {
        "clients": clients,
        "server_us_per_event": round(per_event, 2),
        "generator_us_per_event": generator_us,
        "max_events_per_s": round(cores * 1e6 / (per_event + generator_us)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.floor", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="10,50", help="comma-separated client counts")
    parser.add_argument("--cores", type=int, default=2, help="cores the ceiling may use")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per timing")
    parser.add_argument("--generator-us", type=float, default=0.0,
                        help="the load generator's CPU per event, us (it shares the cores)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        counts = [int(c) for c in args.clients.split(",") if c]
    except ValueError:
        parser.error(f"--clients: not integers: {args.clients}")
    if not counts or min(counts) < 2 or args.cores < 1 or args.calls < 100:
        parser.error("--clients must be >= 2 each, --cores >= 1, --calls >= 100")
    costs = measure(args.calls)
    ceilings = [ceiling(costs, n, args.cores, args.generator_us) for n in counts]
    result: Json = {
        "benchmark": "otszmq.floor",
        "schema": 1,
        "machine": procstat.machine_info(),
        "costs_us": costs,
        "ceilings": ceilings,
    }
    for line in ceilings:
        print(f"{line['clients']:>4} clients: {line['server_us_per_event']} us of server work per "
              f"event -> at most {line['max_events_per_s']:,} events/s on {args.cores} cores",
              file=sys.stderr)
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
