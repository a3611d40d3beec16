"""Open the store's database from a URL: SQLite (the default, WAL) or PostgreSQL.

``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
``postgresql://user:password@host:port/name?options=...`` (peewee's playhouse.db_url syntax; query
parameters are passed to the driver, psycopg2). Nothing connects until first use.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from peewee import Database, PostgresqlDatabase, SqliteDatabase

# NOTE: playhouse ships no type information (peewee itself does).
from playhouse.db_url import parse as parse_url  # type: ignore[import-untyped]

from otszmq.errors import StoreError

SQLITE_SCHEMES: Final = frozenset({"sqlite"})
POSTGRES_SCHEMES: Final = frozenset({"postgres", "postgresql"})

# WAL lets the API's readers read while the writer writes; NORMAL syncs at checkpoints rather
# than at every commit (in WAL mode a crash may lose the last commits, never corrupt the file);
# busy_timeout makes a reader's lock wait instead of failing at once.
SQLITE_PRAGMAS: Final = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "cache_size": -32_000,  # KiB (negative): 32 MiB of page cache
    "temp_store": "memory",
}


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_database(url: str) -> Database:
    """A peewee database for ``url``, not yet connected; :class:`StoreError` if unusable."""
    scheme = urlsplit(url).scheme
    try:
        params: dict[str, Any] = parse_url(url, unquote_password=True, unquote_user=True)
    except ValueError as exc:
        raise StoreError(f"database_url {redact(url)!r}: {exc}") from exc
    name = params.pop("database", "")
    if not name:
        raise StoreError(
            f"database_url {redact(url)!r} names no database (sqlite:///path or "
            "postgresql://host/name)"
        )
    if scheme in SQLITE_SCHEMES:
        if name == ":memory:":
            # Each thread's connection would get a database of its own: the writer's would
            # have no tables.
            raise StoreError(f"database_url {url!r}: names no database file (sqlite:///path)")
        try:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"database {name}: cannot create its directory: {exc}") from exc
        return SqliteDatabase(name, pragmas=SQLITE_PRAGMAS, **params)
    if scheme in POSTGRES_SCHEMES:
        return PostgresqlDatabase(name, **params)
    raise StoreError(
        f"database_url {redact(url)!r}: unsupported scheme {scheme!r} (use sqlite or postgresql)"
    )


def write_transaction(database: Database) -> AbstractContextManager[object]:
    """A transaction that writes: on SQLite it takes the write lock at BEGIN (IMMEDIATE).

    NOTE: the store and the API write to one SQLite file. A deferred transaction that reads
    before it writes fails at once ("database is locked") when another process wrote meanwhile;
    an immediate one waits for the lock (busy_timeout) instead.
    """
    if isinstance(database, SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()
