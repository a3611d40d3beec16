"""``create_app(config, deps)``: the Falcon app, built from explicit config and dependencies.

Nothing here reads the environment or opens anything by itself: :mod:`otszmq.api.wsgi` (for
gunicorn) and the tests build the config, open the database and hand both in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import falcon
from peewee import Database

from otszmq.api import errors, listings, markers
from otszmq.api.accounts import GroupItem, GroupList, Login, Logout, Me, UserItem, UserList
from otszmq.api.admin import EudList, Health, OpenApi, Status
from otszmq.api.auth import TokenAuth
from otszmq.api.certificates import add_certificate_routes
from otszmq.api.cot_history import CotXml, CotXmlHistory
from otszmq.api.enrollment import add_enrollment_routes
from otszmq.api.groups import GroupCacheEnabled, GroupsActive, GroupsAll
from otszmq.api.listeners import TlsListeners
from otszmq.api.marti import ClientEndPoints, Contacts, Version, VersionConfig
from otszmq.api.metrics import Metrics
from otszmq.api.packages import PackageStore
from otszmq.api.sync import (
    Content,
    MetadataKeywords,
    MetadataTool,
    MissionQuery,
    MissionUpload,
    Search,
)
from otszmq.api.tls_auth import TlsAuth
from otszmq.api.video import VideoConnectionManager, VideoItem, VideoList
from otszmq.inject import Injector
from otszmq.store.models import MODELS

# Counters of every pipeline process, as otszmq.stats.collect returns them.
CounterSource = Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True)
class ApiConfig:
    data_dir: Path
    upload_max_bytes: int = 100 << 20
    server_version: str = "otszmq"
    node_id: str = "otszmq"
    token_hours: float = 24.0  # lifetime of an admin API login token

    @property
    def packages_dir(self) -> Path:
        return self.data_dir / "packages"


@dataclass
class ApiDeps:
    """What the app is handed. ``database`` is opened (not necessarily connected) and migrated;
    ``counters`` (optional) returns the pipeline's counter snapshots, raising
    :class:`otszmq.stats.NoStats` when nothing answers."""

    database: Database
    counters: CounterSource | None = None
    # Server-made CoT (markers, deletes) and channel changes into the pipeline; None when the
    # app runs without a node (unit tests): routes that need it answer 503.
    injector: Injector | None = None
    # The HTTPS (client certificate) and enrollment listeners; None when the app serves
    # plain HTTP only (``gunicorn otszmq.api.wsgi``, unit tests).
    listeners: TlsListeners | None = None
    started: float = field(default_factory=time.monotonic)


class DatabaseSession:
    """One connection per request, closed after it.

    NOTE: peewee's recommended web pattern: a worker never holds a connection that died while it
    was idle (a restarted PostgreSQL), and SQLite readers do not pin old WAL snapshots.
    PERF: a connect per request costs ~0.1 ms on SQLite; on PostgreSQL a pool would pay off.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._database.connect(reuse_if_open=True)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        if not self._database.is_closed():
            self._database.close()


def create_app(
    config: ApiConfig, deps: ApiDeps
) -> falcon.App[falcon.Request, falcon.Response]:
    # The models are module-level classes: bind them to this app's database (one per process).
    deps.database.bind(MODELS)
    store = PackageStore(config.packages_dir, config.upload_max_bytes)
    # TokenAuth reads tokens from the database (so after DatabaseSession) and keeps a caller
    # set by any authentication middleware before it.
    app = falcon.App(middleware=(
        DatabaseSession(deps.database), TlsAuth(deps.listeners), TokenAuth(),
    ))
    # "/Marti/sync/content/" and "/Marti/sync/content" are the same route to TAK clients.
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)

    app.add_route("/Marti/api/version", Version(config))
    app.add_route("/Marti/api/version/config", VersionConfig(config))
    app.add_route("/Marti/api/clientEndPoints", ClientEndPoints(config))
    app.add_route("/Marti/api/contacts/all", Contacts())
    app.add_route("/Marti/api/cot/xml/{uid}", CotXml())
    app.add_route("/Marti/api/cot/xml/{uid}/all", CotXmlHistory())
    app.add_route("/Marti/api/groups/all", GroupsAll(config))
    app.add_route("/Marti/api/groups/active", GroupsActive(config, deps.injector))
    app.add_route("/Marti/api/groups/groupCacheEnabled", GroupCacheEnabled(config))
    app.add_route("/Marti/vcm", VideoConnectionManager())
    app.add_route("/Marti/api/video", VideoList())
    app.add_route("/Marti/api/video/{uid}", VideoItem())

    content = Content(store)
    app.add_route("/Marti/sync/missionupload", MissionUpload(store))
    app.add_route("/Marti/sync/content", content)
    app.add_route("/Marti/sync/missionquery", MissionQuery(store))
    app.add_route("/Marti/sync/search", Search())
    app.add_route("/Marti/api/sync/metadata/{hash}/tool", MetadataTool(content))
    app.add_route("/Marti/api/sync/metadata/{hash}/keywords", MetadataKeywords())

    app.add_route("/api/health", Health())
    app.add_route("/api/status", Status(config, deps.database, deps.counters, deps.started))
    app.add_route("/api/euds", EudList())
    app.add_route("/api/points", listings.PointList())
    app.add_route("/api/cot", listings.CotList())
    app.add_route("/api/chat", listings.ChatList())
    app.add_route("/api/alerts", listings.AlertList())
    app.add_route("/api/casevac", listings.CasevacList())
    app.add_route("/api/markers", markers.Markers(deps.injector))
    app.add_route("/api/markers/{uid}", markers.MarkerItem(deps.injector))
    app.add_route("/api/rb-lines", listings.RangeBearingList())
    app.add_route("/api/video", listings.VideoStreamList())
    app.add_route("/api/packages", listings.PackageList())
    app.add_route("/api/openapi.json", OpenApi(config))
    app.add_route("/api/login", Login(deps.database, timedelta(hours=config.token_hours)))
    app.add_route("/api/logout", Logout())
    app.add_route("/api/me", Me())
    app.add_route("/api/users", UserList(deps.database))
    app.add_route("/api/users/{username}", UserItem(deps.database, deps.injector))
    app.add_route("/api/groups", GroupList(deps.database))
    app.add_route("/api/groups/{name}", GroupItem(deps.database, deps.injector))
    add_enrollment_routes(app, config.data_dir / "pki", store)
    add_certificate_routes(app, config.data_dir / "pki")
    app.add_route("/metrics", Metrics(deps.counters))
    return app
