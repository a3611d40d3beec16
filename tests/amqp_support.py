"""Test harness for the RabbitMQ bridge: a private vhost per test, and a blocking AMQP client.

Each test gets its own virtual host on the machine's broker (``rabbitmqctl add_vhost``), so
it sees only its own exchanges, queues and connections: tests using the broker can run at the
same time, and cutting "all connections" of the vhost cuts only that test's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue

AMQP_HOST = "127.0.0.1:5672"
RABBITMQCTL_TIMEOUT = 60.0
T = TypeVar("T")


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=False,
        timeout=RABBITMQCTL_TIMEOUT,
    )
    if done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


@contextmanager
def amqp_vhost() -> Iterator[tuple[str, str]]:
    """A fresh vhost that guest may use; yields (vhost, url). Deleted afterwards."""
    vhost = f"otszmq-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost, f"amqp://guest:guest@{AMQP_HOST}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def connection_count(vhost: str) -> int:
    out = rabbitmqctl("list_connections", "vhost")
    return sum(1 for line in out.splitlines() if line.strip() == vhost)


def cut_connections(vhost: str) -> None:
    """Close every client connection of ``vhost`` from the broker's side."""
    rabbitmqctl("close_all_connections", "--vhost", vhost, "test cuts the connection")


class AmqpClient:
    """A blocking AMQP client for tests: aio-pika on an event loop in a thread of its own."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._connection: AbstractConnection = self._call(aio_pika.connect(url, timeout=10))

        async def open_channel() -> AbstractChannel:
            # NOTE: channel() builds futures at once, so it must run on the client's loop.
            return await self._connection.channel()

        self._channel: AbstractChannel = self._call(open_channel())

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        try:
            self._call(self._connection.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> AmqpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def listen(self, exchange: str, kind: str, routing_key: str = "",
               queue_name: str | None = None) -> str:
        """Declare ``exchange`` (durable, as the bridge does) and a queue bound to it: private
        to this connection, or, named, one that outlives it (it keeps what arrives meanwhile).
        """

        async def go() -> str:
            ex = await self._channel.declare_exchange(
                exchange, aio_pika.ExchangeType(kind), durable=True
            )
            queue: AbstractQueue = await self._channel.declare_queue(
                queue_name, exclusive=queue_name is None
            )
            await queue.bind(ex, routing_key=routing_key)
            return queue.name

        return self._call(go())

    def get(self, queue: str, timeout: float = 10.0) -> aio_pika.abc.AbstractIncomingMessage:
        """The next message on ``queue``; AssertionError if none comes in time."""
        deadline = time.monotonic() + timeout

        async def poll() -> aio_pika.abc.AbstractIncomingMessage | None:
            q = await self._channel.get_queue(queue, ensure=False)
            message = await q.get(no_ack=True, fail=False)
            return message

        while time.monotonic() < deadline:
            message = self._call(poll())
            if message is not None:
                return message
            time.sleep(0.02)  # NOTE: polling interval of a real condition, under a deadline
        raise AssertionError(f"no message on {queue} within {timeout} s")

    def drain(self, queue: str, settle: float = 1.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Every message on ``queue`` until none arrives for ``settle`` seconds."""
        messages = []
        while True:
            try:
                messages.append(self.get(queue, settle))
            except AssertionError:
                return messages

    def publish(self, exchange: str, routing_key: str, body: bytes,
                headers: dict[str, Any] | None = None) -> None:
        async def go() -> None:
            ex = await self._channel.get_exchange(exchange, ensure=False)
            await ex.publish(aio_pika.Message(body, headers=headers), routing_key)

        self._call(go())


def ensure_plugin(name: str) -> None:
    """Enable a RabbitMQ plugin if it is off (idempotent; other tests are not disturbed)."""
    done = subprocess.run(["rabbitmq-plugins", "-q", "list", "-e", "-m"], capture_output=True,
                          text=True, check=False, timeout=RABBITMQCTL_TIMEOUT)
    if name not in done.stdout.split():
        enable = subprocess.run(["rabbitmq-plugins", "-q", "enable", name], capture_output=True,
                                text=True, check=False, timeout=RABBITMQCTL_TIMEOUT)
        if enable.returncode != 0:
            raise AssertionError(f"cannot enable {name}: {enable.stderr or enable.stdout}")


def federate_exchange(downstream: str, upstream: str, exchange: str) -> None:
    """RabbitMQ exchange federation: ``exchange`` in vhost ``downstream`` receives what is
    published to it in vhost ``upstream`` (one hop: no message travels back)."""
    uri = f"amqp://guest:guest@{AMQP_HOST}/{upstream}"
    rabbitmqctl("set_parameter", "-p", downstream, "federation-upstream", f"from-{upstream}",
                json.dumps({"uri": uri, "max-hops": 1}))
    rabbitmqctl("set_policy", "-p", downstream, "--apply-to", "exchanges", "federate",
                f"^{exchange}$", json.dumps({"federation-upstream-set": "all"}))


def running_federation_links(vhosts: set[str]) -> int:
    out = rabbitmqctl("federation_status", "--formatter", "json")
    links = json.loads(out or "[]")
    return sum(1 for link in links if link.get("vhost") in vhosts
               and link.get("status") == "running")
