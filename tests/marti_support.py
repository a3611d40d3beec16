"""In-process Marti API tests over SQLite and PostgreSQL: an app on a migrated database, a
caller chosen by the test, events stored through the store's real writer, and a fake injector
that records what the API asked of the node.

The caller: ``/Marti`` routes get theirs from authentication middleware (a client certificate
on the HTTPS port; the anonymous caller on the plain port). :class:`AsCaller` stands in for that
middleware, so a test can be any user without a TLS port.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
from peewee import Database

from otszmq.api.app import ApiConfig, ApiDeps, create_app
from otszmq.api.caller import ANONYMOUS_CALLER, Caller
from otszmq.store.writer import RecordWriter
from tests.store_support import database_url, migrated, record_of


def user_caller(name: str, groups_in: Sequence[str] = (), groups_out: Sequence[str] = (),
                *, admin: bool = False) -> Caller:
    return Caller(name, admin, frozenset(groups_in), frozenset(groups_out), "certificate")


class AsCaller:
    """Middleware (after the app's own): every request is made by ``self.caller``."""

    def __init__(self) -> None:
        self.caller: Caller = ANONYMOUS_CALLER

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.caller = self.caller


@dataclass
class RecordingInjector:
    """Stands in for :class:`otszmq.inject.Injector`; ``accept`` False plays a down ingest."""

    accept: bool = True
    regroups: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    sent: list[tuple[list[bytes], tuple[str, ...]]] = field(default_factory=list)

    def regroup(self, user: str, groups_in: Sequence[str], groups_out: Sequence[str]) -> bool:
        self.regroups.append((user, tuple(groups_in), tuple(groups_out)))
        return self.accept

    def send(self, events: Sequence[bytes], *, groups_in: Sequence[str], origin: str = "",
             sender_uid: str = "") -> bool:
        self.sent.append((list(events), tuple(groups_in)))
        return self.accept


@dataclass
class MartiApp:
    client: falcon.testing.TestClient
    database: Database
    who: AsCaller
    injector: Any

    def store(self, xml: bytes, groups: Sequence[str] = ("__ANON__",), *,
              raw_xml: bool = True, sender_uid: str = "") -> None:
        """Store one event as the store stage would: routed with ``groups``, written."""
        record = record_of(xml, sender_uid, groups)
        RecordWriter(self.database, store_raw_xml=raw_xml).write([record])


@contextmanager
def marti_app(backend: str, tmp_path: Path, *, injector: Any = None) -> Iterator[MartiApp]:
    with database_url(backend, tmp_path) as url, migrated(url) as database:
        config = ApiConfig(data_dir=tmp_path, server_version="otszmq test", node_id="node-1")
        app = create_app(config, ApiDeps(database, injector=injector))
        who = AsCaller()
        app.add_middleware(who)
        yield MartiApp(falcon.testing.TestClient(app), database, who, injector)


def assert_json_error(result: falcon.testing.Result, status: int, detail_part: str) -> None:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json")
    assert set(result.json) == {"error", "detail"}, result.json
    assert detail_part in result.json["detail"], result.json
