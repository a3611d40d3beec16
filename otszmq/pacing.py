"""Pacing for background work: leave the core for a moment after every slice of work.

A background stage in the idle CPU class (the store) still keeps a core busy while it works, and
Linux balances runnable tasks onto a core mostly when that core goes idle: a core that never
idles never pulls a routing process that waits behind another one on the other core. Measured
here (2 cores, 10 clients at 20,000 SA/s, store off, a SCHED_IDLE busy loop beside the node):
routing p50 5 ms alone, 14-28 ms next to the loop, p99 14-17 ms alone, 150-210 ms next to it.
The same loop pausing 0.2 ms after every 1 ms of work left routing's p50/p99 within the noise
of no loop; after every 5 ms it did not (p99 54-169 ms). PostgreSQL's vacuum_cost_delay paces
vacuum the same way, for the same kind of reason.

Sans-IO apart from the clock and the sleep, which tests replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["PAUSE_SECONDS", "Pacer", "never_pause"]

PAUSE_SECONDS: Final = 0.0002  # long enough for the core to go idle and pull a waiting task


def never_pause() -> None:
    """The pacer of work that need not leave its core."""


class Pacer:
    """Call the instance at each point where the work may pause: after ``slice_seconds`` of
    wall time since the last pause (or :meth:`rest`) it sleeps ``pause_seconds``;
    ``slice_seconds`` 0 never pauses. One instance per thread: a pause must leave the core."""

    def __init__(
        self,
        slice_seconds: float,
        pause_seconds: float = PAUSE_SECONDS,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if slice_seconds < 0 or pause_seconds <= 0:
            raise ValueError(f"slice must be >= 0 s and pause > 0 s, got {slice_seconds} and "
                             f"{pause_seconds}")
        self.slice_seconds = slice_seconds
        self.pause_seconds = pause_seconds
        self.pauses = 0
        self._clock = clock
        self._sleep = sleep
        self._slice_started = clock()

    def __call__(self) -> None:
        if self.slice_seconds and self._clock() - self._slice_started >= self.slice_seconds:
            self._sleep(self.pause_seconds)
            self.pauses += 1
            self._slice_started = self._clock()

    def rest(self) -> None:
        """The work waited anyway (for input): the next slice starts now."""
        self._slice_started = self._clock()
