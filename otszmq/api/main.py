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
from otszmq.api.listeners import TlsListeners, TlsThreadWorker
from otszmq.config import Settings
from otszmq.errors import ConfigError, PkiError
from otszmq.inject import Injector
from otszmq.runtime import setup_logging
from otszmq.stats import StatsListener
from otszmq.store.database import redact
from otszmq.store.migrations import open_migrated

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10  # seconds gunicorn's workers get to finish requests on SIGTERM
REQUEST_TIMEOUT = 120  # seconds of worker silence before the arbiter restarts it


def app_from_settings(
    settings: Settings, listeners: TlsListeners | None = None
) -> falcon.App[falcon.Request, falcon.Response]:
    """Open and migrate the database, then build the app (no connection is left open).

    ``listeners``: the TLS ports' contexts when this process serves them (``otszmq api``).
    """
    url = settings.store_database_url
    # Each worker (thread) opens its own connection, per request.
    database, version = open_migrated(url)
    log.info("api: database %s at schema version %d", redact(url), version)
    config = ApiConfig(
        data_dir=settings.data_dir,
        upload_max_bytes=settings.upload_max_bytes,
        server_version=f"otszmq {__version__}",
        node_id=settings.name or socket.gethostname(),
        token_hours=settings.api_token_hours,
    )
    counters = StatsListener(settings.fanout_out_endpoint, settings.stats_interval)
    injector = Injector.for_settings(settings, "api")
    return create_app(config, ApiDeps(database=database, counters=counters.snapshots,
                                      injector=injector, listeners=listeners))


def tls_listeners(settings: Settings) -> TlsListeners | None:
    """The HTTPS and enrollment ports' TLS, or None if both are off; a clear error if they
    are on and there is no CA (``serve`` makes one; ``otszmq api`` alone does not)."""
    if not (settings.https_port or settings.enroll_port):
        return None
    try:
        return TlsListeners(settings.pki_dir, settings.https_port, settings.enroll_port,
                            settings.tls_handshake_timeout)
    except PkiError as exc:
        raise PkiError(f"{exc} (or turn the TLS ports off: --https-port 0 --enroll-port 0)"
                       ) from exc


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Read by TlsThreadWorker in each worker (gunicorn hands workers this object).
        self.listeners = tls_listeners(settings)
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        options: dict[str, Any] = {
            # One arbiter, one set of workers for every port; TlsThreadWorker does the TLS
            # of the HTTPS and enrollment ports (otszmq.api.listeners says why).
            "bind": [f"{settings.bind}:{port}" for port in (
                settings.api_port, settings.https_port, settings.enroll_port) if port],
            "workers": settings.api_workers,
            # Threads: a slow 100 MiB upload holds a thread, not the whole worker, and the
            # worker keeps answering the arbiter's heartbeat meanwhile.
            "worker_class": TlsThreadWorker,
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
        return app_from_settings(self._settings, self.listeners)


def run(settings: Settings) -> int:
    setup_logging(settings, "api")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not (settings.api_port or settings.https_port or settings.enroll_port):
        raise ConfigError("api_port, https_port and enroll_port are all 0: nothing to serve")
    _Gunicorn(settings).run()  # returns (or exits) once gunicorn has stopped
    return 0
