"""Schema versions: an ordered list of migrations, applied at start-up in one transaction.

The ``schema_version`` table holds one row per applied migration. :func:`migrate` applies every
migration newer than the database's version, in order, inside one transaction (PostgreSQL and
SQLite both have transactional DDL: a failed migration leaves the database as it was), and
refuses a database newer than this code.

Adding a migration: append ``(N, "what it does", function)`` to ``MIGRATIONS``, and change the
models to match. NOTE: version 1 creates the tables from the models *as they are now*, so on a
fresh database a later migration finds its change already made; write it to check first
(:func:`has_column`) and do nothing then.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from peewee import Database, PeeweeException, PostgresqlDatabase

from otszmq.errors import StoreError
from otszmq.store.database import open_database, write_transaction
from otszmq.store.models import MODELS, ApiToken, SchemaVersion

log = logging.getLogger(__name__)

Migration = Callable[[Database], None]

# An arbitrary but fixed key: two stores started at once on one PostgreSQL database take turns.
_LOCK_KEY: Final = zlib.crc32(b"otszmq schema migrations")


def _create_tables(database: Database) -> None:
    database.create_tables(MODELS, safe=True)


# The tables whose rows carry the channels they were written to (otszmq.store.groups).
_GROUPED_TABLES: Final = (
    "eud", "cot", "point", "geo_chat", "alert", "casevac", "marker", "range_bearing_line",
    "video_stream",
)


def _add_item_groups(database: Database) -> None:
    # Rows already stored keep NULL: nobody knows their channels, so only admins list them
    # until the item is reported again.
    for table in _GROUPED_TABLES:
        if not has_column(database, table, "groups"):
            # NOTE: fixed identifiers only; peewee's stubs leave execute_sql untyped.
            database.execute_sql(  # type: ignore[no-untyped-call]
                f'ALTER TABLE "{table}" ADD COLUMN "groups" TEXT'
            )


def _create_api_tokens(database: Database) -> None:
    # A fresh database got the table from version 1 already; safe=True makes this a no-op then.
    database.create_tables([ApiToken], safe=True)


def _drop_cot_type_index(database: Database) -> None:
    # The API filters the CoT log by type prefix with SUBSTR, which no index serves (EXPLAIN
    # QUERY PLAN: a scan of cot_time either way); the index only slowed every write.
    # NOTE: a fixed identifier; peewee's stubs leave execute_sql untyped.
    database.execute_sql('DROP INDEX IF EXISTS "cot_type"')  # type: ignore[no-untyped-call]


MIGRATIONS: Final[tuple[tuple[int, str, Migration], ...]] = (
    (1, "create tables", _create_tables),
    (2, "api tokens", _create_api_tokens),
    (3, "item groups", _add_item_groups),
    (4, "no index on the CoT log's type", _drop_cot_type_index),
)

LATEST: Final = MIGRATIONS[-1][0]


def has_column(database: Database, table: str, column: str) -> bool:
    """For migrations: whether ``table`` already has ``column``."""
    return any(info.name == column for info in database.get_columns(table))


def current_version(database: Database) -> int:
    """The schema version of ``database`` (0: empty)."""
    if not database.table_exists(SchemaVersion._meta.table_name):
        return 0
    newest = SchemaVersion.select(SchemaVersion.version).order_by(
        SchemaVersion.version.desc()
    ).first()
    return 0 if newest is None else int(newest.version)


def migrate(database: Database, migrations: tuple[tuple[int, str, Migration], ...] = MIGRATIONS
            ) -> int:
    """Bring ``database`` (already bound to the models) to the newest version; returns it."""
    versions = [version for version, _, _ in migrations]
    if versions != sorted(set(versions)) or versions[0] != 1:
        raise StoreError(f"migrations must be numbered 1, 2, ... in order, got {versions}")
    try:
        with write_transaction(database):
            if isinstance(database, PostgresqlDatabase):
                # NOTE: peewee's stubs leave execute_sql untyped.
                database.execute_sql(  # type: ignore[no-untyped-call]
                    "SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,)
                )
            database.create_tables([SchemaVersion], safe=True)
            version = current_version(database)
            if version > versions[-1]:
                raise StoreError(
                    f"database schema is version {version}, newer than this otszmq "
                    f"(knows up to {versions[-1]}): upgrade otszmq"
                )
            for number, description, apply in migrations:
                if number <= version:
                    continue
                log.info("applying schema migration %d: %s", number, description)
                apply(database)
                SchemaVersion.create(
                    version=number, description=description, applied_at=datetime.now(UTC)
                )
                version = number
    except PeeweeException as exc:
        raise StoreError(f"schema migration failed: {exc}") from exc
    return version


def open_migrated(url: str) -> tuple[Database, int]:
    """Open ``url``, bind the models to it and bring its schema up to date.

    Returns the database with no connection left open (peewee opens one per thread on
    first use) and its schema version. Raises :class:`StoreError` naming the database.
    """
    database = open_database(url)
    database.bind(MODELS)
    try:
        version = migrate(database)
    finally:
        database.close()
    return database, version
