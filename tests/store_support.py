"""Test harness for the store: databases (SQLite in a temp dir, PostgreSQL in a private schema),
records made from real events, and a deadline wait.

PostgreSQL comes from ``OTSZMQ_TEST_PG_URL`` (``scripts/test`` starts the server and creates the
database). Each test gets a schema of its own, named in the URL's ``options`` (search_path), so
tests never see each other's tables; the schema is dropped afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from peewee import Database, OperationalError, PostgresqlDatabase

from otszmq.store.database import open_database
from otszmq.store.migrations import migrate
from otszmq.store.models import MODELS
from otszmq.store.records import (
    Record,
    RecordFields,
    decode_record,
    pack_records,
    record_from_event,
    unpack_records,
)
from otszmq.workers.cot import parse_event
from tests.support import sa_event

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/otszmq_test"
BACKENDS = ("sqlite", "postgresql")

T = "2024-05-01T12:00:00.123456Z"
STALE = "2024-05-01T12:06:15Z"


def store_event(
    cot_type: str, detail: str = "", *, uid: str = "U-1", point: str | None = None
) -> bytes:
    """An event for store tests; the time is T (12:00:00.123456 on 2024-05-01)."""
    point = point if point is not None else (
        '<point lat="48.8566" lon="2.3522" hae="35.0" ce="4.9" le="9999999.0"/>'
    )
    return (
        f'<event version="2.0" uid="{uid}" type="{cot_type}" how="m-g" time="{T}" start="{T}" '
        f'stale="{STALE}">{point}<detail>{detail}</detail></event>'
    ).encode()


SA = store_event(
    "a-f-G-U-C",
    '<takv device="PIXEL" platform="ATAK-CIV" os="34" version="5.1"/>'
    '<contact callsign="Bravo-6" endpoint="*:-1:stcp" phone="555"/>'
    '<__group name="Cyan" role="Team Lead"/><status battery="87"/>'
    '<track course="12.5" speed="3.0"/><marti><dest mission="M1"/><dest callsign="x"/></marti>',
    uid="ANDROID-1",
)


def pg_base_url() -> str:
    return os.environ.get("OTSZMQ_TEST_PG_URL", DEFAULT_PG_URL)


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema; the schema is dropped after."""
    base = pg_base_url()
    admin = open_database(base)
    assert isinstance(admin, PostgresqlDatabase)
    try:
        admin.connect()
    except OperationalError as exc:
        if "OTSZMQ_TEST_PG_URL" in os.environ:
            raise
        pytest.skip(f"PostgreSQL not reachable at {base} (set OTSZMQ_TEST_PG_URL): {exc}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        admin.execute_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with pg_schema_url() as url:
            yield url


@contextmanager
def migrated(url: str) -> Iterator[Database]:
    """The database at ``url``, bound to the models and migrated; closed afterwards."""
    database = open_database(url)
    database.bind(MODELS)
    migrate(database)
    try:
        yield database
    finally:
        database.close()


def record_of(xml: bytes, sender_uid: str = "", groups: Sequence[str] = ()) -> Record:
    """The record of an event as the worker builds it and the store reads it: packed in a
    record frame, unpacked and checked."""
    fields = record_from_event(parse_event(xml), sender_uid, tuple(groups))
    assert fields is not None, "not a stored event"
    (unpacked,) = unpack_records(pack_records([fields]))
    return decode_record(unpacked)


def sa_fields(i: int, run: str = "t") -> RecordFields:
    """The record fields of SA number ``i``, as a worker puts them in a record frame."""
    fields = record_from_event(parse_event(sa_event(f"uid-{run}-{i}", f"CS-{i}")), "")
    assert fields is not None
    return fields


def wait_until(what: str, check: Callable[[], bool], deadline_s: float = 20.0) -> None:
    """Poll an observable (a counter, a table) until true, or fail naming it."""
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {deadline_s} s")
        time.sleep(0.02)


def migrate_in_child(url: str) -> int:
    """For a multiprocessing child: migrate the database at ``url``; returns its version."""
    database = open_database(url)
    database.bind(MODELS)
    try:
        return migrate(database)
    finally:
        database.close()
