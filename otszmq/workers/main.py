"""Entry point of ``otszmq worker``: settings, sockets, signals; then the service."""

from __future__ import annotations

import zmq

from otszmq.config import Settings
from otszmq.runtime import (
    instance_id,
    make_socket,
    prepare_ipc,
    report_ready,
    setup_logging,
    stop_on_signals,
    wakeup_pipe,
)
from otszmq.wire import TOPIC_SHED
from otszmq.workers.service import WorkerConfig, WorkerService


def run(settings: Settings) -> int:
    name = setup_logging(settings, "worker")
    prepare_ipc(settings)
    worker_id = instance_id(name)
    config = WorkerConfig(
        name=name, worker_id=worker_id, stats_interval=settings.stats_interval,
        records=settings.store,
    )
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    hwm = settings.fanout_hwm
    dealers: list[zmq.Socket[bytes]] = []
    # Linger so that routed events still in the PUB queue reach the fan-out on exit.
    pub = make_socket(context, zmq.PUB, linger_ms=1000, hwm=hwm)
    sockets = [pub]
    shed_sub: zmq.Socket[bytes] | None = None
    if settings.store:  # SHED (otszmq.wire): the store says when it would drop our records
        shed_sub = make_socket(context, zmq.SUB, linger_ms=0, hwm=hwm)
        shed_sub.setsockopt(zmq.SUBSCRIBE, TOPIC_SHED)
        sockets.append(shed_sub)
    with wakeup_pipe() as wake_r:
        try:
            for endpoint in settings.worker_connects:
                dealer = make_socket(context, zmq.DEALER, linger_ms=0, hwm=hwm)
                dealer.setsockopt(zmq.ROUTING_ID, worker_id.encode())
                # Heartbeats only go to connected ingests, never queue for absent ones.
                dealer.setsockopt(zmq.IMMEDIATE, 1)
                dealer.connect(endpoint)
                dealers.append(dealer)
            pub.connect(settings.fanout_in_endpoint)
            if shed_sub is not None:
                shed_sub.connect(settings.fanout_out_endpoint)
            service = WorkerService(config, dealers, pub, wake_r, shed_sub)
            stop_on_signals(service.request_stop)
            report_ready(settings)
            service.run()
        finally:
            for sock in (*dealers, *sockets):
                sock.close()
            context.term()
    return 0
