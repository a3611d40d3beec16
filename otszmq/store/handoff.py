"""The link between the store's receiving process and its writer process: one ZeroMQ PAIR.

Why two processes: the writer runs in the idle CPU class (otszmq.store.priority), so routing
preempts it whenever it needs a core. When it was a thread of the receiving process, the
receiver's main thread (draining the fan-out, running SHED's controller every 0.1 s) waited for
the GIL held by the preempted writer: measured under overload, gaps between controller ticks of
up to 736 ms, against 147 ms with a writer at normal priority (BENCHMARKS.md). In a process of
its own the writer holds no lock the receiver needs.

The writer pulls; one batch is out at a time, so the receiver's bounded queue is the only queue::

    writer -> receiver   [WANT]             ready for a batch
                         [COUNTS, msgpack]  its cumulative counts (otszmq.store.write_loop)
                         [DONE, msgpack]    its last counts, after END: it is about to exit
    receiver -> writer   [BATCH, counts, frame, ...]  packed record frames and their record
                                            counts (uint32 each, little-endian)
                         [CLOSING]          the store is stopping: what waits still comes
                         [END]              closed and nothing left: finish and exit

The receiver lingers up to ``linger`` seconds for a full batch before it answers a WANT (fewer,
larger transactions). The writer watches a pipe from the receiver (its stdin), whose end of
file says the receiver is gone: then it finishes what it holds and exits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import msgpack
import zmq

from otszmq.errors import StoreError
from otszmq.store.buffer import Frame, RecordBuffer

log = logging.getLogger(__name__)

WANT: Final = b"W"
COUNTS: Final = b"C"
DONE: Final = b"D"
BATCH: Final = b"B"
CLOSING: Final = b"S"
END: Final = b"E"


def _pack_counts(counts: Mapping[str, int]) -> bytes:
    packed: bytes = msgpack.packb(dict(counts))
    return packed


def _unpack_counts(frame: bytes) -> dict[str, int]:
    counts = msgpack.unpackb(frame)
    if not isinstance(counts, dict) or not all(
        isinstance(name, str) and isinstance(value, int) for name, value in counts.items()
    ):
        raise StoreError(f"writer link: counts are not a map of names to integers: {counts!r}")
    return counts


class WriterFeed:
    """The receiving process's end: answers the writer's WANTs from ``buffer``.

    ``on_counts`` gets each report of the writer's cumulative counts. Single-threaded: the
    receiver's main loop calls :meth:`receive` when the link is readable and :meth:`serve` on
    every turn.
    """

    def __init__(
        self,
        link: zmq.Socket[bytes],
        buffer: RecordBuffer,
        *,
        batch_size: int,
        linger: float,
        on_counts: Callable[[Mapping[str, int]], None],
    ) -> None:
        self._link = link
        self._buffer = buffer
        self._batch_size = batch_size
        self._linger = linger
        self._on_counts = on_counts
        self._wanted = False
        self._linger_until: float | None = None
        self._ended = False
        self.done = False  # the writer said DONE
        # Records of the last batch handed to the writer, until it asks for the next: it asks
        # only once that batch is written (or counted by it as lost or malformed).
        self.held = 0
        self._closing_unsaid = False  # the store is stopping, and the writer was not told yet

    def receive(self) -> None:
        """Take in whatever the writer sent."""
        for message in _waiting(self._link):
            if self._closing_unsaid:
                self._say_closing()
            kind = message[0]
            if kind == WANT and len(message) == 1:
                self._wanted = True
                self.held = 0
            elif kind in (COUNTS, DONE) and len(message) == 2:
                self._on_counts(_unpack_counts(message[1]))
                self.done = self.done or kind == DONE
            else:
                raise _unexpected(message)

    def serve(self, now: float) -> float | None:
        """Hand the writer a batch if it wants one and the time has come; returns when to call
        again at the latest (the end of a linger), or None for "when something happens"."""
        if not self._wanted or self._ended:
            return None
        buffer = self._buffer
        if not buffer.has_frames:
            if buffer.closed:
                self._link.send(END)
                self._ended = True
            return None
        if self._linger > 0 and len(buffer) < self._batch_size and not buffer.closed:
            if self._linger_until is None:
                self._linger_until = now + self._linger
            if now < self._linger_until:
                return self._linger_until
        frames = buffer.take(self._batch_size)
        records = [count for _, count in frames]
        counts = struct.pack(f"<{len(frames)}I", *records)
        self._link.send_multipart([BATCH, counts, *(frame for frame, _ in frames)], copy=False)
        self.held = sum(records)
        self._wanted = False
        self._linger_until = None
        return None

    def close(self) -> None:
        """The store is stopping: tell the writer (it gives up on an unavailable database after
        a while); what waits is still handed out, then END."""
        self._buffer.close()
        self._closing_unsaid = True
        self._say_closing()

    def _say_closing(self) -> None:
        # NOTE: a PAIR blocks a send until its peer has connected: a writer just started (one
        # replacing a failed one) is told when its first message comes.
        with contextlib.suppress(zmq.Again):
            self._link.send(CLOSING, zmq.NOBLOCK)
            self._closing_unsaid = False


class LinkSource:
    """The writer process's end: a :class:`otszmq.store.write_loop.FrameSource` over the link.

    ``parent_fd``: the read end of a pipe the receiving process holds open; its end of file
    says that process is gone.
    """

    def __init__(self, link: zmq.Socket[bytes], parent_fd: int) -> None:
        self._link = link
        self._parent_fd = parent_fd
        self._poller = zmq.Poller()
        self._poller.register(link, zmq.POLLIN)
        self._poller.register(parent_fd, zmq.POLLIN)
        self._asked = False
        self._batch: list[Frame] | None = None
        self._ended = False
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self, timeout: float) -> list[Frame] | None:
        if self._batch is None and not self._ended and not self._asked:
            self._link.send(WANT)
            self._asked = True
        self._wait(timeout, lambda: self._batch is not None or self._ended)
        batch, self._batch = self._batch, None
        if batch is not None:
            self._asked = False
            return batch
        return None if self._ended else []

    def wait_closed(self, timeout: float) -> bool:
        self._wait(timeout, lambda: self._closed)
        return self._closed

    def report(self, counts: Mapping[str, int]) -> None:
        self._link.send_multipart([COUNTS, _pack_counts(counts)])

    def finish(self, counts: Mapping[str, int]) -> None:
        """The last word, before the process exits: its final counts."""
        self._link.send_multipart([DONE, _pack_counts(counts)])

    def _wait(self, timeout: float, done: Callable[[], bool]) -> None:
        """Handle messages until ``done()`` or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = max(0.0, deadline - time.monotonic())
            events = dict(self._poller.poll(math.ceil(remaining * 1000)))
            if self._parent_fd in events:
                log.warning("the store's receiving process is gone: finishing")
                self._poller.unregister(self._parent_fd)  # end of file stays readable
                self._closed = self._ended = True
            if self._link in events:
                self._receive()
            elif not events and remaining <= 0:
                return

    def _receive(self) -> None:
        for message in _waiting(self._link):
            kind = message[0]
            if kind == BATCH and len(message) >= 2 and self._batch is None:
                counts = struct.unpack(f"<{len(message) - 2}I", message[1])
                self._batch = list(zip(message[2:], counts, strict=True))
            elif kind == CLOSING and len(message) == 1:
                self._closed = True
            elif kind == END and len(message) == 1:
                self._closed = self._ended = True
            else:
                raise _unexpected(message)


def _waiting(link: zmq.Socket[bytes]) -> Iterator[list[bytes]]:
    """The messages waiting on ``link``, without blocking."""
    while True:
        try:
            yield link.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return


def _unexpected(message: list[bytes]) -> StoreError:
    # Both ends are this module: a message outside the protocol is a bug, not bad input.
    return StoreError(f"writer link: unexpected message {message[:1]!r} of {len(message)} frames")
