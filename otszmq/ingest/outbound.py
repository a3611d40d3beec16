"""Per-client outbound path: coalesced writes and a bounded backlog for slow clients.

While a client keeps up, deliveries are appended to ``Outbound.batch`` (whole events, or
slices of a run of events shared by every reader: see :mod:`otszmq.ingest.delivery`) and
written with one ``transport.write`` or ``writelines`` per event-loop iteration. When the
transport's own buffer passes its high-water mark (asyncio calls ``pause_writing``),
deliveries go to a :class:`Backlog` instead, whose policy is DESIGN §3's:

- position reports are *coalesced* per uid: only the newest waits, in the place
  of the first one (clients only care where a contact is now);
- every other event is kept, never silently dropped;
- what waits for a client (the transport's buffer plus the backlog) is bounded
  in bytes; a client over the bound for longer than the slow-client timeout, or
  over four times the bound at any moment, is disconnected by the caller and
  counted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict

Chunk = bytes | memoryview
"""What a write batch holds: events, or a slice of a run's joined bytes."""

HARD_LIMIT_FACTOR = 4
"""A backlog this many times over its bound disconnects at once, timeout or not."""

WRITE_CHUNK = 256 * 1024
"""Bytes handed to the transport per write while draining a backlog."""


class Backlog:
    """Ordered pending events of one paused client, with per-uid SA coalescing."""

    __slots__ = ("_items", "_seq", "size")

    def __init__(self) -> None:
        # Key: ("p", uid) for a coalescible position report, ("e", n) otherwise.
        self._items: OrderedDict[tuple[str, object], bytes] = OrderedDict()
        self._seq = itertools.count()
        self.size = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, data: bytes, position_uid: str | None) -> bool:
        """Queue ``data``; True if it replaced an older report of the same uid."""
        if position_uid is not None:
            key: tuple[str, object] = ("p", position_uid)
            old = self._items.get(key)
            self._items[key] = data
            if old is not None:
                self.size += len(data) - len(old)
                return True
        else:
            self._items[("e", next(self._seq))] = data
        self.size += len(data)
        return False

    def barrier(self) -> None:
        """Let no later report coalesce with one queued so far (the encoding changed).

        NOTE: a coalesced report takes the place of the first one; after the switch to TAK
        protocol that place may be before the t-x-takp-r response, where XML is expected.
        """
        self._items = OrderedDict(
            (("e", next(self._seq)) if key[0] == "p" else key, data)
            for key, data in self._items.items()
        )

    def take(self, limit: int) -> list[bytes]:
        """Remove and return the oldest events, about ``limit`` bytes (at least one)."""
        taken: list[bytes] = []
        total = 0
        while self._items and (not taken or total < limit):
            _, data = self._items.popitem(last=False)
            taken.append(data)
            total += len(data)
        self.size -= total
        return taken


class Outbound:
    """What one client is about to receive."""

    __slots__ = ("backlog", "batch", "coalesced", "over_since", "paused", "proto", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.batch: list[Chunk] = []
        self.backlog: Backlog | None = None
        self.paused = False
        self.over_since: float | None = None
        self.coalesced = 0
        # True once the client negotiated TAK protocol v1: everything queued from then on is
        # a 0xbf stream message (the caller encodes; see IngestService._deliver).
        self.proto = False

    def add_slow(self, data: bytes, position_uid: str | None) -> None:
        """Queue for a paused client (the fast path appends to ``batch`` directly)."""
        if self.backlog is None:
            self.backlog = Backlog()
        if self.backlog.add(data, position_uid):
            self.coalesced += 1

    def flush(self) -> None:
        """Write this iteration's batch (one syscall), or move it to the backlog."""
        batch = self.batch
        if not batch:
            return
        self.batch = []
        if self.paused or self.backlog is not None:
            # Order: anything already waiting goes first. A slice becomes bytes of its own, so
            # that a backlog never keeps a whole shared run alive.
            for data in batch:
                self.add_slow(data if isinstance(data, bytes) else bytes(data), None)
            return
        if len(batch) == 1:
            self.transport.write(batch[0])
        else:
            # PERF: one writev of the chunks, no join (slices of shared runs stay uncopied).
            self.transport.writelines(batch)

    def send_now(self, data: bytes) -> None:
        """Queue ``data`` after what is queued and flush at once (rare control answers).

        NOTE: flushed now, not at the end of the loop iteration, so that nothing queued later
        can overtake it (a pause sends later events to the backlog, ahead of an unflushed
        batch). Raises what ``transport.write`` raises.
        """
        self.batch.append(data)
        self.flush()

    def switch_to_proto(self, last_xml: bytes) -> None:
        """Send ``last_xml`` (the t-x-takp-r response) after what is queued; protobuf after it."""
        self.send_now(last_xml)
        self.proto = True
        if self.backlog is not None:
            self.backlog.barrier()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """The transport drained: feed it from the backlog until it pauses again."""
        self.paused = False
        backlog = self.backlog
        while backlog is not None and len(backlog) and not self.paused:
            self.transport.write(b"".join(backlog.take(WRITE_CHUNK)))
        if backlog is not None and not len(backlog):
            self.backlog = None
            self.over_since = None

    def backlog_bytes(self) -> int:
        return self.backlog.size if self.backlog is not None else 0

    def queued_bytes(self) -> int:
        """Everything written or queued for the client but not yet taken by the kernel."""
        return self.transport.get_write_buffer_size() + self.backlog_bytes()

    def check_bound(self, bound: int, now: float, timeout: float) -> str | None:
        """Apply the slow-client policy; returns why to disconnect, or None."""
        size = self.queued_bytes()
        if size <= bound:
            self.over_since = None
            return None
        if size > bound * HARD_LIMIT_FACTOR:
            return f"{size} bytes queued, over {HARD_LIMIT_FACTOR}x the bound {bound}"
        if self.over_since is None:
            self.over_since = now
            return None
        if now - self.over_since > timeout:
            return f"over {bound} bytes queued for more than {timeout:g} s"
        return None
