"""Entry point of ``otszmq api``: gunicorn serving the Falcon app, configured from Settings.

Runs gunicorn's arbiter in this process (gunicorn's documented custom-application pattern), so
the supervisor's SIGTERM reaches gunicorn directly and shuts it down gracefully. The app is
built once in the arbiter before the workers fork (``preload_app``): schema migrations run
once, not once per worker racing each other.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import falcon

# NOTE: gunicorn ships no type information.
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from otszmq import __version__
from otszmq.api.app import ApiConfig, ApiDeps, create_app
from otszmq.config import Settings
from otszmq.inject import Injector
from otszmq.runtime import setup_logging
from otszmq.stats import collect
from otszmq.store.database import redact
from otszmq.store.migrations import open_migrated

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10  # seconds gunicorn's workers get to finish requests on SIGTERM
REQUEST_TIMEOUT = 120  # seconds of worker silence before the arbiter restarts it


def app_from_settings(settings: Settings) -> falcon.App[falcon.Request, falcon.Response]:
    """Open and migrate the database, then build the app (no connection is left open)."""
    url = settings.store_database_url
    # Each worker (thread) opens its own connection, per request.
    database, version = open_migrated(url)
    log.info("api: database %s at schema version %d", redact(url), version)
    config = ApiConfig(
        data_dir=settings.data_dir,
        upload_max_bytes=settings.upload_max_bytes,
        server_version=f"otszmq {__version__}",
        node_id=settings.name or socket.gethostname(),
    )
    endpoint = settings.fanout_out_endpoint
    # Heard, not asked: one and a half stats intervals catch each process's next snapshot.
    wait = 1.5 * settings.stats_interval

    def counters() -> list[dict[str, Any]]:
        import zmq  # noqa: PLC0415 -- only the status route needs it

        # A context per call, made in the worker that uses it (never inherited over fork).
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            return collect(context, endpoint, wait)
        finally:
            context.term()

    injector = Injector.for_settings(settings, "api")
    return create_app(config, ApiDeps(database=database, counters=counters, injector=injector))


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        options: dict[str, Any] = {
            "bind": [f"{settings.bind}:{settings.api_port}"],
            "workers": settings.api_workers,
            # Threads: a slow 100 MiB upload holds a thread, not the whole worker, and the
            # worker keeps answering the arbiter's heartbeat meanwhile.
            "worker_class": "gthread",
            "threads": 4,
            "preload_app": True,
            "timeout": REQUEST_TIMEOUT,
            "graceful_timeout": STOP_TIMEOUT,
            "proc_name": settings.name or "otszmq-api",
            "loglevel": settings.log_level,
            "when_ready": self._when_ready,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def _when_ready(self, server: Any) -> None:
        # The supervisor's handshake: the port is bound and the app (and schema) are ready.
        if self._settings.ready_fd >= 0:
            os.write(self._settings.ready_fd, b"ready\n")

    def load(self) -> falcon.App[falcon.Request, falcon.Response]:
        return app_from_settings(self._settings)


def run(settings: Settings) -> int:
    setup_logging(settings, "api")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _Gunicorn(settings).run()  # returns (or exits) once gunicorn has stopped
    return 0
