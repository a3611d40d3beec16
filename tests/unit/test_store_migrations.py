"""Unit tests of schema migrations (otszmq.store.migrations) on SQLite in a temp dir, plus the
database URL handling (otszmq.store.database) and the UTC datetime field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from peewee import Database, SqliteDatabase

from otszmq.errors import StoreError
from otszmq.store.database import open_database, redact
from otszmq.store.migrations import LATEST, MIGRATIONS, current_version, has_column, migrate
from otszmq.store.models import MODELS, Point, SchemaVersion


@pytest.fixture
def database(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'sub' / 'store.db'}")
    db.bind(MODELS)
    yield db
    db.close()


def tables(db: Database) -> set[str]:
    return set(db.get_tables())


def test_version_1_creates_every_table(database):
    assert current_version(database) == 0
    assert migrate(database) == LATEST == len(MIGRATIONS)
    assert {model._meta.table_name for model in MODELS} <= tables(database)
    assert "cot" in tables(database) and "range_bearing_line" in tables(database)
    row = SchemaVersion.get(SchemaVersion.version == 1)
    assert row.description == "create tables"
    assert row.applied_at.tzinfo is UTC


def test_migrating_again_changes_nothing(database):
    migrate(database)
    migrate(database)
    assert SchemaVersion.select().count() == LATEST


def test_later_migrations_apply_in_order_once(database):
    migrate(database)
    applied = []

    def add_column(db: Database) -> None:
        applied.append(LATEST + 1)
        if not has_column(db, "point", "extra"):
            db.execute_sql("ALTER TABLE point ADD COLUMN extra TEXT")

    def second(db: Database) -> None:
        applied.append(LATEST + 2)

    more = (*MIGRATIONS, (LATEST + 1, "add point.extra", add_column),
            (LATEST + 2, "nothing", second))
    assert migrate(database, more) == LATEST + 2
    assert migrate(database, more) == LATEST + 2
    assert applied == [LATEST + 1, LATEST + 2]
    assert has_column(database, "point", "extra")


def test_a_failing_migration_leaves_the_database_as_it_was(database):
    migrate(database)

    def broken(db: Database) -> None:
        db.execute_sql("CREATE TABLE half_done (x INTEGER)")
        db.execute_sql("THIS IS NOT SQL")

    with pytest.raises(StoreError, match="schema migration failed"):
        migrate(database, (*MIGRATIONS, (LATEST + 1, "broken", broken)))
    assert current_version(database) == LATEST
    assert "half_done" not in tables(database)


def test_a_newer_database_is_refused(database):
    migrate(database)
    SchemaVersion.create(version=99, description="future", applied_at=datetime.now(UTC))
    with pytest.raises(StoreError, match="version 99, newer than this otszmq"):
        migrate(database)


def test_migrations_must_be_numbered_in_order(database):
    with pytest.raises(StoreError, match="numbered"):
        migrate(database, ((2, "x", lambda db: None),))


def test_sqlite_is_opened_in_wal_mode_with_foreign_keys(database):
    assert isinstance(database, SqliteDatabase)
    migrate(database)
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_datetimes_are_utc_aware_in_and_out(database):
    migrate(database)
    paris = timezone(timedelta(hours=2))
    moment = datetime(2024, 5, 1, 14, 0, 0, tzinfo=paris)
    Point.create(uid="u", type="a-f-G", lat=1.0, lon=2.0, time=moment)
    stored = Point.get().time
    assert stored == moment and stored.tzinfo is UTC and stored.hour == 12
    # Fixed-width text compares correctly in SQLite, a zero fraction included.
    later = datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert Point.select().where(Point.time < later).count() == 1
    with pytest.raises(StoreError, match="naive"):
        Point.create(uid="u", type="a", lat=1.0, lon=2.0, time=datetime(2024, 1, 1))


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://u:secret@h/db", "unsupported scheme 'mysql'"),
    ("sqlite://", "names no database"),
    ("postgresql://u:secret@h", "names no database"),
])
def test_bad_urls_are_refused_without_their_password(url, message):
    with pytest.raises(StoreError, match=message) as raised:
        open_database(url)
    assert "secret" not in str(raised.value)


def test_redact_hides_the_password_only():
    assert redact("postgresql://ots:p%40ss@db:5432/ots") == "postgresql://ots:***@db:5432/ots"
    assert redact("sqlite:////var/lib/otszmq.db") == "sqlite:////var/lib/otszmq.db"
