"""The bounded queue of record frames between the store's receiver and its writer process.

It holds record frames as they came from the workers, still packed, with their record counts:
~950 bytes a record against ~3 KB unpacked, and the receiver's work stays ~5 us a frame (the
writer process unpacks, at its own priority; see :mod:`otszmq.store.service`). Only the
receiving thread uses it: the writer gets its batches through :mod:`otszmq.store.handoff`.

Overflow policy: drop-and-count, a frame at a time. While fewer than ``limit`` records wait, a
frame is taken whole, even one that passes the limit (by at most its own records: one worker's
drain round); once ``limit`` or more wait, each arriving frame is dropped whole, at once, and
counted by the caller. So the receiver keeps draining the fan-out, memory stays bounded, and
routing never notices the database either way. A *kept* frame (otszmq.wire: SHED, records of
the kinds workers build even when the store asks for no other) is taken until KEPT_ROOM times
``limit`` records wait: they are few, and no later report makes up for them.
"""

from __future__ import annotations

from collections import deque

KEPT_ROOM = 2
"""A kept frame is dropped only once this many times the limit of records wait."""

Frame = tuple[bytes, int]
"""A packed record frame and the number of records in it."""


class RecordBuffer:
    """A FIFO of packed record frames, bounded in records; for one thread."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._frames: deque[Frame] = deque()
        self._records = 0  # in self._frames
        self.closed = False

    def __len__(self) -> int:
        """Records waiting."""
        return self._records

    @property
    def has_frames(self) -> bool:
        """Whether a frame waits (one may hold no records: only a count of skipped ones)."""
        return bool(self._frames)

    def put(self, frame: bytes, count: int, *, kept: bool = False) -> bool:
        """Queue a frame of ``count`` records (``kept``: see the module's docstring); False
        when it was dropped (the caller counts)."""
        if self._records >= (KEPT_ROOM * self.limit if kept else self.limit):
            return False
        self._frames.append((frame, count))
        self._records += count
        return True

    def take(self, limit: int) -> list[Frame]:
        """Frames holding up to ``limit`` records in all, oldest first (``[]`` when none
        waits); a first frame of more than ``limit`` comes alone."""
        frames = self._frames
        if not frames:
            return []
        taken = [frames.popleft()]
        records = taken[0][1]
        while frames and records + frames[0][1] <= limit:
            records += frames[0][1]
            taken.append(frames.popleft())
        self._records -= records
        return taken

    def close(self) -> None:
        """No more records will come (the store is stopping); what waits is still taken."""
        self.closed = True
