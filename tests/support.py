"""Test harness: real otszmq processes on free ports, and a raw-socket CoT client.

Synchronisation is by observable events only: the server's ready line, bytes
arriving on a socket, a process exiting. Every wait has a deadline so that a
broken server fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
RECV_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def otszmq_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "otszmq", *args]


class Node:
    """One ``otszmq serve`` process tree on loopback, in its own data dir."""

    def __init__(self, data_dir: Path, *, workers: int = 2, extra: tuple[str, ...] = (),
                 tls: bool = False, api: bool = False, https: bool = False,
                 own_session: bool = False) -> None:
        self.own_session = own_session  # so that a test can signal its process group
        self.data_dir = data_dir
        self.port = free_port()
        # TLS is off unless asked for: making a CA costs seconds of RSA key generation.
        self.tls_port = free_port() if tls else 0
        self.api_port = free_port() if api or https else 0
        # The API's HTTPS (client certificate) and enrollment ports, also off unless asked for.
        self.https_port = free_port() if https else 0
        self.enroll_port = free_port() if https else 0
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self.argv = otszmq_command(
            "serve", "--data-dir", str(data_dir), "--bind", "127.0.0.1",
            "--tcp-port", str(self.port), "--workers", str(workers), "--log-level", "info",
            "--stats-interval", "0.2", "--tls-port", str(self.tls_port),
            "--api-port", str(self.api_port), "--https-port", str(self.https_port),
            "--enroll-port", str(self.enroll_port), *extra,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_line = ""

    def start(self) -> Node:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log,
                                     start_new_session=self.own_session)
        log.close()
        self.ready_line = self._read_ready_line()
        return self

    def _read_ready_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        buffer = b""
        try:
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"otszmq serve not ready (exit {self.proc.poll()}); log:\n{self.log()}"
                    )
                if selector.select(remaining):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        continue
                    buffer += chunk
        finally:
            selector.close()
        return buffer.decode().strip()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return "(no log)"

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"otszmq serve ignored SIGTERM; log:\n{self.log()}") from None

    def stats(self, wait: float = 1.0) -> list[dict[str, Any]]:
        out = subprocess.run(
            otszmq_command("stats", "--data-dir", str(self.data_dir), "--json",
                           "--wait", str(wait), "--stats-interval", "0.2"),
            capture_output=True, check=True, timeout=30,
        )
        processes: list[dict[str, Any]] = json.loads(out.stdout)["processes"]
        return processes

    def connect(self, **kwargs: Any) -> CotClient:
        return CotClient(self.port, **kwargs)


@contextmanager
def running_node(data_dir: Path, **kwargs: Any) -> Iterator[Node]:
    node = Node(data_dir, **kwargs).start()
    try:
        yield node
    finally:
        code = node.stop()
        assert code == 0, f"otszmq serve exited with {code}; log:\n{node.log()}"


def wait_for(predicate_name: str, check: Callable[[], bool], deadline_s: float = 20.0) -> None:
    """Re-read a node observable until true; each read listens to the stats bus for a while."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
    raise AssertionError(f"{predicate_name} not reached within {deadline_s} s")


def ingest_gauge(node: Node, name: str) -> float:
    ingest = [p for p in node.stats(wait=0.5) if p["role"] == "ingest"]
    return float(ingest[0]["gauges"][name]) if ingest else -1.0


def add_user(node: Node, name: str, *groups: str, password: str | None = None) -> None:
    """`otszmq user add` (a certificate's CN must be an active user to stream)."""
    flags = ["--in", ",".join(groups), "--out", ",".join(groups)] if groups else []
    flags += ["--password", password] if password else []
    subprocess.run(otszmq_command("user", "add", name, "--data-dir", str(node.data_dir), *flags),
                   check=True, capture_output=True, timeout=60)


def stream_login(client: CotClient, username: str, password: str) -> None:
    """`<auth><cot username= password= uid=/></auth>` on the stream."""
    client.send(f'<auth><cot username="{username}" password="{password}" uid="{username}-uid"/>'
                "</auth>".encode())


def sa_event(uid: str, callsign: str, *, lat: float = 1.0, remarks: str = "",
             stale_seconds: int = 300, endpoint: str = "*:-1:stcp") -> bytes:
    now = time.time()
    t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    stale = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now + stale_seconds))
    return (
        f'<event version="2.0" uid="{uid}" type="a-f-G-U-C" how="m-g" time="{t}" start="{t}" '
        f'stale="{stale}"><point lat="{lat}" lon="2.0" hae="0" ce="10" le="10"/>'
        f'<detail><contact callsign="{callsign}" endpoint="{endpoint}"/>'
        f'<__group name="Cyan" role="Team Member"/><remarks>{remarks}</remarks>'
        "</detail></event>"
    ).encode()


