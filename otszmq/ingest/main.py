"""Entry point of ``otszmq ingest``: the only place that reads settings and installs signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import uvloop
import zmq

from otszmq.config import Settings
from otszmq.ingest.service import IngestConfig, IngestService
from otszmq.runtime import instance_id, make_socket, prepare_ipc, setup_logging
from otszmq.users import Channels, authenticate, channels_for
from otszmq.wire import TOPIC_EVENT

log = logging.getLogger(__name__)


def run(settings: Settings, index: int = 0) -> int:
    name = setup_logging(settings, "ingest")
    prepare_ipc(settings)
    config = IngestConfig(
        name=name,
        ingest_id=instance_id(name),
        bind=settings.bind,
        tcp_port=settings.tcp_port,
        tls_port=settings.tls_port,
        tls_handshake_timeout=settings.tls_handshake_timeout,
        pki_dir=settings.pki_dir,
        reuse_port=settings.ingest_processes > 1,
        max_event_size=settings.max_event_size,
        idle_timeout=settings.idle_timeout,
        client_queue_bytes=settings.client_queue_bytes,
        slow_client_timeout=settings.slow_client_timeout,
        replay_limit=settings.replay_limit,
        pending_limit=settings.pending_limit,
        inflight_limit=settings.worker_inflight_limit,
        source_inflight_limit=settings.source_inflight_limit,
        stats_interval=settings.stats_interval,
    )
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    hwm = settings.fanout_hwm
    # Linger on the ROUTER so that events accepted before shutdown still reach a worker.
    router = make_socket(context, zmq.ROUTER, linger_ms=1000, hwm=hwm)
    sub = make_socket(context, zmq.SUB, linger_ms=0, hwm=hwm)
    stats_pub = make_socket(context, zmq.PUB, linger_ms=0, hwm=100)
    # Server-made events come in through one ingest only (serve: the first), in one order.
    inject = make_socket(context, zmq.PULL, linger_ms=0, hwm=hwm) if settings.inject else None
    try:
        if inject is not None:
            inject.bind(settings.inject_endpoint_url)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.bind(settings.work_endpoint_for(index))
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC_EVENT)
        sub.connect(settings.fanout_out_endpoint)
        stats_pub.connect(settings.fanout_in_endpoint)
        channels_of = _user_channels(settings)
        service = IngestService(
            config, router, sub, stats_pub, channels_of,
            authenticate if channels_of is not None else None, inject,
        )
        uvloop.run(_serve(service, settings.ready_fd))
    finally:
        for sock in (router, sub, stats_pub, inject):
            if sock is not None:
                sock.close()
        context.term()
    return 0


def _user_channels(settings: Settings) -> Callable[[str], Channels | None] | None:
    """Users' channels come from the store's database (TLS clients, stream logins)."""
    if not settings.tls_port and not settings.store:
        return None
    from otszmq.store.database import open_database  # noqa: PLC0415 - only with TLS
    from otszmq.store.models import MODELS  # noqa: PLC0415

    database = open_database(settings.store_database_url)
    database.bind(MODELS)
    return channels_for


async def _serve(service: IngestService, ready_fd: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await service.run(stop, ready_fd)
    log.info("ingest stopped")
