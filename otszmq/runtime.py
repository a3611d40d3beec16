"""What every stage's entry point does the same way: logging, sockets, identity.

Only entry points call these; library code is handed its sockets.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import zmq

from otszmq.config import Settings

GC_YOUNG_THRESHOLD = 50_000
"""Net container allocations that start a young-generation collection (CPython's default: 700)."""


def tune_gc() -> None:
    """Collect garbage cycles much less often; call once start-up is done, before serving.

    PERF: a stage that holds many live containers (the store's record buffer: a list and a dict
    per record) pays for the cyclic collector at every 700 net allocations, and a collection of
    an older generation walks every object held. Measured here on the store at 15,000 records/s:
    15% of its CPU in gc_collect_main and its visitors. Our data are trees, not cycles, and
    reference counting frees them; the collector still runs, ~70x less often. What start-up
    made (modules, settings, sockets) is frozen out of every collection.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def setup_logging(settings: Settings, role: str) -> str:
    """Configure the root logger for this process; returns the process name."""
    name = settings.name or f"{role}-{os.getpid()}"
    configure_logging(name, settings.log_level_number)
    return name


def configure_logging(name: str, level: int) -> None:
    """Log to stderr at ``level``, each line naming the process ``name``."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)-7s {name} %(name)s: %(message)s",
    )


def instance_id(name: str) -> str:
    """Unique across restarts and hosts: a restarted process is a new source/worker."""
    return f"{socket.gethostname()}/{name}/{uuid.uuid4().hex[:8]}"


def make_socket(
    context: zmq.Context[zmq.Socket[bytes]], kind: int, *, linger_ms: int, hwm: int
) -> zmq.Socket[bytes]:
    """A socket with explicit linger and high-water marks (never the defaults)."""
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    return sock


def prepare_ipc(settings: Settings) -> None:
    """Create the data directory that holds the default ipc:// endpoints."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)


@contextmanager
def wakeup_pipe() -> Iterator[int]:
    """A pipe that a signal writes to (``signal.set_wakeup_fd``); yields its read end.

    A blocking ``zmq.Poller`` that also polls this fd wakes at once on SIGTERM/SIGINT
    instead of at its next timeout.
    """
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    try:
        yield wake_r
    finally:
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)


def stop_on_signals(request_stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask the service to stop (it finishes what it holds)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def report_ready(settings: Settings) -> None:
    """Tell the supervisor (or a test) over the inherited pipe that this stage is up."""
    if settings.ready_fd >= 0:
        os.write(settings.ready_fd, b"ready\n")
