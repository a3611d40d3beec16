"""The fan-out stage: one XSUB <-> XPUB proxy that every publisher and subscriber meets at.

The proxy loop is libzmq's own (``zmq_proxy_steerable``), in C, with no per-message
Python. A side thread asks it for its message counts over the control socket once
per stats interval, publishes them like any stage, and tells it to terminate when
the process is asked to stop.
"""

from __future__ import annotations

import logging
import signal
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from otszmq.metrics import Counters, publish_stats

log = logging.getLogger(__name__)

CONTROL_ENDPOINT = "inproc://fanout-control"
STATISTICS_NAMES = (
    "frontend_messages_in", "frontend_bytes_in", "frontend_messages_out",
    "frontend_bytes_out", "backend_messages_in", "backend_bytes_in",
    "backend_messages_out", "backend_bytes_out",
)


@dataclass(frozen=True)
class FanoutConfig:
    name: str
    stats_interval: float


class FanoutService:
    def __init__(
        self,
        config: FanoutConfig,
        context: zmq.Context[zmq.Socket[bytes]],
        frontend: zmq.Socket[bytes],
        backend: zmq.Socket[bytes],
        control: zmq.Socket[bytes],
        stats_pub_factory: Callable[[], zmq.Socket[bytes]],
    ) -> None:
        self.config = config
        self._context = context
        self._frontend = frontend
        self._backend = backend
        self._control = control
        self._stats_pub_factory = stats_pub_factory
        self.counters = Counters()

    def run(self, stop_signals: frozenset[int], on_ready: Callable[[], None]) -> None:
        """Run the proxy until one of ``stop_signals`` arrives.

        The caller must have blocked ``stop_signals`` in this thread (pthread_sigmask)
        before creating any thread, so that the steering thread receives them.
        """
        steering = threading.Thread(
            target=self._steer, args=(stop_signals,), name="fanout-steering", daemon=True
        )
        steering.start()
        on_ready()
        log.info("%s proxying", self.config.name)
        zmq.proxy_steerable(self._frontend, self._backend, None, self._control)
        steering.join()
        log.info("%s stopped", self.config.name)

    def _steer(self, stop_signals: frozenset[int]) -> None:
        # The REQ end of the control pair and the stats PUB live in this thread only.
        request = self._context.socket(zmq.REQ)
        request.setsockopt(zmq.LINGER, 0)
        request.connect(CONTROL_ENDPOINT)
        stats_pub = self._stats_pub_factory()
        try:
            while True:
                received = signal.sigtimedwait(stop_signals, self.config.stats_interval)
                self._read_statistics(request)
                publish_stats(stats_pub, self.config.name, "fanout", self.counters)
                if received is not None:
                    log.info("%s: signal %d, terminating the proxy", self.config.name,
                             received.si_signo)
                    request.send(b"TERMINATE")
                    return
        finally:
            request.close()
            stats_pub.close()

    def _read_statistics(self, request: zmq.Socket[bytes]) -> None:
        request.send(b"STATISTICS")
        frames = request.recv_multipart()
        for name, frame in zip(STATISTICS_NAMES, frames, strict=False):
            self.counters.values[name] = struct.unpack("<Q", frame)[0]
