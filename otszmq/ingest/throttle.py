"""Pausing and resuming the reading of client connections, for the worker pool's CREDIT.

A paused client's bytes stay in the kernel's socket buffers and then in the client (TCP flow
control), so nothing is lost and nothing more is held here. Writing to it goes on: it still
receives what others send.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from otszmq.ingest.registry import Registry


class ReadThrottle:
    """``workerpool.SourceThrottle`` over this ingest's registered connections."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def pause(self, conn_id: int) -> bool:
        conn = self._registry.by_id.get(conn_id)
        if conn is None or conn.closing:
            return False  # a pseudo source (inject, probe), or a client going away
        if not conn.paused:
            conn.paused = True
            conn.out.transport.pause_reading()
        return True

    def resume(self, conn_ids: Iterable[int]) -> None:
        now = time.monotonic()
        by_id = self._registry.by_id
        for conn_id in conn_ids:
            conn = by_id.get(conn_id)
            if conn is None or conn.closing or not conn.paused:
                continue
            conn.paused = False
            # The pause was ours, not the client's silence (the idle sweep).
            conn.last_activity = now
            conn.out.transport.resume_reading()
