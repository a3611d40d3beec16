"""Entry point of ``otszmq store``: settings, database, sockets, signals; then the service."""

from __future__ import annotations

import logging
from datetime import timedelta

import zmq

from otszmq.config import Settings
from otszmq.runtime import (
    make_socket,
    prepare_ipc,
    report_ready,
    setup_logging,
    stop_on_signals,
    tune_gc,
    wakeup_pipe,
)
from otszmq.store.database import redact
from otszmq.store.migrations import open_migrated
from otszmq.store.service import StoreConfig, StoreService
from otszmq.store.writer import Retention
from otszmq.store.writer_process import WriterSpec, spawn_writer
from otszmq.wire import TOPIC_RECORD

log = logging.getLogger(__name__)


def _days(days: float) -> timedelta | None:
    return timedelta(days=days) if days > 0 else None


def config_from(settings: Settings, name: str) -> StoreConfig:
    return StoreConfig(
        name=name,
        store_raw_xml=settings.store_raw_xml,
        batch_size=settings.store_batch_size,
        flush_interval=settings.store_flush_interval,
        queue_limit=settings.store_queue_limit,
        retention=Retention(
            points=_days(settings.points_retention_days),
            cot=_days(settings.cot_retention_days),
            chat=_days(settings.chat_retention_days),
        ),
        prune_interval=settings.store_prune_interval,
        stats_interval=settings.stats_interval,
        work_slice=settings.store_work_slice,
        writer_priority=settings.store_priority,
    )


def writer_spec(config: StoreConfig, database_url: str, log_level: int) -> WriterSpec:
    return WriterSpec(
        name=config.name, log_level=log_level, database_url=database_url,
        store_raw_xml=config.store_raw_xml, batch_size=config.batch_size,
        retention=config.retention, prune_interval=config.prune_interval,
        work_slice=config.work_slice, priority=config.writer_priority,
    )


def run(settings: Settings) -> int:
    name = setup_logging(settings, "store")
    prepare_ipc(settings)
    config = config_from(settings, name)
    url = settings.store_database_url
    # Migrate before subscribing: a database that cannot be opened or migrated stops the stage
    # here with a StoreError naming it (the CLI prints it and exits 2). The writer process
    # opens its own connection.
    database, version = open_migrated(url)
    log.info("database %s at schema version %d", redact(url), version)

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = make_socket(context, zmq.SUB, linger_ms=0, hwm=settings.fanout_hwm)
    stats_pub = make_socket(context, zmq.PUB, linger_ms=0, hwm=100)
    spec = writer_spec(config, url, settings.log_level_number)
    with wakeup_pipe() as wake_r:
        service: StoreService | None = None
        try:
            sub.setsockopt(zmq.SUBSCRIBE, TOPIC_RECORD)
            sub.connect(settings.fanout_out_endpoint)
            stats_pub.connect(settings.fanout_in_endpoint)
            service = StoreService(
                config, lambda: spawn_writer(context, spec, settings.data_dir), sub, stats_pub,
                wake_r,
            )
            stop_on_signals(service.request_stop)
            tune_gc()
            report_ready(settings)
            service.run()
        finally:
            if service is not None:
                service.close()
            for sock in (sub, stats_pub):
                sock.close()
            context.term()
            database.close()
    return 0
