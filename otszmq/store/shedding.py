"""How many of the records the workers could build the store wants: the keep ratio (SHED).

The store's writer only gets the CPU routing leaves (otszmq.store.priority), so under a flood
it writes a small fraction of what the workers could send it, and every record built beyond
that is work the workers, the fan-out and the store's receiver spend for nothing, at the moment
routing needs the CPU most (BENCHMARKS.md, tuning step 18). :class:`KeepController` turns what
the store sees into the fraction of *sheddable* records (position reports, feeds' tracks, other
events; not what people write by hand, otszmq.store.records.KEPT_WHILE_SHEDDING) that the
workers should build: ``keep``, in [0, 1].

What it sees, as cumulative counts: records received (queued or dropped), records the workers
skipped (each record frame says how many sheddable ones its worker did not build, so the
demand is measured, not guessed), records written; and the queue depth. The rule keeps the
queue near a target by asking for what the writer writes plus a correction::

    keep = (W + (target - queued) / SETTLE) / D        clamped to [0, 1]

with W the write rate and D the demand (received + skipped, per second). The target depends on
what the demand says about the cause of a backlog:

- demand beyond the best rate the writer has shown lately (by BEYOND_MARGIN): the writer cannot
  keep up however long it is given, so queueing gains nothing; the target is small
  (TRACK_TARGET of the limit) and ``keep`` follows the writer within a tick or two of a flood
  starting;
- demand within the writer's reach: a backlog is a stall (a checkpoint, a vacuum, a slow disk)
  that the writer will work off, so the queue absorbs it (target ABSORB_TARGET of the limit),
  and records are thinned only if it lasts long enough to fill most of the queue.

Sans-IO: it reads no clock and no socket; the store's main thread feeds it (otszmq.store.service).
"""

from __future__ import annotations

import math
from typing import Final

TICK: Final = 0.1
"""Seconds between two looks at the counts (the store's main loop calls at least this often)."""
SETTLE: Final = 1.0
"""Seconds over which ``keep`` corrects the queue towards its target."""
RATE_SMOOTHING: Final = 0.3
"""Time constant of the measured rates, seconds (a few transactions, a few record frames)."""
BEST_WRITE_DECAY: Final = 60.0
"""Time constant, seconds, with which the best write rate seen is forgotten."""
BEYOND_MARGIN: Final = 1.25
"""Demand counts as beyond the writer above this many times its best rate (noise aside)."""
TRACK_TARGET: Final = 0.1
"""Queue target, as a share of the limit, when the demand is beyond the writer. Above what the
writer's own batching holds (a transaction of up to 2,000 records, lingering 0.1 s to fill)."""
ABSORB_TARGET: Final = 0.75
"""Queue target, as a share of the limit, when the demand is within the writer's reach."""
ANNOUNCE_STEP: Final = 0.05
"""A change of ``keep`` smaller than this is not worth telling the workers about."""


class KeepController:
    """The keep ratio from the store's cumulative counts and queue depth (module docstring)."""

    __slots__ = (
        "_best_write", "_counts", "_demand", "_last", "_writes", "keep", "limit",
    )

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.keep = 1.0
        self._last: float | None = None  # the time of the previous update
        self._counts = (0, 0)  # (received + skipped, written) at the previous update
        self._demand = 0.0  # records/s the workers could send (smoothed)
        self._writes = 0.0  # records/s written (smoothed)
        self._best_write = 0.0  # the highest smoothed write rate, slowly forgotten

    def update(self, now: float, received: int, skipped: int, written: int, queued: int) -> float:
        """Take in the store's counts at ``now`` (seconds, any monotonic clock); the new keep.

        ``received``: records that reached the store so far (queued or dropped); ``skipped``:
        sheddable records the workers said they did not build so far; ``written``: records
        written so far; ``queued``: records waiting now.
        """
        counts = (received + skipped, written)
        if self._last is None:
            self._last, self._counts = now, counts
            return self.keep
        elapsed = now - self._last
        if elapsed < TICK / 2:
            return self.keep
        weight = 1.0 - math.exp(-elapsed / RATE_SMOOTHING)
        demanded = (counts[0] - self._counts[0]) / elapsed
        wrote = (counts[1] - self._counts[1]) / elapsed
        self._last, self._counts = now, counts
        self._demand += weight * (demanded - self._demand)
        self._writes += weight * (wrote - self._writes)
        self._best_write = max(
            self._writes, self._best_write * math.exp(-elapsed / BEST_WRITE_DECAY)
        )
        if self._demand <= 0.0:
            self.keep = 1.0
            return self.keep
        beyond = self._demand > BEYOND_MARGIN * self._best_write
        target = (TRACK_TARGET if beyond else ABSORB_TARGET) * self.limit
        wanted = self._writes + (target - queued) / SETTLE
        self.keep = min(1.0, max(0.0, wanted / self._demand))
        return self.keep

    @property
    def write_rate(self) -> float:
        """Records/s written lately (smoothed), for the store's gauges."""
        return self._writes

    @property
    def demand(self) -> float:
        """Records/s the workers could send with keep = 1 (smoothed), for the gauges."""
        return self._demand


def worth_announcing(keep: float, announced: float) -> bool:
    """Whether ``keep`` differs enough from what the workers were last told to tell them."""
    if (keep >= 1.0) != (announced >= 1.0) or (keep <= 0.0) != (announced <= 0.0):
        return True  # into or out of thinning, or into or out of keeping none
    return abs(keep - announced) >= ANNOUNCE_STEP