def marker_event(uid: str, *, dest_callsigns: tuple[str, ...] = (),
                 dest_uids: tuple[str, ...] = (), remarks: str = "") -> bytes:
    now = time.time()
    t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    stale = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now + 300))
    dests = "".join(f'<dest callsign="{c}"/>' for c in dest_callsigns) + "".join(
        f'<dest uid="{u}"/>' for u in dest_uids
    )
    marti = f"<marti>{dests}</marti>" if dests else ""
    return (
        f'<event version="2.0" uid="{uid}" type="b-m-p-s-m" how="h-g-i-g-o" time="{t}" '
        f'start="{t}" stale="{stale}"><point lat="3.0" lon="4.0" hae="0" ce="9999999" '
        f'le="9999999"/><detail>{marti}<remarks>{remarks}</remarks></detail></event>'
    ).encode()


def instant_event(uid: str, cot_type: str, how: str, detail: str = "") -> bytes:
    """An event stale as soon as it is sent, at 0,0 with no accuracy: a ping, an alert."""
    t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return (
        f'<event version="2.0" uid="{uid}" type="{cot_type}" how="{how}" time="{t}" '
        f'start="{t}" stale="{t}"><point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/>'
        f"<detail>{detail}</detail></event>"
    ).encode()


def ping_event() -> bytes:
    return instant_event(f"{uuid.uuid4()}-ping", "t-x-c-t", "m-g")


class CotClient:
    """A blocking TCP client that reads whole events (split on ``</event>``)."""

    def __init__(
        self, port: int, *, timeout: float = RECV_TIMEOUT, receive_buffer: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        raw = socket.socket()
        raw.settimeout(timeout)
        if receive_buffer is not None:
            # Before connect, so that the TCP window is small from the start.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        raw.connect(("127.0.0.1", port))
        self.sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        self.timeout = timeout
        self._buffer = bytearray()
        self._start = 0  # where the next event begins in _buffer
        self._scanned = 0  # bytes before this were searched for a close tag already

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> CotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_event(self, timeout: float | None = None) -> bytes:
        """The next complete event; AssertionError if none arrives in time."""
        deadline = time.monotonic() + (timeout or self.timeout)
        # NOTE: search only the bytes not searched yet, and cut consumed bytes lazily, so
        # that reading megabytes stays linear (a slow test client skews slow-client tests).
        while (end := self._buffer.find(b"</event>", self._scanned)) < 0:
            self._scanned = max(self._start, len(self._buffer) - 7)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                partial = bytes(self._buffer[self._start:self._start + 200])
                raise AssertionError(f"no event within the deadline; partial: {partial!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                partial = bytes(self._buffer[self._start:self._start + 200])
                raise ConnectionError(f"server closed the connection; partial: {partial!r}")
            self._buffer += chunk
        end += len(b"</event>")
        event = bytes(self._buffer[self._start:end]).lstrip()
        self._start = self._scanned = end
        if self._start > (1 << 20):
            del self._buffer[:self._start]
            self._start = self._scanned = 0
        return event

    def recv_until(self, needle: bytes, timeout: float | None = None) -> list[bytes]:
        """Events up to and including the first containing ``needle``."""
        events = []
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            event = self.recv_event(max(0.01, deadline - time.monotonic()))
            events.append(event)
            if needle in event:
                return events

    def recv_all(self, needles: list[bytes], timeout: float | None = None) -> list[bytes]:
        """Events until every needle has been seen (in any order: sources are not ordered)."""
        missing = set(needles)
        events = []
        deadline = time.monotonic() + (timeout or self.timeout)
        while missing:
            event = self.recv_event(max(0.01, deadline - time.monotonic()))
            events.append(event)
            missing = {needle for needle in missing if needle not in event}
        return events

    def is_closed_by_server(self, timeout: float | None = None) -> bool:
        """True once the server closes this connection (EOF or reset) within the deadline."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except (ConnectionResetError, ssl.SSLError):
                return True
            if not chunk:
                return True
        return False


STREAM_DEADLINE = 20.0


def chat(text: str) -> bytes:
    """A broadcast chat-type event (routed to readers, never replayed as map state)."""
    return marker_event(f"chat-{uuid.uuid4().hex[:8]}", remarks=text).replace(
        b'type="b-m-p-s-m"', b'type="b-t-f"')


def receive_first(sender: CotClient, reader: CotClient, text: str) -> None:
    """Send chats until the reader gets one (its login is checked asynchronously)."""
    deadline = time.monotonic() + STREAM_DEADLINE
    while True:
        sender.send(chat(text))
        try:
            reader.recv_until(text.encode(), timeout=0.5)
            return
        except AssertionError:
            assert time.monotonic() < deadline, f"the reader never received {text!r}"
