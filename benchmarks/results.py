"""Turns what the receivers recorded into delivery, ordering and latency figures.

Runs after the measured window and the drain, so none of this costs anything while the load runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.cotgen import RECORD_FIELDS, SEQ_FIELD, SRC_FIELD, T_FIELD
from benchmarks.scenarios import DIRECT_KINDS, Plan

Json = dict[str, Any]
# One read's worth of deliveries: (receive time in ns on the monotonic clock, joined bench records).
Chunk = tuple[int, bytes]
NS_PER_US = 1000
WORST_PAIRS = 10
TIMELINE_BUCKET_S = 0.25


@dataclass(frozen=True, slots=True)
class Window:
    """The measured window, on the same monotonic clock (ns) as send and receive times."""

    epoch_ns: int
    start_ns: int
    end_ns: int

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(slots=True)
class PairTally:
    """What one receiver got from one sender: counts of measured events by kind."""

    delivered: int = 0
    duplicates: int = 0
    out_of_order: int = 0


@dataclass(slots=True)
class Tally:
    """Totals over all (sender, receiver) pairs, plus the receive-time rate inside the window."""

    latencies_us: list[int] = field(default_factory=list)
    # When each measured event was sent (µs from the epoch), parallel to latencies_us.
    sent_us: list[int] = field(default_factory=list)
    in_window: int = 0
    echoes: int = 0
    pairs: dict[tuple[int, int], PairTally] = field(default_factory=dict)
    # Routed scenarios only (a Plan with direct messages or several kinds): a direct event that
    # reached a client other than its addressee, and the latencies per event kind.
    misdelivered: int = 0
    kind_latencies_us: dict[int, list[int]] = field(default_factory=dict)


def decode(blob: bytes) -> tuple[list[int], list[int], list[int]]:
    """Splits a blob of fixed-width bench records into (senders, sequence numbers, send times µs).

    PERF: one split and three map(int) calls per read, all loops in C.
    """
    fields = blob.split(b'"')
    return (
        list(map(int, fields[SRC_FIELD::RECORD_FIELDS])),
        list(map(int, fields[SEQ_FIELD::RECORD_FIELDS])),
        list(map(int, fields[T_FIELD::RECORD_FIELDS])),
    )


def tally_receiver(
    receiver: int,
    chunks: list[Chunk],
    measured: list[tuple[int, int]],
    window: Window,
    tally: Tally,
    plan: Plan | None = None,
) -> None:
    """Adds one receiver's deliveries to `tally`.

    `measured[s]` is sender s's half-open range of sequence numbers sent inside the window; other
    events (warm-up) only count towards the receive rate; echoes (own events) are counted apart.
    A delivery is a duplicate when that (sender, seq) already arrived, and out of order when a
    higher seq from that sender came first. With a `plan` (direct messages or several kinds of
    event), a direct event counts as delivered only at its addressee - anywhere else it is a
    misdelivery (counted, not delivered) - and latencies are also kept per kind.
    """
    seen = [bytearray(hi - lo) for lo, hi in measured]
    highest = [-1] * len(measured)
    pairs = [PairTally() for _ in measured]
    latencies = tally.latencies_us
    sent = tally.sent_us
    by_kind = tally.kind_latencies_us
    pattern = plan.pattern if plan is not None else ()
    for recv_ns, blob in chunks:
        senders, seqs, sent_us = decode(blob)
        if window.start_ns <= recv_ns < window.end_ns:
            tally.in_window += len(senders)
        recv_us = (recv_ns - window.epoch_ns) // NS_PER_US
        for src, seq, t_us in zip(senders, seqs, sent_us, strict=True):
            if src == receiver:  # a server must never send a client its own events back
                tally.echoes += 1
                continue
            lo, hi = measured[src]
            if not lo <= seq < hi:
                continue
            kind = None
            if plan is not None:
                kind = pattern[seq % len(pattern)]
                if kind in DIRECT_KINDS and plan.addressee(src, seq) != receiver:
                    tally.misdelivered += 1
                    continue
            pair = pairs[src]
            if seen[src][seq - lo]:
                pair.duplicates += 1
                continue
            seen[src][seq - lo] = 1
            pair.delivered += 1
            if seq < highest[src]:
                pair.out_of_order += 1
            else:
                highest[src] = seq
            latencies.append(recv_us - t_us)
            sent.append(t_us)
            if kind is not None:
                by_kind.setdefault(kind, []).append(recv_us - t_us)
    for src, pair in enumerate(pairs):
        if src != receiver:
            tally.pairs[(src, receiver)] = pair


def delivery_result(
    tally: Tally,
    measured: list[tuple[int, int]],
    window: Window,
    owed: dict[tuple[int, int], int] | None = None,
) -> Json:
    """Expected vs delivered over all pairs, and the pairs that did worst.

    `owed` is the deliveries each (sender, receiver) pair is owed (Plan.expected_pairs); without
    it every measured event is owed to every other client (a broadcast).
    """
    if owed is None:
        per_sender = [hi - lo for lo, hi in measured]
        owed = {pair: per_sender[pair[0]] for pair in tally.pairs}
        expected = sum(per_sender) * (len(measured) - 1)
    else:
        expected = sum(owed.values())
    delivered = sum(pair.delivered for pair in tally.pairs.values())
    ratio = delivered / expected if expected else None
    short = [
        (src, receiver, owed.get((src, receiver), 0) - pair.delivered, pair)
        for (src, receiver), pair in tally.pairs.items()
        if pair.delivered < owed.get((src, receiver), 0) or pair.duplicates or pair.out_of_order
    ]
    short.sort(key=lambda item: (item[2], item[3].duplicates, item[3].out_of_order), reverse=True)
    return {
        "expected": expected,
        "delivered": delivered,
        "delivery_ratio": round(ratio, 6) if ratio is not None else None,
        "loss": round(1.0 - ratio, 6) if ratio is not None else None,
        "lost": expected - delivered,
        "deliveries_per_s": round(tally.in_window / window.seconds, 1) if window.seconds else None,
        "duplicates": sum(pair.duplicates for pair in tally.pairs.values()),
        "out_of_order": sum(pair.out_of_order for pair in tally.pairs.values()),
        "echoes": tally.echoes,
        "misdelivered": tally.misdelivered,
        "pairs": len(tally.pairs),
        "pairs_with_problems": len(short),
        "worst_pairs": [
            {
                "sender": src,
                "receiver": receiver,
                "missing": missing,
                "duplicates": pair.duplicates,
                "out_of_order": pair.out_of_order,
            }
            for src, receiver, missing, pair in short[:WORST_PAIRS]
        ],
    }


def latency_result(latencies_us: list[int]) -> Json:
    """Percentiles by nearest rank over every measured delivery (not a histogram estimate)."""
    if not latencies_us:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(latencies_us)
    count = len(ordered)

    def rank(fraction: float) -> float:
        return round(ordered[min(count - 1, int(fraction * count))] / 1000.0, 3)

    return {
        "count": count,
        "min": round(ordered[0] / 1000.0, 3),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1] / 1000.0, 3),
        "mean": round(sum(ordered) / count / 1000.0, 3),
    }


def latency_by_kind(tally: Tally, names: dict[int, str]) -> Json:
    """Latency percentiles per event kind, for routed scenarios (empty for a plain broadcast)."""
    return {
        names[kind]: latency_result(values)
        for kind, values in sorted(tally.kind_latencies_us.items())
    }


def latency_timeline(
    tally: Tally, window: Window, bucket_s: float = TIMELINE_BUCKET_S
) -> list[Json]:
    """Latency percentiles per slice of the window, by send time: when a stall happened.

    NOTE: one slow moment decides a p99 over a short window (1 % of 3 s is 30 ms of traffic);
    the timeline tells a stall apart from a latency that is high throughout.
    """
    start_us = (window.start_ns - window.epoch_ns) // NS_PER_US
    bucket_us = max(1, int(bucket_s * 1e6))
    buckets: dict[int, list[int]] = {}
    for latency, t_us in zip(tally.latencies_us, tally.sent_us, strict=True):
        buckets.setdefault((t_us - start_us) // bucket_us, []).append(latency)
    return [
        {"t_s": round(index * bucket_s, 3), **latency_result(values)}
        for index, values in sorted(buckets.items())
    ]
