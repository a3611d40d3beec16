"""The bounded hand-off between the store's receiving thread and its writing thread.

It holds record frames as they came from the workers, still packed, with their record counts:
~950 bytes a record against ~3 KB unpacked, and the receiving thread's work stays ~5 us a
frame (the writer unpacks, at its own priority; see :mod:`otszmq.store.service`).

Overflow policy: drop-and-count, a frame at a time. While fewer than ``limit`` records wait, a
frame is taken whole, even one that passes the limit (by at most its own records: one worker's
drain round); once ``limit`` or more wait, each arriving frame is dropped whole, at once, and
counted by the caller. So the receiver keeps draining the fan-out, memory stays bounded, and
routing never notices the database either way. A *kept* frame (otszmq.wire: SHED, records of
the kinds workers build even when the store asks for no other) is taken until KEPT_ROOM times
``limit`` records wait: they are few, and no later report makes up for them.
"""

from __future__ import annotations

import threading
import time
from collections import deque

KEPT_ROOM = 2
"""A kept frame is dropped only once this many times the limit of records wait."""

Frame = tuple[bytes, int]
"""A packed record frame and the number of records in it."""


class RecordBuffer:
    """A FIFO of packed record frames, bounded in records; thread-safe."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._frames: deque[Frame] = deque()
        self._records = 0  # in self._frames
        self._ready = threading.Condition(threading.Lock())
        self._closed = False

    def __len__(self) -> int:
        """Records waiting."""
        return self._records

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def full(self) -> bool:
        """Whether an arriving frame would be dropped now."""
        return self._records >= self.limit

    def put(self, frame: bytes, count: int, *, kept: bool = False) -> bool:
        """Queue a frame of ``count`` records (``kept``: see the module's docstring); False
        when it was dropped (the caller counts)."""
        with self._ready:
            if self._records >= (KEPT_ROOM * self.limit if kept else self.limit):
                return False
            self._frames.append((frame, count))
            self._records += count
            self._ready.notify()
        return True

    def take(
        self, limit: int, linger: float = 0.0, timeout: float | None = None
    ) -> list[Frame] | None:
        """Frames holding up to ``limit`` records in all, oldest first; a first frame of more
        than ``limit`` comes alone. None once closed and empty.

        Blocks until a frame is there, or returns ``[]`` after ``timeout`` seconds. With
        ``linger`` > 0 it then waits up to that long for ``limit`` records (fewer, larger
        transactions); a close ends the wait.
        """
        with self._ready:
            if not self._ready.wait_for(lambda: self._frames or self._closed, timeout):
                return []
            if not self._frames:
                return None
            if linger > 0:
                deadline = time.monotonic() + linger
                while self._records < limit and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
            frames = self._frames
            taken = [frames.popleft()]
            records = taken[0][1]
            while frames and records + frames[0][1] <= limit:
                records += frames[0][1]
                taken.append(frames.popleft())
            self._records -= records
            return taken

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
