"""RabbitMQ chores for the OTS peer, run with the OTS venv's Python (it has pika).

    python rabbit.py consumers QUEUE MIN TIMEOUT   # wait until QUEUE has >= MIN consumers
    python rabbit.py empty QUEUE TIMEOUT           # wait until QUEUE has no ready messages
    python rabbit.py delete REGEX < names          # delete the queues whose name matches REGEX
    python rabbit.py delete-idle REGEX < lines     # the same, only those with 0 consumers

Connects to 127.0.0.1:5672 as guest/guest (vhost /), the broker OTS itself uses; never to another
host. `delete` reads queue names, one a line (from `rabbitmqctl -q list_queues name`), and deletes
only those that fully match REGEX, so other users of the shared broker are left alone.
`delete-idle` reads `name consumers` lines (`rabbitmqctl -q list_queues name consumers`).
"""

from __future__ import annotations

import importlib
import re
import sys
import time

# NOTE: imported by name so that mypy, run over benchmarks/ from the project's venv (no pika),
# does not look for it; this file runs only with the OTS venv's Python.
pika = importlib.import_module("pika")
ChannelClosedByBroker = importlib.import_module("pika.exceptions").ChannelClosedByBroker

PARAMS = pika.ConnectionParameters(
    host="127.0.0.1",
    port=5672,
    credentials=pika.PlainCredentials("guest", "guest"),
    connection_attempts=1,
    socket_timeout=5,
)


def queue_counts(queue: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of `queue`, or None when it is not declared."""
    connection = pika.BlockingConnection(PARAMS)
    try:
        channel = connection.channel()
        try:
            method = channel.queue_declare(queue, passive=True).method
        except ChannelClosedByBroker:
            return None
        return int(method.message_count), int(method.consumer_count)
    finally:
        if connection.is_open:
            connection.close()


def consumers(queue: str, minimum: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    counts = None
    while time.monotonic() < deadline:
        counts = queue_counts(queue)
        if counts is not None and counts[1] >= minimum:
            print(counts[1])
            return 0
        time.sleep(0.5)
    print(f"queue {queue!r}: (ready, consumers) = {counts} after {timeout}s", file=sys.stderr)
    return 1


def empty(queue: str, timeout: float) -> int:
    began = time.monotonic()
    counts = None
    while time.monotonic() < began + timeout:
        counts = queue_counts(queue)
        if counts is None or counts[0] == 0:
            print(f"queue {queue!r} empty after {time.monotonic() - began:.1f}s", file=sys.stderr)
            return 0
        time.sleep(0.5)
    print(f"queue {queue!r}: (ready, consumers) = {counts} after {timeout}s", file=sys.stderr)
    return 1


def delete(pattern: str, idle_only: bool) -> int:
    names = []
    for line in sys.stdin:
        fields = line.split()
        if not fields or not re.fullmatch(pattern, fields[0]):
            continue
        if idle_only and (len(fields) < 2 or fields[1] != "0"):
            continue
        names.append(fields[0])
    if not names:
        return 0
    connection = pika.BlockingConnection(PARAMS)
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
    finally:
        connection.close()
    print(f"deleted {len(names)} queue(s)", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "consumers":
        return consumers(argv[1], int(argv[2]), float(argv[3]))
    if len(argv) == 3 and argv[0] == "empty":
        return empty(argv[1], float(argv[2]))
    if len(argv) == 2 and argv[0] in ("delete", "delete-idle"):
        return delete(argv[1], idle_only=argv[0] == "delete-idle")
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
