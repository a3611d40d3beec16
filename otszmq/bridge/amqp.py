"""The bridge's side of RabbitMQ: one connection, kept up by one reconnect loop.

NOTE: our own loop over plain ``aio_pika.connect`` rather than ``connect_robust``. After a
reconnect the robust connection restores channels, exchanges and consumers by itself, but it
hides the gap: a publish during it waits or fails somewhere inside aio-pika, and the bridge
could not say what it lost. Here a session is "connect, declare, consume, publish from the
outbox until the connection closes"; when it closes, unsent events stay in the bounded outbox
(oldest dropped and counted when it is full) and the next session, after a back-off, picks up.
Expected failures (refused, reset, broker shutting down, timeout) are logged as one warning
line each; anything else with its traceback, and the loop goes on either way. The very first
connect fails fast on a refused login (a wrong URL is a configuration error, said at once);
later refusals are retried (the broker may be restarting with its users not loaded yet).

Publishing is unconfirmed (no publisher confirms): confirms would cost a round trip per
batch for a mirror whose value is being current, and a cut is counted where it is seen (what
was taken out of the outbox for a publish that failed). Consuming acknowledges each message
once it is handed to the pipeline (or dropped and counted), with a bounded prefetch so a
flood from the broker cannot outrun the injector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, AMQPError, ProbableAuthenticationError
from aiormq import spec

from otszmq.bridge.inbound import (
    Injection,
    MalformedMessage,
    Skip,
    decode_federated,
    decode_inbound,
)
from otszmq.bridge.mirror import MirrorPlan, Publication
from otszmq.bridge.outbox import Outbox
from otszmq.bridge.topology import Topology
from otszmq.errors import BridgeError
from otszmq.logthrottle import LogThrottle
from otszmq.metrics import Counters
from otszmq.wire import RoutedHeader

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5  # seconds: back-off between connection attempts, doubling
RETRY_MAX = 10.0
CONNECT_TIMEOUT = 5.0
PUBLISH_BATCH = 200  # events taken from the outbox per turn (the loop yields between turns)
PREFETCH = 256  # unacknowledged deliveries in flight per consumer channel

EXPECTED = (*CONNECTION_EXCEPTIONS, AMQPError, OSError, asyncio.TimeoutError)

COUNTERS = (
    "amqp_connects", "amqp_connect_failures", "amqp_disconnects", "amqp_published",
    "amqp_events_out", "amqp_dropped", "amqp_publish_failed", "amqp_in", "amqp_malformed",
    "injected", "inject_dropped", "federation_in", "federation_own", "federation_loops",
    "federation_not_federated",
)

Outgoing = tuple[RoutedHeader, bytes]
Inject = Callable[[Injection], bool]


class Attachment(Protocol):
    """Something else that lives on the bridge's connection (the Meshtastic link).

    ``attach`` runs after every (re)connect, once the bridge's own topology is declared: it
    declares what it needs and starts its consumers on channels it opens. ``on_routed`` sees
    every routed event from the pipeline (it must not block; it may queue work of its own).
    """

    async def attach(self, connection: AbstractConnection) -> None: ...

    def on_routed(self, header: RoutedHeader, event: bytes) -> None: ...


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


class AmqpLink:
    def __init__(
        self,
        url: str,
        topology: Topology,
        plan: MirrorPlan,
        outbox: Outbox[Outgoing],
        inject: Inject,
        counters: Counters,
        *,
        inbound_groups: Sequence[str],
        max_event_size: int,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        self.url = url
        self.topology = topology
        self.plan = plan
        self.outbox = outbox
        self._inject = inject
        self.counters = counters
        counters.preset(*COUNTERS)
        self._inbound_groups = tuple(inbound_groups)
        self._max_event_size = max_event_size
        self._attachments = tuple(attachments)
        self.connected = False
        # A flood of bad messages from the broker must not become a flood of log lines.
        self._malformed_log = LogThrottle()
        self.first_attempt = asyncio.Event()
        """Set once the first connect has succeeded (topology declared) or failed."""

    # -- the reconnect loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a session up until ``stop``; BridgeError if the very first login is refused."""
        delay = RETRY_FIRST
        first = True
        where = redact(self.url)
        while not stop.is_set():
            connection: AbstractConnection | None = None
            try:
                connection = await aio_pika.connect(
                    self.url, timeout=CONNECT_TIMEOUT,
                    client_properties={"connection_name": f"otszmq-bridge {self.plan.server_id}"},
                )
                self.counters.values["amqp_connects"] += 1
                await self._session(connection, stop)
            except ProbableAuthenticationError as exc:
                self.counters.values["amqp_connect_failures"] += 1
                if first:
                    raise BridgeError(f"RabbitMQ at {where} refused the login: {exc}") from exc
                log.warning("RabbitMQ at %s refused the login (%s); retrying in %.1f s",
                            where, exc, delay)
            except EXPECTED as exc:
                self._count_failure()
                log.warning("RabbitMQ at %s: %s; retrying in %.1f s",
                            where, exc or type(exc).__name__, delay)
            except Exception:
                self._count_failure()
                log.exception("unexpected error in the AMQP link to %s; retrying in %.1f s",
                              where, delay)
            finally:
                if self.connected:
                    # A session that was up: retry soon. One that failed while setting up
                    # (a declaration refused) keeps backing off, so it cannot spin.
                    delay = RETRY_FIRST
                self.connected = False
                first = False
                self.first_attempt.set()
                if connection is not None:
                    await _close_quietly(connection)
            if not stop.is_set():
                await _wait_or_stop(stop, delay)
                delay = min(RETRY_MAX, delay * 2)

    def _count_failure(self) -> None:
        name = "amqp_disconnects" if self.connected else "amqp_connect_failures"
        self.counters.values[name] += 1

    async def _session(self, connection: AbstractConnection, stop: asyncio.Event) -> None:
        # NOTE: connection.closed() resolves only on our own close(); a close by the broker or
        # a dropped socket is told through close_callbacks.
        closed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def on_close(_sender: object, exc: BaseException | None = None) -> None:
            if not closed.done():
                closed.set_result(True)

        connection.close_callbacks.add(on_close)
        try:
            publish = await connection.channel(publisher_confirms=False)
            await self._declare(publish)
            consume = await connection.channel()
            await consume.set_qos(prefetch_count=PREFETCH)
            await self._consume(consume)
            for attachment in self._attachments:
                await attachment.attach(connection)
            self.connected = True
            self.first_attempt.set()
            log.info("connected to RabbitMQ at %s as server %s", redact(self.url),
                     self.plan.server_id)
            await self._publish_until_closed(publish, closed, stop)
        finally:
            closed.cancel()

    async def _declare(self, channel: AbstractChannel) -> None:
        for name, kind in self.topology.exchanges():
            await channel.declare_exchange(name, aio_pika.ExchangeType(kind), durable=True)

    async def _consume(self, channel: AbstractChannel) -> None:
        topology = self.topology
        # OTS declares its queues with pika's defaults; so do we, or the broker refuses one of us.
        inbound = await channel.declare_queue(topology.inbound_queue)
        await inbound.bind(topology.inbound_exchange, routing_key=topology.inbound_queue)
        await inbound.consume(self._on_inbound)
        if self.plan.federated_groups:
            federation = await channel.declare_queue(
                topology.federation_queue, durable=True,
                arguments=topology.federation_queue_arguments(),
            )
            await federation.bind(topology.federation_exchange, routing_key="#")
            await federation.consume(self._on_federated)

    # -- out: the outbox to the exchanges -----------------------------------------------------

    async def _publish_until_closed(
        self,
        channel: AbstractChannel,
        closed: asyncio.Future[bool],
        stop: asyncio.Event,
    ) -> None:
        # PERF: aiormq's channel directly, not aio-pika's Exchange.publish: building an
        # aio_pika.Message per publication and awaiting each write's drain held the bridge to
        # ~4k publishes/s on a busy 2-core machine; writes that do not await the socket's drain
        # do about twice that. What is in flight stays bounded: aiormq's frame queue is, and a
        # publish waits when it is full.
        raw = cast(aiormq.Channel, await channel.get_underlay_channel())
        outbox = self.outbox
        values = self.counters.values
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                if not len(outbox):
                    ready = asyncio.ensure_future(outbox.wait())
                    waiters: set[asyncio.Future[Any]] = {ready, closed, stopping}
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    ready.cancel()
                if closed.done():
                    raise ConnectionError("the broker closed the connection")
                if stopping.done() and not len(outbox):
                    return  # what was buffered at the stop went out first
                batch = outbox.take(PUBLISH_BATCH)
                sent = 0
                try:
                    for header, event in batch:
                        for pub in self.plan.publications(header, event):
                            await raw.basic_publish(
                                pub.body, exchange=pub.exchange, routing_key=pub.routing_key,
                                properties=_properties(pub), wait=False,
                            )
                            values["amqp_published"] += 1
                        sent += 1
                finally:
                    values["amqp_events_out"] += sent
                    if sent < len(batch):
                        # The event being published when the link failed is lost (some of its
                        # publications may have gone); the rest wait for the next session.
                        values["amqp_publish_failed"] += 1
                        values["amqp_dropped"] += outbox.put_back(batch[sent + 1:])
        finally:
            stopping.cancel()

    # -- in: the inbound and federation queues to the pipeline ---------------------------------

    async def _on_inbound(self, message: AbstractIncomingMessage) -> None:
        values = self.counters.values
        values["amqp_in"] += 1
        try:
            injection = decode_inbound(message.body, self._inbound_groups, self._max_event_size)
        except MalformedMessage as exc:
            values["amqp_malformed"] += 1
            self._malformed_log.warning(log, "dropping a malformed message from %s: %s",
                       self.topology.inbound_queue, exc)
        else:
            self._hand_over(injection)
        await message.ack()

    async def _on_federated(self, message: AbstractIncomingMessage) -> None:
        values = self.counters.values
        values["federation_in"] += 1
        try:
            decoded = decode_federated(
                message.body, message.headers, self.plan, self._max_event_size
            )
        except MalformedMessage as exc:
            values["amqp_malformed"] += 1
            self._malformed_log.warning(log, "dropping a malformed federation message: %s", exc)
        else:
            if isinstance(decoded, Skip):
                values["federation_" + decoded.reason] += 1
            else:
                self._hand_over(decoded)
        await message.ack()

    def _hand_over(self, injection: Injection) -> None:
        if self._inject(injection):
            self.counters.values["injected"] += len(injection.events)
        else:
            self.counters.values["inject_dropped"] += len(injection.events)


_MIRROR_PROPERTIES: dict[tuple[str, int | None], spec.Basic.Properties] = {}


def _properties(pub: Publication) -> spec.Basic.Properties:
    if pub.headers is None:
        # The mirror's publications all share one set of properties: made once.
        key = (pub.content_type, pub.expiration_ms)
        cached = _MIRROR_PROPERTIES.get(key)
        if cached is None:
            cached = _MIRROR_PROPERTIES[key] = spec.Basic.Properties(
                content_type=pub.content_type,
                expiration=str(pub.expiration_ms) if pub.expiration_ms else None,
            )
        return cached
    return spec.Basic.Properties(
        content_type=pub.content_type, headers=pub.headers, timestamp=datetime.now(UTC),
        expiration=str(pub.expiration_ms) if pub.expiration_ms else None,
    )


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _close_quietly(connection: AbstractConnection) -> None:
    try:
        await asyncio.wait_for(connection.close(), CONNECT_TIMEOUT)
    except EXPECTED as exc:
        log.debug("closing the AMQP connection: %s", exc)
