"""Every stored item knows the channels it was written to: the writer fills ``groups`` in each
table from the record, and schema version 3 adds the column to a database made before it.
SQLite and PostgreSQL both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from peewee import Database

from otszmq.store.groups import decode_groups, encode_groups, meets_any
from otszmq.store.migrations import MIGRATIONS, has_column, migrate
from otszmq.store.models import (
    MODELS,
    Alert,
    Casevac,
    CotLog,
    Eud,
    GeoChat,
    Marker,
    Point,
    RangeBearingLine,
    VideoStream,
)
from otszmq.store.writer import RecordWriter
from tests.store_support import BACKENDS, SA, database_url, migrated, record_of, store_event

GROUPED = (Eud, CotLog, Point, GeoChat, Alert, Casevac, Marker, RangeBearingLine, VideoStream)

EVENTS = (
    SA,  # EUD, CoT log, point
    store_event("b-m-p-s-m", '<contact callsign="CP"/>', uid="M-1"),
    store_event("b-t-f", '<__chat chatroom="All Chat Rooms" id="All Chat Rooms" '
                         'senderCallsign="Bravo-6"/><remarks>hello</remarks>', uid="CHAT-1"),
    store_event("b-a-o-tbl", '<emergency type="911 Alert"/>', uid="ALERT-1"),
    store_event("b-r-f-h-c", '<contact callsign="MED-1"/><_medevac_ title="MED-1" urgent="1"/>',
                uid="CASEVAC-1"),
    store_event("u-rb-a", '<range value="1000"/><bearing value="90"/>', uid="RB-1"),
    store_event("b-i-v", '<__video url="rtsp://cam/1"/>', uid="VIDEO-1"),
)


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path) -> Iterator[Database]:
    with database_url(request.param, tmp_path) as url, migrated(url) as db:
        yield db


def write(database: Database, groups: tuple[str, ...]) -> None:
    records = [record_of(xml, "ANDROID-1", groups) for xml in EVENTS]
    RecordWriter(database, store_raw_xml=False).write(records)


def test_every_grouped_table_stores_the_senders_in_groups(database):
    write(database, ("Red", "Blue,Team", "__ANON__"))
    for model in GROUPED:
        rows = list(model.select())
        assert rows, f"{model.__name__}: nothing stored"
        for row in rows:
            assert decode_groups(row.groups) == ["Blue,Team", "Red", "__ANON__"], model.__name__


def test_a_later_report_replaces_the_groups_of_an_upserted_item(database):
    write(database, ("Red",))
    write(database, ("Blue",))  # same uids, same times: the newest report (>=) wins
    assert decode_groups(Marker.get(Marker.uid == "M-1").groups) == ["Blue"]
    assert decode_groups(Eud.get(Eud.uid == "ANDROID-1").groups) == ["Blue"]
    # Appended tables keep one row per report, each with its own channels.
    assert sorted(decode_groups(row.groups)[0] for row in CotLog.select()
                  .where(CotLog.uid == "M-1")) == ["Blue", "Red"]


@pytest.mark.parametrize(("names", "matches"), [
    (["Red"], {"red"}), (["Blue,Team"], {"comma"}), (["Blue"], set()), (["red"], set()),
    (["%"], {"percent"}), (["_"], set()), (["Red", "%"], {"red", "percent"}), ([], set()),
])
def test_meets_any_is_exact_and_case_sensitive(database, names, matches):
    # Groups with SQL wildcards and separators in their names must match only themselves.
    for uid, groups in (("red", ["Red"]), ("comma", ["Blue,Team"]), ("percent", ["%"]),
                        ("none", [])):
        Eud.create(uid=uid, groups=encode_groups(groups))
    found = {eud.uid for eud in Eud.select().where(meets_any(Eud.groups, names))}
    assert found == matches


def test_version_3_adds_the_column_to_an_older_database(database):
    for model in GROUPED:
        database.execute_sql(f'ALTER TABLE "{model._meta.table_name}" DROP COLUMN "groups"')
    database.execute_sql("DELETE FROM schema_version WHERE version >= 3")
    assert not has_column(database, "marker", "groups")
    assert migrate(database) == MIGRATIONS[-1][0] >= 3
    for model in GROUPED:
        assert has_column(database, model._meta.table_name, "groups"), model.__name__
    write(database, ("Red",))  # and the writer can use it
    assert decode_groups(Marker.get(Marker.uid == "M-1").groups) == ["Red"]


def test_models_and_migration_agree_on_the_grouped_tables():
    grouped = {model for model in MODELS if "groups" in model._meta.fields}
    assert grouped == set(GROUPED)
