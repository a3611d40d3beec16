"""The store writer's CPU priority: the database gets only the CPU routing leaves (DESIGN §4)."""

from __future__ import annotations

import logging
import os
from typing import Final

log = logging.getLogger(__name__)

LOW_NICE: Final = 10
IDLE_FALLBACK_NICE: Final = 19


def lower_priority(priority: str) -> None:
    """Lower the calling thread's CPU priority to ``idle``, ``low`` or ``normal`` (no change);
    the choices are config.STORE_PRIORITIES.

    NOTE: for the calling thread only, and the threads it starts afterwards: on Linux the
    scheduling class and the nice value are per thread (sched_setscheduler and setpriority with
    pid 0) and inherited. The store's writer process calls it first thing (otszmq.store.
    writer_process); the store's receiving process keeps routing's priority, so the store keeps
    draining the fan-out into its bounded queue and drops there at overload. A receiver in the
    idle class was starved exactly then, and the fan-out queued for it instead, in memory:
    20 MB/s at 10 clients x 25,000 SA/s, up to fanout_hwm messages. A receiver *thread* beside
    an idle-class writer thread waited for the GIL the preempted writer held (otszmq.store.
    handoff): hence the process.

    PERF: on a small machine the store's CPU is what competes with routing; SQLite alone costs
    ~12-16 us per SA record here, so at tens of thousands of events/s the store wants more CPU
    than routing leaves. ``idle`` (Linux SCHED_IDLE: any routing process that wakes preempts it)
    keeps routing's latency; the store then catches up from its bounded queue or drops and counts
    (records_dropped). Measured here, 10 clients at 21,700 SA/s: p99 16-22 ms idle, 25-54 ms
    at nice 19, 86-100 ms at nice 10 (``low``), 12-18 ms with no store; records dropped 20.6%,
    10.7%, 2.6%. At the hundreds of records/s of a real deployment none is dropped either way.
    """
    if priority == "normal":
        return
    if priority == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except (AttributeError, OSError) as exc:  # not Linux, or not allowed here
            log.warning("cannot use the idle CPU class (%s); using nice %d instead", exc,
                        IDLE_FALLBACK_NICE)
            os.nice(IDLE_FALLBACK_NICE)
            return
    os.nice(LOW_NICE)
