"""Federated end-to-end latency: an SA sent on server A, read by a client of server B.

Two ``otszmq serve`` nodes federate every group through one RabbitMQ (a throw-away vhost,
created with rabbitmqctl and deleted after). A client of A sends SAs at a steady rate, each
carrying its send time; a second client of A and a client of B read them, so the same events
give the local latency and the federated one side by side. JSON on stdout, a summary on stderr.

    python -m benchmarks.federation --rate 50 --count 500
"""

from __future__ import annotations

import argparse
import re
import selectors
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from benchmarks import procstat
from benchmarks.jsonout import print_json
from benchmarks.results import latency_result
from benchmarks.servers import Server, ServerError, start_otszmq

Json = dict[str, Any]

SETTLE_TIMEOUT = 60.0  # seconds for the federation to carry a first event
READ_TIMEOUT = 10.0  # seconds after the last send for stragglers


@dataclass
class Reader:
    """A raw CoT client that remembers when each ``fedbench`` event arrived."""

    sock: socket.socket
    pattern: re.Pattern[bytes]
    arrived: dict[int, int] = field(default_factory=dict)  # seq -> receive time, us
    sent_at: dict[int, int] = field(default_factory=dict)  # seq -> send time, us
    _buffer: bytes = b""

    def read(self) -> None:
        """Read what is there (the socket is readable) and stamp its events now."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        now = time.monotonic_ns() // 1000
        self._buffer += chunk
        *events, self._buffer = self._buffer.split(b"</event>")
        for event in events:
            for seq, sent in self.pattern.findall(event):
                self.arrived.setdefault(int(seq), now)
                self.sent_at[int(seq)] = int(sent)


def pump(selector: selectors.BaseSelector, seconds: float) -> None:
    """Wait up to ``seconds`` for any reader; read every one that is ready, as it is ready."""
    for key, _ in selector.select(max(0.0, seconds)):
        reader: Reader = key.data
        reader.read()


def sa(run: str, seq: int, sent_us: int) -> bytes:
    now = datetime.now(UTC)
    t = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    stale = datetime.fromtimestamp(now.timestamp() + 120, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'<event version="2.0" uid="FED-{run}-sender" type="a-f-G-U-C" how="m-g" time="{t}" '
        f'start="{t}" stale="{stale}"><point lat="1.0" lon="2.0" hae="0" ce="10" le="10"/>'
        f'<detail><contact callsign="FED-{run}"/><remarks>fedbench-{run}-{seq}-{sent_us}'
        "</remarks></detail></event>"
    ).encode()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def run(rate: float, count: int, broker: str) -> Json:
    run_id = uuid.uuid4().hex[:8]
    vhost = f"otszmq-fedbench-{run_id}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    servers: list[Server] = []
    try:
        url = f"amqp://guest:guest@{broker}/{vhost}"
        for name in ("a", "b"):
            servers.append(start_otszmq(1, 1, (
                "--api-port", "0", "--tls-port", "0", "--store", "false", "--amqp-url", url,
                "--amqp-federated-groups", "*", "--server-id", f"fedbench-{name}-{run_id}",
            ), label=f"otszmq {name}"))
        node_a, node_b = servers
        pattern = re.compile(rb"fedbench-" + run_id.encode() + rb"-(\d+)-(\d+)<")
        sender = connect(node_a.port)
        local = Reader(connect(node_a.port), pattern)
        remote = Reader(connect(node_b.port), pattern)
        selector = selectors.DefaultSelector()
        for reader in (local, remote):
            reader.sock.setblocking(False)
            selector.register(reader.sock, selectors.EVENT_READ, reader)
        # Settle: resend a probe until B hears one (exchanges, queues and bindings are up).
        deadline = time.monotonic() + SETTLE_TIMEOUT
        probe = count  # above the measured sequence numbers
        while probe not in remote.arrived:
            if time.monotonic() > deadline:
                raise ServerError("federation carried nothing within the settle timeout")
            sender.sendall(sa(run_id, probe, time.monotonic_ns() // 1000))
            pump(selector, 0.5)
        interval = 1.0 / rate
        start = time.monotonic()
        for seq in range(count):
            while (wait := start + seq * interval - time.monotonic()) > 0:
                pump(selector, wait)
            sender.sendall(sa(run_id, seq, time.monotonic_ns() // 1000))
        deadline = time.monotonic() + READ_TIMEOUT
        while time.monotonic() < deadline and (
            len([s for s in remote.arrived if s < count]) < count
            or len([s for s in local.arrived if s < count]) < count
        ):
            pump(selector, 0.05)
        for sock in (sender, local.sock, remote.sock):
            sock.close()

        def measured(reader: Reader) -> Json:
            latencies = [reader.arrived[s] - reader.sent_at[s] for s in range(count)
                         if s in reader.arrived]
            return {"delivered": len(latencies), "latency_ms": latency_result(latencies)}

        return {
            "benchmark": "otszmq.federation",
            "schema": 1,
            "machine": procstat.machine_info(),
            "config": {"rate": rate, "count": count, "broker": broker},
            "sent": count,
            "local": measured(local),
            "federated": measured(remote),
        }
    finally:
        for server in servers:
            server.stop()
        rabbitmqctl("delete_vhost", vhost)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.federation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="SAs per second from A")
    parser.add_argument("--count", type=int, default=500, help="SAs to send")
    parser.add_argument("--broker", default="127.0.0.1:5672", help="RabbitMQ host:port")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.rate <= 0 or args.count < 1:
        parser.error("--rate must be > 0 and --count >= 1")
    if not args.broker.startswith(("127.", "localhost")):
        parser.error("--broker: loopback only")
    try:
        result = run(args.rate, args.count, args.broker)
    except (ServerError, OSError, subprocess.CalledProcessError) as exc:
        print(f"benchmarks.federation: {exc}", file=sys.stderr)
        return 1
    for path in ("local", "federated"):
        part = result[path]
        lat = part["latency_ms"]
        print(f"{path:9s} delivered {part['delivered']}/{args.count}  latency ms p50 "
              f"{lat.get('p50')} p95 {lat.get('p95')} p99 {lat.get('p99')} max {lat.get('max')}",
              file=sys.stderr)
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
