"""A per-source allowance of store records that the store keeps even while it sheds.

SHED (otszmq.wire) thins position reports and feeds; what people write by hand (chat, alerts,
markers a person placed ...) is still built and sent as *kept* records, which the store takes
past its queue limit, up to twice it (otszmq.store.buffer). A worker's record frames mix every
source of its drain rounds, and the store can only drop a whole frame: so one client sending
such events in bulk while the store is behind (a replay tool, a bug) could fill that room and
cost every other client's chat its record. Each source may have ``limit`` kept records built
per ``window`` seconds while the store sheds; past that, its events are still routed, only not
recorded (counted). A person writes a few a minute; a data package of markers arrives in a
burst, which ``limit`` leaves room for.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

KEPT_LIMIT: Final = 200
KEPT_WINDOW: Final = 10.0


class SourceBudget:
    """At most ``limit`` uses per source in each ``window`` seconds (a fixed window that starts
    at the source's first use after the last one ended). At most ``sources`` are tracked; when
    full, they are forgotten (each starts over), as the worker's other per-source caches are."""

    __slots__ = ("_limit", "_sources", "_used", "_window")

    def __init__(
        self, sources: int, limit: int = KEPT_LIMIT, window: float = KEPT_WINDOW
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self._sources = sources
        self._limit = limit
        self._window = window
        self._used: dict[Hashable, tuple[float, int]] = {}  # source -> (window start, used)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    def allow(self, source: Hashable, now: float) -> bool:
        """Whether ``source`` may have one more at ``now`` (monotonic seconds); counts it."""
        started, used = self._used.get(source, (now, 0))
        if now - started >= self._window:
            started, used = now, 0
        if used >= self._limit:
            return False
        if len(self._used) >= self._sources and source not in self._used:
            self._used.clear()
        self._used[source] = (started, used + 1)
        return True
