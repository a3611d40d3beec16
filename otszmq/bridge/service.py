"""The bridge stage: the pipeline mirrored onto RabbitMQ, and RabbitMQ injected back.

One asyncio loop, three activities:

- the pipeline side drains the fan-out's routed events (a SUB, like any ingest) into a
  bounded :class:`Outbox` and never waits: a broker that is slow, away or refusing costs the
  bridge its oldest buffered events (counted as ``amqp_dropped``), never the pipeline its
  pace. The bridge is a subscriber of its own, so even a stalled bridge only loses what the
  fan-out's high-water mark drops for it (counted as ``fanout_lost``);
- the AMQP side (:class:`AmqpLink`) keeps a connection up, publishes from the outbox, and hands
  what it consumes to the node's inject endpoint;
- counters go out on the stats bus every ``stats_interval`` (``otszmq stats``, ``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import zmq

from otszmq.bridge.amqp import AmqpLink, Attachment, Outgoing
from otszmq.bridge.inbound import Injection
from otszmq.bridge.mirror import MirrorPlan
from otszmq.bridge.outbox import Outbox
from otszmq.bridge.topology import Topology
from otszmq.errors import WireError
from otszmq.metrics import Counters, publish_stats
from otszmq.wire import (
    TOPIC_EVENT,
    TOPIC_STATS,
    SequenceGaps,
    routed_batch,
    routed_header,
)

log = logging.getLogger(__name__)

DRAIN_BATCH: Final = 500  # SUB messages per loop turn (each a worker's batch of events)
STOP_FLUSH_TIMEOUT: Final = 3.0  # seconds the link has at shutdown to publish what is buffered


class EventInjector(Protocol):
    """What the bridge needs of ``otszmq.inject.Injector``."""

    def send(self, events: Sequence[bytes], *, groups_in: Sequence[str], origin: str = "",
             sender_uid: str = "") -> bool: ...


@dataclass(frozen=True)
class BridgeConfig:
    name: str
    amqp_url: str
    topology: Topology
    plan: MirrorPlan
    inbound_groups: tuple[str, ...]
    buffer: int  # events held for RabbitMQ, then the oldest are dropped
    max_event_size: int
    stats_interval: float
    first_connect_wait: float = 5.0
    """Seconds start-up waits for the broker before reporting ready anyway (and retrying in the
    background): a broker that is down must not keep the node from starting."""


class BridgeService:
    def __init__(
        self,
        config: BridgeConfig,
        sub: zmq.Socket[bytes],
        stats_pub: zmq.Socket[bytes],
        injector: EventInjector,
        attachments: Sequence[Attachment] = (),
        counters: Counters | None = None,
    ) -> None:
        self.config = config
        self._sub = sub
        self._stats_pub = stats_pub
        self._injector = injector
        self._attachments = tuple(attachments)
        # Shared with the attachments, so that one snapshot carries everything the stage counts.
        self.counters = counters or Counters()
        self.counters.preset(
            "routed_in", "fanout_lost", "events_queued", "wire_errors", "attachment_errors"
        )
        self.outbox: Outbox[Outgoing] = Outbox(config.buffer)
        self.link = AmqpLink(
            config.amqp_url, config.topology, config.plan, self.outbox, self._inject,
            self.counters, inbound_groups=config.inbound_groups,
            max_event_size=config.max_event_size, attachments=self._attachments,
        )
        self.counters.gauge("outbox_depth", lambda: float(len(self.outbox)))
        self.counters.gauge("amqp_connected", lambda: float(self.link.connected))
        self._gaps = SequenceGaps()
        # Set by the first stats message heard on the SUB (``run``: why).
        self._subscribed = asyncio.Event()

    def _inject(self, injection: Injection) -> bool:
        return self._injector.send(
            injection.events, groups_in=injection.groups_in, origin=injection.origin,
            sender_uid=injection.sender_uid,
        )

    async def run(self, stop: asyncio.Event, ready: Callable[[], None]) -> None:
        """Serve until ``stop``; ``ready()`` once the broker answered (or did not, in time)."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self._sub.fileno(), self._drain)
        loop.call_soon(self._drain)  # the fd is edge-triggered: take what came before
        link = asyncio.create_task(self.link.run(stop), name="amqp-link")
        stats = asyncio.create_task(self._stats_forever(), name="bridge-stats")
        try:
            # Ready means: our fan-out subscription is in place (a stats message came through
            # it: the SUB also takes TOPIC_STATS until then, and our own stats go out at once),
            # and the broker answered (or did not within first_connect_wait).
            first = asyncio.ensure_future(self._until_ready())
            await asyncio.wait({first, link}, timeout=self.config.first_connect_wait,
                               return_when=asyncio.FIRST_COMPLETED)
            first.cancel()
            if link.done():
                link.result()  # a refused first login: BridgeError out of the stage
            if not self.link.connected:
                log.warning("RabbitMQ not reachable yet; the bridge keeps retrying")
            log.info("%s ready, server id %s", self.config.name, self.config.plan.server_id)
            ready()
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({stopping, link}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if link.done():
                link.result()
        finally:
            stop.set()
            loop.remove_reader(self._sub.fileno())
            stats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats
            if not link.done():
                # It publishes what the outbox holds, then closes (bounded: a broker that does
                # not take it in time costs what is left, counted).
                await asyncio.wait({link}, timeout=STOP_FLUSH_TIMEOUT)
                link.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link
            self.counters.values["amqp_dropped"] += len(self.outbox.take(len(self.outbox)))
            self._publish_stats()

    async def _until_ready(self) -> None:
        await self._subscribed.wait()
        await self.link.first_attempt.wait()

    # -- the pipeline side ------------------------------------------------------------------------

    def _drain(self) -> None:
        sub = self._sub
        values = self.counters.values
        wanted = self.config.plan.wanted
        attachments = self._attachments
        outbox = self.outbox
        for _ in range(DRAIN_BATCH):
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frames[0] != TOPIC_EVENT:
                self._on_subscribed()
                continue
            try:
                batch = routed_batch(frames)
            except WireError as exc:
                values["wire_errors"] += 1
                log.error("dropping a malformed pipeline message: %s", exc)
                continue
            values["fanout_lost"] += self._gaps.check(
                batch.worker, batch.first_seq, len(batch.events)
            )
            for entry in batch.events:
                header = routed_header(entry)
                event: bytes = entry[-1]
                values["routed_in"] += 1
                for attachment in attachments:
                    try:
                        attachment.on_routed(header, event)
                    except Exception:
                        # A bug there must cost this event there, not the mirror or the stage.
                        values["attachment_errors"] += 1
                        log.exception("%r failed on a routed event", attachment)
                if wanted(header):
                    values["events_queued"] += 1
                    values["amqp_dropped"] += outbox.put((header, event))
        # A full batch: more may be waiting behind an fd that will not fire again.
        asyncio.get_running_loop().call_soon(self._drain)

    def _on_subscribed(self) -> None:
        if not self._subscribed.is_set():
            self._subscribed.set()
            self._sub.setsockopt(zmq.UNSUBSCRIBE, TOPIC_STATS)

    # -- stats ------------------------------------------------------------------------------------

    async def _stats_forever(self) -> None:
        interval = self.config.stats_interval
        while True:
            started = time.monotonic()
            self._publish_stats()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    def _publish_stats(self) -> None:
        publish_stats(self._stats_pub, self.config.name, "bridge", self.counters)
