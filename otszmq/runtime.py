"""What every stage's entry point does the same way: logging, sockets, identity.

Only entry points call these; library code is handed its sockets.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid

import zmq

from otszmq.config import Settings


def setup_logging(settings: Settings, role: str) -> str:
    """Configure the root logger for this process; returns the process name."""
    name = settings.name or f"{role}-{os.getpid()}"
    logging.basicConfig(
        level=settings.log_level_number,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)-7s {name} %(name)s: %(message)s",
    )
    return name


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
