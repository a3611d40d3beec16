"""Entry point of ``otszmq fanout``."""

from __future__ import annotations

import os
import signal

import zmq

from otszmq.config import Settings
from otszmq.fanout.service import CONTROL_ENDPOINT, FanoutConfig, FanoutService
from otszmq.runtime import make_socket, prepare_ipc, setup_logging

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def run(settings: Settings) -> int:
    name = setup_logging(settings, "fanout")
    prepare_ipc(settings)
    # Block the stop signals before any thread exists: the steering thread waits for them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    hwm = settings.fanout_hwm
    frontend = make_socket(context, zmq.XSUB, linger_ms=0, hwm=hwm)
    backend = make_socket(context, zmq.XPUB, linger_ms=0, hwm=hwm)
    control = make_socket(context, zmq.REP, linger_ms=0, hwm=100)

    def stats_pub() -> zmq.Socket[bytes]:
        pub = make_socket(context, zmq.PUB, linger_ms=0, hwm=100)
        pub.connect(settings.fanout_in_endpoint)
        return pub

    def ready() -> None:
        if settings.ready_fd >= 0:
            os.write(settings.ready_fd, b"ready\n")

    try:
        frontend.bind(settings.fanout_in_endpoint)
        backend.bind(settings.fanout_out_endpoint)
        control.bind(CONTROL_ENDPOINT)
        service = FanoutService(
            FanoutConfig(name=name, stats_interval=settings.stats_interval),
            context, frontend, backend, control, stats_pub,
        )
        service.run(STOP_SIGNALS, ready)
    finally:
        for sock in (frontend, backend, control):
            sock.close()
        context.term()
    return 0
