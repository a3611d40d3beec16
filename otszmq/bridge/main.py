"""Entry point of ``otszmq bridge``: the only place that reads settings and installs signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import uvloop
import zmq

from otszmq.bridge.meshtastic.link import link_for
from otszmq.bridge.mirror import MirrorPlan
from otszmq.bridge.service import BridgeConfig, BridgeService
from otszmq.bridge.topology import Topology
from otszmq.config import Settings
from otszmq.errors import ConfigError
from otszmq.inject import Injector
from otszmq.metrics import Counters
from otszmq.runtime import make_socket, prepare_ipc, setup_logging
from otszmq.wire import TOPIC_EVENT, TOPIC_STATS

log = logging.getLogger(__name__)


def config_from(settings: Settings, name: str) -> BridgeConfig:
    server_id = settings.federation_id
    return BridgeConfig(
        name=name,
        amqp_url=settings.amqp_url,
        topology=Topology(
            server_id=server_id,
            federation_exchange=settings.amqp_federation_exchange,
            inbound_exchange=settings.amqp_inbound_exchange,
            inbound_queue=settings.amqp_inbound_queue,
        ),
        plan=MirrorPlan(
            server_id=server_id,
            federation_exchange=settings.amqp_federation_exchange,
            federated_groups=frozenset(settings.amqp_federated_groups),
            mirror=settings.amqp_mirror,
            mirror_federated=settings.amqp_mirror_federated,
        ),
        inbound_groups=settings.amqp_inbound_groups,
        buffer=settings.amqp_buffer,
        max_event_size=settings.max_event_size,
        stats_interval=settings.stats_interval,
    )


def run(settings: Settings) -> int:
    if not settings.amqp_url:
        raise ConfigError("amqp_url: the bridge needs a RabbitMQ URL (--amqp-url amqp://...)")
    name = setup_logging(settings, "bridge")
    prepare_ipc(settings)
    if settings.bridge_nice:
        # PERF: on a small machine the bridge's CPU (JSON, AMQP framing: a few thousand events/s
        # per core) competes with routing; it takes what routing leaves, and what it cannot
        # keep up with is dropped from its bounded buffer and counted, never queued upstream.
        os.nice(settings.bridge_nice)
    config = config_from(settings, name)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = make_socket(context, zmq.SUB, linger_ms=0, hwm=settings.fanout_hwm)
    stats_pub = make_socket(context, zmq.PUB, linger_ms=0, hwm=100)
    injector = Injector.for_settings(settings, "bridge")
    try:
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC_EVENT)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC_STATS)  # until one proves the subscription (service)
        sub.connect(settings.fanout_out_endpoint)
        stats_pub.connect(settings.fanout_in_endpoint)
        counters = Counters()
        # Meshtastic (--meshtastic) rides on the bridge's connection and fan-out subscription.
        mesh = link_for(settings, injector, counters)
        service = BridgeService(
            config, sub, stats_pub, injector, attachments=[mesh] if mesh else [],
            counters=counters,
        )
        uvloop.run(_serve(service, settings.ready_fd))
    finally:
        injector.close()
        for sock in (sub, stats_pub):
            sock.close()
        context.term()
    return 0


async def _serve(service: BridgeService, ready_fd: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready() -> None:
        if ready_fd >= 0:
            os.write(ready_fd, b"ready\n")

    await service.run(stop, ready)
    log.info("bridge stopped")
