"""The store's writer process: started by the store's receiving process, fed over a PAIR link.

:func:`spawn_writer` starts it (``python -m otszmq.store.writer_process``) and returns a
:class:`WriterProcess` handle. The child reads its :class:`WriterSpec` from its stdin
(length-prefixed msgpack), lowers its CPU priority before it makes any thread (so ZeroMQ's I/O
thread inherits it too), opens its own database connection and runs a
:class:`otszmq.store.write_loop.WriteLoop` over a :class:`otszmq.store.handoff.LinkSource`.

Lifetimes: the parent keeps the child's stdin open and never writes to it again, so its end of
file tells the child that the parent is gone; the child's stdout stays open until it exits, so
its end of file tells the parent that the child is gone. SIGINT from a terminal is the parent's
to handle (the child ignores it); the parent stops the child by closing the link (END).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import IO, Final

import msgpack
import zmq

from otszmq.errors import StoreError
from otszmq.pacing import Pacer
from otszmq.runtime import configure_logging, make_socket
from otszmq.store.database import open_database
from otszmq.store.handoff import LinkSource
from otszmq.store.models import MODELS
from otszmq.store.priority import lower_priority
from otszmq.store.write_loop import WriteLoop
from otszmq.store.writer import RecordWriter, Retention

log = logging.getLogger(__name__)

LINK_HWM: Final = 1000  # messages; at most one batch and a few reports are ever in flight
LENGTH: Final = struct.Struct("<I")


@dataclass(frozen=True)
class WriterSpec:
    """What the writer process needs to know."""

    name: str  # the store's process name; the writer logs as "<name>/writer"
    log_level: int
    database_url: str
    store_raw_xml: bool
    batch_size: int
    retention: Retention
    prune_interval: float
    work_slice: float
    priority: str  # one of config.STORE_PRIORITIES
    endpoint: str = ""  # the link's; spawn_writer sets it


class WriterProcess:
    """The receiving process's handle on its writer process."""

    def __init__(self, proc: subprocess.Popen[bytes], link: zmq.Socket[bytes]) -> None:
        assert proc.stdout is not None
        self.link = link
        self._proc = proc
        self._stdout: IO[bytes] = proc.stdout

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def exit_fd(self) -> int:
        """Readable once the process has exited (or wrote to its stdout: see :meth:`exited`)."""
        return self._stdout.fileno()

    def exited(self) -> bool:
        """Whether :attr:`exit_fd`, found readable, says the process has exited; anything a
        library printed to the child's stdout is read and dropped."""
        return not os.read(self.exit_fd, 4096)

    def wait(self, timeout: float | None = None) -> int:
        return self._proc.wait(timeout)

    def exit_status(self) -> str:
        """How the process ended, for an error message (waits for it)."""
        code = self._proc.wait()
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def close(self) -> None:
        """Release the process and the link; a writer still running is killed (the parent
        stops it with END first: this is for the parent's own failures)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdin, self._stdout):
            if pipe is not None:
                pipe.close()
        self.link.close()


def spawn_writer(
    context: zmq.Context[zmq.Socket[bytes]], spec: WriterSpec, directory: Path
) -> WriterProcess:
    """Bind a link in ``directory`` and start a writer process on it."""
    # NOTE: a socket file in the data directory, whose permissions keep other local users off
    # it, like the node's other ipc:// endpoints. An abstract-namespace name would be listed in
    # /proc/net/unix, open to any local process that connected first.
    # A name of its own for each writer: libzmq removes a closed link's socket file in its
    # reaper thread, which could come after a replacement writer's link bound the same name.
    endpoint = f"ipc://{directory / f'store-writer-{os.getpid()}-{secrets.token_hex(4)}.ipc'}"
    link = make_socket(context, zmq.PAIR, linger_ms=0, hwm=LINK_HWM)
    try:
        link.bind(endpoint)
        proc = subprocess.Popen(
            [sys.executable, "-m", "otszmq.store.writer_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
    except (zmq.ZMQError, OSError) as exc:
        link.close()
        raise StoreError(f"{spec.name}: cannot start the writer process: {exc}") from exc
    assert proc.stdin is not None
    payload = _pack_spec(replace(spec, endpoint=endpoint))
    proc.stdin.write(LENGTH.pack(len(payload)) + payload)
    proc.stdin.flush()
    return WriterProcess(proc, link)


def _read_spec(fd: int) -> WriterSpec:
    def read_exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise StoreError("writer process: its parent closed stdin before the spec")
            data += chunk
        return data

    (size,) = LENGTH.unpack(read_exactly(LENGTH.size))
    return _unpack_spec(read_exactly(size))


def _pack_spec(spec: WriterSpec) -> bytes:
    fields = dataclasses.asdict(spec)
    fields["retention"] = [
        None if age is None else age.total_seconds()
        for age in (spec.retention.points, spec.retention.cot, spec.retention.chat)
    ]
    packed: bytes = msgpack.packb(fields)
    return packed


def _unpack_spec(data: bytes) -> WriterSpec:
    fields = msgpack.unpackb(data)
    fields["retention"] = Retention(*(
        None if seconds is None else timedelta(seconds=seconds)
        for seconds in fields["retention"]
    ))
    return WriterSpec(**fields)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the parent's
    spec = _read_spec(sys.stdin.fileno())
    configure_logging(f"{spec.name}/writer", spec.log_level)
    lower_priority(spec.priority)  # before any thread: ZeroMQ's I/O thread inherits it
    database = open_database(spec.database_url)
    database.bind(MODELS)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    # Linger: the last counts (DONE) must reach the parent after the socket is closed.
    link = make_socket(context, zmq.PAIR, linger_ms=5000, hwm=LINK_HWM)
    try:
        link.connect(spec.endpoint)
        source = LinkSource(link, sys.stdin.fileno())
        writer = RecordWriter(database, store_raw_xml=spec.store_raw_xml,
                              pace=Pacer(spec.work_slice))
        loop = WriteLoop(source, writer, batch_size=spec.batch_size, retention=spec.retention,
                         prune_interval=spec.prune_interval)
        try:
            loop.run()
        except Exception:
            # NOTE: a bug, not bad input (that is counted per record): log it and exit; the
            # parent counts the batch this process held as lost and starts another writer.
            log.exception("the writer failed")
            return 1
        source.finish(loop.counts)
    finally:
        link.close()
        context.term()
        database.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
