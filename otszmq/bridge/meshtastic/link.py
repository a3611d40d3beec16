"""The Meshtastic link: RabbitMQ's ``amq.topic`` (where the MQTT plugin puts what gateways
publish) to the pipeline, and the pipeline's EUDs back to the mesh.

It is an *attachment* of the bridge (``otszmq.bridge.amqp.Attachment``): the bridge owns the
AMQP connection and its reconnect loop and the fan-out subscription, and hands both in::

    link = link_for(settings, injector, counters)   # None unless --meshtastic
    # the bridge calls, for every routed event it reads from the fan-out (loop thread):
    link.on_routed(header, event)
    # and after every (re)connect:
    await link.attach(connection)   # declares, starts consuming and publishing, returns

Overflow: RabbitMQ holds at most ``queue_limit`` envelopes for us (its ``drop-head`` policy:
the oldest go); envelopes for the mesh wait in a bounded queue here, and when it is full new
ones are dropped and counted (``mesh_out_dropped``). Neither direction blocks the other, and
a bad envelope costs only itself (see :mod:`otszmq.bridge.meshtastic.translate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Final, Protocol

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)

from otszmq.bridge.meshtastic.config import MeshtasticConfig
from otszmq.bridge.meshtastic.translate import Envelope, MeshTranslator
from otszmq.config import Settings
from otszmq.metrics import Counters
from otszmq.wire import RoutedHeader

log = logging.getLogger(__name__)

EXCHANGE: Final = "amq.topic"
"""Where RabbitMQ's MQTT plugin publishes what MQTT clients publish (and reads what they get)."""
PUBLISH_BATCH: Final = 100


class EventSink(Protocol):
    """What the link injects through: :class:`otszmq.inject.Injector` satisfies it."""

    def send(self, events: Sequence[bytes], *, groups_in: Sequence[str], origin: str = "",
             sender_uid: str = "") -> bool: ...


def link_for(settings: Settings, sink: EventSink, counters: Counters) -> MeshtasticLink | None:
    """The link the settings ask for (``meshtastic = true``), else None.

    Raises :class:`otszmq.errors.ConfigError` naming a bad Meshtastic setting.
    """
    if not settings.meshtastic:
        return None
    return MeshtasticLink(MeshtasticConfig.from_settings(settings), sink, counters)


class MeshtasticLink:
    """Both directions between a Meshtastic mesh (via MQTT on RabbitMQ) and the pipeline."""

    def __init__(self, config: MeshtasticConfig, sink: EventSink, counters: Counters) -> None:
        self.config = config
        self.counters = counters
        self.translator = MeshTranslator(config, counters)
        self._sink = sink
        self._outbox: asyncio.Queue[Envelope] | None = None  # made on the loop that uses it
        self._publisher: asyncio.Task[None] | None = None
        counters.preset("mesh_inject_dropped", "mesh_out_dropped", "mesh_out_published")
        counters.gauge("mesh_out_waiting", lambda: float(self._queue().qsize()))

    def _queue(self) -> asyncio.Queue[Envelope]:
        if self._outbox is None:
            self._outbox = asyncio.Queue(self.config.queue_limit)
        return self._outbox

    # -- pipeline side --------------------------------------------------------------------

    def on_routed(self, header: RoutedHeader, event: bytes) -> None:
        """Take one routed event from the fan-out; never blocks (drops and counts instead)."""
        outbox = self._queue()
        for envelope in self.translator.outbound(header, event):
            try:
                outbox.put_nowait(envelope)
            except asyncio.QueueFull:
                self.counters.values["mesh_out_dropped"] += 1

    def _inject(self, routing_key: str, body: bytes) -> None:
        for injection in self.translator.inbound(routing_key, body):
            if self._sink.send(injection.events, groups_in=(self.config.group,),
                               sender_uid=injection.sender_uid):
                self.counters.values["mesh_injected"] += len(injection.events)
            else:
                self.counters.values["mesh_inject_dropped"] += len(injection.events)

    # -- RabbitMQ side --------------------------------------------------------------------

    async def attach(self, connection: AbstractConnection) -> None:
        """Start consuming the gateways' envelopes and publishing ours on ``connection``.

        Returns once both run; they stop when the connection (or our channel) closes, and the
        next ``attach`` starts them again on the new connection.
        """
        self._stop_publisher()
        channel = await connection.channel(publisher_confirms=False)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        # An exclusive server-named queue: gone with the connection, so nothing piles up while
        # no bridge runs; bounded while one does.
        queue = await channel.declare_queue(exclusive=True, arguments={
            "x-max-length": self.config.queue_limit, "x-overflow": "drop-head",
        })
        for pattern in self.config.bindings:
            await queue.bind(exchange, routing_key=pattern)
        await queue.consume(self._on_message, no_ack=True)
        self._publisher = asyncio.create_task(
            self._publish_until_closed(channel, exchange), name="meshtastic-out"
        )
        self._publisher.add_done_callback(self._publisher_done)
        log.info("meshtastic: reading %s on %s; EUDs go out as gateway %s on channel %s",
                 ", ".join(self.config.bindings), EXCHANGE, self.config.gateway_id,
                 self.config.outbound.name)

    async def run(self, connection: AbstractConnection) -> None:
        """:meth:`attach`, then wait until the channel is lost (``ConnectionError``) or the
        task is cancelled (which closes the channel): the link without the bridge around it."""
        await self.attach(connection)
        assert self._publisher is not None
        try:
            await asyncio.shield(self._publisher)
        finally:
            self._stop_publisher()

    def _stop_publisher(self) -> None:
        if self._publisher is not None and not self._publisher.done():
            self._publisher.cancel()
        self._publisher = None

    @staticmethod
    def _publisher_done(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ConnectionError):
            log.info("meshtastic: %s", exc)  # the bridge reconnects and attaches again
        elif exc is not None:
            log.error("meshtastic: publishing to the mesh failed", exc_info=exc)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._inject(message.routing_key or "", message.body)

    async def _publish_until_closed(self, channel: AbstractChannel,
                                    exchange: AbstractExchange) -> None:
        outbox = self._queue()
        values = self.counters.values
        closed_task = asyncio.ensure_future(channel.closed())
        try:
            while True:
                getter = asyncio.ensure_future(outbox.get())
                done, _ = await asyncio.wait(
                    {getter, closed_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if closed_task in done:
                    if getter.done():
                        values["mesh_out_dropped"] += 1  # taken in the same turn: lost
                    getter.cancel()
                    raise ConnectionError("AMQP channel closed; envelopes wait for the next one")
                batch = [getter.result()]
                while len(batch) < PUBLISH_BATCH and not outbox.empty():
                    batch.append(outbox.get_nowait())
                for sent, envelope in enumerate(batch):
                    try:
                        await exchange.publish(
                            aio_pika.Message(envelope.body,
                                             content_type="application/x-protobuf"),
                            routing_key=envelope.routing_key,
                        )
                    except BaseException:
                        values["mesh_out_dropped"] += len(batch) - sent
                        raise
                    values["mesh_out_published"] += 1
        finally:
            closed_task.cancel()
            if not channel.is_closed:
                with contextlib.suppress(Exception):  # best effort on the way out
                    await channel.close()
