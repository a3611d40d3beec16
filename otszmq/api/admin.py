"""The admin REST API under ``/api/``: health, status, EUDs, and its OpenAPI document.

Every route here but ``health`` and the document needs a bearer token (:mod:`otszmq.api.auth`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import falcon
from peewee import Database, PostgresqlDatabase, SqliteDatabase, fn

from otszmq import __version__
from otszmq.api.marti import tak_time
from otszmq.api.openapi import document
from otszmq.api.paging import page_of
from otszmq.api.params import bool_param, page_params, text_param
from otszmq.api.scope import caller_of, visible
from otszmq.stats import NoStats
from otszmq.store.groups import decode_groups
from otszmq.store.models import DataPackage, Eud

if TYPE_CHECKING:
    from otszmq.api.app import ApiConfig, CounterSource

log = logging.getLogger(__name__)


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def database_size(database: Database) -> int | None:
    """Bytes the database takes: the SQLite file and its WAL, or PostgreSQL's own count."""
    if isinstance(database, SqliteDatabase):
        base = Path(database.database)
        return sum(
            path.stat().st_size
            for path in (base, base.with_name(base.name + "-wal"))
            if path.exists()
        )
    if isinstance(database, PostgresqlDatabase):
        # NOTE: peewee's stubs leave execute_sql untyped.
        cursor = database.execute_sql(  # type: ignore[no-untyped-call]
            "SELECT pg_database_size(current_database())"
        )
        return int(cursor.fetchone()[0])
    return None


class Status:
    """Uptime, database size, EUD counts, and (``counters=false`` skips them) the counters
    every pipeline process publishes on the bus.

    PERF: counters are heard, not asked for: the call waits one to two stats intervals
    (~1.5 s at the defaults) in a sync worker. Dashboards polling often should pass
    ``counters=false`` or read ``/metrics`` once it exists.
    """

    def __init__(
        self, config: ApiConfig, database: Database, counters: CounterSource | None,
        started: float,
    ) -> None:
        self._config = config
        self._database = database
        self._counters = counters
        self._started = started

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        want_counters = bool_param(req, "counters", True)
        body: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "node_id": self._config.node_id,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "database_bytes": database_size(self._database),
            "euds": {
                "total": Eud.select().count(),
                "connected": Eud.select().where(Eud.last_status == "Connected").count(),
            },
            "data_packages": DataPackage.select().count(),
            "processes": None,
        }
        if want_counters and self._counters is not None:
            try:
                body["processes"] = self._counters()
            except NoStats as exc:
                # The API runs without the pipeline too; say so rather than fail.
                body["processes"] = []
                body["counters_error"] = str(exc)
        resp.media = body


def eud_item(eud: Eud) -> dict[str, Any]:
    return {
        "uid": eud.uid, "callsign": eud.callsign, "device": eud.device, "os": eud.os,
        "platform": eud.platform, "version": eud.version, "phone": eud.phone,
        "team": eud.team, "role": eud.role, "last_event_time": tak_time(eud.last_event_time),
        "last_status": eud.last_status, "last_lat": eud.last_lat, "last_lon": eud.last_lon,
        "groups": decode_groups(eud.groups),
    }


class EudList:
    """``page`` (from 1), ``per_page`` (1-500), ``callsign`` (substring, any case), ``uid``.

    Only the EUDs whose last report went to a channel the caller reads (admins: all).
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = page_params(req)
        query = visible(Eud.select(), Eud.groups, caller_of(req))
        callsign = text_param(req, "callsign")
        if callsign:
            query = query.where(fn.LOWER(Eud.callsign).contains(callsign.lower()))
        uid = text_param(req, "uid")
        if uid:
            query = query.where(Eud.uid == uid)
        resp.media = page_of(query, (Eud.callsign, Eud.uid), eud_item, *page)


class OpenApi:
    def __init__(self, config: ApiConfig) -> None:
        self._document = document(config.server_version)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._document
