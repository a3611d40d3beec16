"""Server-made events into the pipeline: the API's markers, the bridge's events from RabbitMQ.

An :class:`Injector` is a PUSH socket connected to the node's inject endpoint, which the first
ingest process binds (``Settings.inject_endpoint_url``). What it sends is routed and stored like
a client's events (``otszmq.wire``, INJECT). Sends never block: a caller on a request thread or
an event loop must not stall because ingest is restarting, so a full queue or an absent ingest
drops the message and the caller counts it (``send`` returns False).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import zmq

from otszmq.logthrottle import LogThrottle
from otszmq.wire import (
    INJECT_DISCONNECT,
    INJECT_EVENTS,
    INJECT_REGROUP,
    Disconnect,
    InjectHeader,
    Regroup,
    pack_disconnect,
    pack_inject,
    pack_regroup,
)

if TYPE_CHECKING:
    from otszmq.config import Settings

log = logging.getLogger(__name__)

DEFAULT_HWM = 10_000
"""Messages queued toward ingest while it is slow or restarting, then sends are refused."""

FIRST_CONNECT_WAIT_MS = 1000
"""How long the first send of a process waits for the connection to ingest to come up."""


class Injector:
    """Non-blocking sender of server-made events and channel changes to one node.

    Thread-safe (a lock around the socket): gunicorn's threads and the bridge's loop may share
    one. The socket is made on first use in each process: the API builds its app (and this) in
    gunicorn's arbiter before the workers fork, and a ZeroMQ context must never cross a fork.
    """

    def __init__(self, endpoint: str, source: str, *, hwm: int = DEFAULT_HWM) -> None:
        self.endpoint = endpoint
        self.source = source
        self._hwm = hwm
        self._lock = threading.Lock()
        self.dropped = 0  # sends refused (no ingest, or its queue full), for the caller's counters
        # A busy bridge would otherwise log a line per event while ingest restarts.
        self._drop_log = LogThrottle()
        self._pid = 0
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._socket: zmq.Socket[bytes] | None = None

    def _connected(self) -> zmq.Socket[bytes]:
        if self._socket is None or self._pid != os.getpid():
            # A socket inherited over fork is the parent's: leave it alone, make our own.
            self._pid = os.getpid()
            self._context = zmq.Context()
            sock = self._context.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, self._hwm)
            sock.setsockopt(zmq.LINGER, 1000)  # what close() leaves unsent gets 1 s
            # Without IMMEDIATE, PUSH queues for a peer that is not there yet; with it, a send
            # with no connected ingest fails at once (zmq.Again) and the caller counts it.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.connect(self.endpoint)
            # ZeroMQ connects in the background: give a fresh socket a moment to reach ingest,
            # once, so the first message after start-up is not refused for nothing.
            sock.poll(FIRST_CONNECT_WAIT_MS, zmq.POLLOUT)
            self._socket = sock
        return self._socket

    @classmethod
    def for_settings(cls, settings: Settings, source: str) -> Injector:
        return cls(settings.inject_endpoint_url, source)

    def send(
        self,
        events: Sequence[bytes],
        *,
        groups_in: Sequence[str],
        origin: str = "",
        sender_uid: str = "",
    ) -> bool:
        """Queue complete CoT events (one ``<event>`` each), written to ``groups_in``.

        ``origin`` is "" for events made on this node, else the id of the server they came
        from (federation). False if the message was dropped (queue full, no ingest).
        """
        header = InjectHeader(self.source, origin, sender_uid, tuple(groups_in))
        return self._send([INJECT_EVENTS, pack_inject(header), *events])

    def regroup(self, user: str, groups_in: Sequence[str], groups_out: Sequence[str]) -> bool:
        """``user``'s active channels changed: ingest regroups its live connections at once."""
        return self._send([INJECT_REGROUP, pack_regroup(
            Regroup(user, tuple(groups_in), tuple(groups_out))
        )])

    def disconnect(self, user: str, reason: str) -> bool:
        """``user`` may no longer stream: ingest closes its live connections at once."""
        return self._send([INJECT_DISCONNECT, pack_disconnect(Disconnect(user, reason))])

    def _send(self, frames: list[bytes]) -> bool:
        with self._lock:
            try:
                self._connected().send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                self._dropped(time.monotonic())
                return False
        return True

    def _dropped(self, now: float) -> None:
        """Count a refused send; say so now and then (otszmq.logthrottle)."""
        self.dropped += 1
        unlogged = self._drop_log.allow(now=now)
        if unlogged:
            log.warning("%s: no ingest accepting at %s: %d message(s) dropped (%d in all)",
                        self.source, self.endpoint, unlogged, self.dropped)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None and self._pid == os.getpid():
                self._socket.close()
                assert self._context is not None
                self._context.term()
            self._socket = self._context = None

    def __enter__(self) -> Injector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
