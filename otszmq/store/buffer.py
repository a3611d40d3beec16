"""The bounded hand-off between the store's receiving thread and its writing thread.

Overflow policy: drop-and-count. When the database falls behind (a slow disk, PostgreSQL
restarting), records past ``limit`` are dropped at once and counted, so the receiver keeps
draining the fan-out and memory stays bounded; routing never notices either way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence


class RecordBuffer:
    """A FIFO of unpacked (not yet checked) records with a hard bound; thread-safe."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._items: deque[object] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_many(self, records: Sequence[object]) -> int:
        """Append what fits; returns how many were dropped (counted by the caller)."""
        with self._ready:
            room = self.limit - len(self._items)
            accepted = records if len(records) <= room else records[:max(0, room)]
            self._items.extend(accepted)
            if accepted:
                self._ready.notify()
        return len(records) - len(accepted)

    def take(
        self, limit: int, linger: float = 0.0, timeout: float | None = None
    ) -> list[object] | None:
        """Up to ``limit`` records, oldest first; None once closed and empty.

        Blocks until at least one record is there, or returns ``[]`` after ``timeout`` seconds.
        With ``linger`` > 0 it then waits up to that long for ``limit`` records (fewer, larger
        transactions); a close ends the wait.
        """
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self._closed, timeout):
                return []
            if not self._items:
                return None
            if linger > 0:
                deadline = time.monotonic() + linger
                while len(self._items) < limit and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
            items = self._items
            return [items.popleft() for _ in range(min(limit, len(items)))]

    def wait_closed(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` unless closed meanwhile; True if closed (a back-off wait)."""
        with self._ready:
            if not self._closed:
                self._ready.wait_for(lambda: self._closed, timeout)
            return self._closed

    def close(self) -> None:
        """No more records will come: wake the taker, which drains what is left."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
