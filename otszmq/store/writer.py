"""Write batches of records into the database (one transaction each) and prune old rows.

The writer is the only writer of its database (DESIGN §4) and runs in the store's writer
process, which owns its connection. The hot tables go through :mod:`otszmq.store.bulk` (cached
multi-row statements: a 500-record SA batch is about twenty round trips); map items are
upserted by uid with the newest report winning even across batches (``ON CONFLICT ... DO UPDATE
... WHERE`` on the event time). Rare work (deletes, alerts, pruning) uses peewee's query builder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from peewee import Database, InterfaceError, OperationalError, PeeweeException, chunked

from otszmq.errors import StoreError
from otszmq.pacing import Pacer
from otszmq.store import rows as R
from otszmq.store.bulk import MAX_PARAMETERS, BulkWriter, Upsert
from otszmq.store.database import write_transaction
from otszmq.store.groups import encode_groups
from otszmq.store.models import (
    Alert,
    BaseModel,
    Casevac,
    ChatRoom,
    ChatRoomMember,
    CotLog,
    Eud,
    GeoChat,
    Marker,
    Point,
    RangeBearingLine,
    VideoStream,
)
from otszmq.store.records import Record

log = logging.getLogger(__name__)

# Map items: the newest report of a uid wins, also against what an earlier batch stored.
NEWEST: Final = Upsert(key="uid", newer="time")
# An EUD keeps what a later report leaves out (an SA without <takv> does not erase the device).
EUD_UPSERT: Final = Upsert(key="uid", newer="last_event_time", keep=(
    "callsign", "device", "os", "platform", "version", "phone", "endpoint", "team", "role",
    "last_lat", "last_lon",
))


class DatabaseUnavailable(StoreError):
    """The database cannot be reached or is busy; the same batch may be retried later."""


@dataclass(frozen=True)
class Retention:
    """How long rows are kept; None keeps them forever."""

    points: timedelta | None
    cot: timedelta | None
    chat: timedelta | None


class RecordWriter:
    def __init__(
        self, database: Database, *, store_raw_xml: bool, pace: Pacer | None = None
    ) -> None:
        """``pace``: called at each point where writing may pause (default: never pauses); the
        store's write loop rests it while it waits for records."""
        self.database = database
        self.store_raw_xml = store_raw_xml
        self.pace = pace or Pacer(0.0)
        self._bulk = BulkWriter(database, self.pace)

    def write(self, records: Sequence[Record]) -> None:
        """Write ``records`` in one transaction: all of them or (on an error) none.

        :class:`DatabaseUnavailable` when the database is down or locked (retry the batch),
        :class:`StoreError` when the database refused the data (retry record by record).
        """
        batch = R.collect(records, store_raw_xml=self.store_raw_xml, pace=self.pace)
        self._run(lambda: self._apply(batch), "write")

    def prune(self, retention: Retention, now: datetime) -> dict[str, int]:
        """Delete rows older than their retention; returns the count per table."""
        counts: dict[str, int] = {}

        targets: tuple[tuple[str, timedelta | None, type[BaseModel], Any], ...] = (
            ("points", retention.points, Point, Point.time),
            ("cot", retention.cot, CotLog, CotLog.time),
            ("chat", retention.chat, GeoChat, GeoChat.time),
        )

        def prune() -> None:
            for name, age, model, column in targets:
                if age is not None:
                    counts[name] = int(model.delete().where(column < now - age).execute())

        self._run(prune, "prune")
        return counts

    def _run(self, work: Callable[[], None], what: str) -> None:
        try:
            with write_transaction(self.database):
                work()
        except (OperationalError, InterfaceError) as exc:
            # A lost connection stays broken: drop it so that the next try connects afresh.
            self._reset()
            raise DatabaseUnavailable(f"{what}: database unavailable: {exc}") from exc
        except PeeweeException as exc:
            raise StoreError(f"{what}: database refused the batch: {exc}") from exc

    def _reset(self) -> None:
        try:
            self.database.close()
        except PeeweeException as exc:
            log.debug("closing a broken connection: %s", exc)

    # -- one batch ---------------------------------------------------------------------------

    def _apply(self, rows: R.Rows) -> None:
        bulk = self._bulk
        bulk.insert(CotLog, rows.cot)
        bulk.insert(Point, rows.points)
        bulk.insert(Eud, list(rows.euds.values()), upsert=EUD_UPSERT)
        for uids in chunked(sorted(rows.disconnected), MAX_PARAMETERS):
            Eud.update(last_status="Disconnected").where(Eud.uid.in_(uids)).execute()
        for uids in chunked(sorted(rows.deleted), MAX_PARAMETERS):
            for model in (Marker, RangeBearingLine):
                model.delete().where(model.uid.in_(uids)).execute()
        map_items: tuple[tuple[type[BaseModel], dict[str, R.Row]], ...] = (
            (Marker, rows.markers), (RangeBearingLine, rows.rb_lines),
            (Casevac, rows.casevacs), (VideoStream, rows.videos),
        )
        for upserted, items in map_items:
            bulk.insert(upserted, list(items.values()), upsert=NEWEST)
        # Rooms before their members and messages (foreign keys).
        bulk.insert(ChatRoom, list(rows.rooms.values()), ignore=True)
        members = [{"room": room, "uid": uid} for room, uid in sorted(rows.members)]
        bulk.insert(ChatRoomMember, members, ignore=True)
        bulk.insert(GeoChat, rows.chats, ignore=True)
        for record in rows.alerts:
            _alert(record)


def _alert(record: Record) -> None:
    """Open an alert unless one is open for the uid; or cancel the open one."""
    if R.is_cancel(record):
        Alert.update(cancel_time=record.time).where(
            (Alert.uid == record.uid) & Alert.cancel_time.is_null()
            & (Alert.start_time <= record.time)
        ).execute()
        return
    # ATAK repeats an active emergency every few seconds: one row per emergency, not per repeat.
    if Alert.select().where((Alert.uid == record.uid) & Alert.cancel_time.is_null()).exists():
        return
    positioned = R.has_position(record)
    Alert.create(
        uid=record.uid, sender_uid=R.sender_of(record), callsign=record.callsign,
        alert_type=R.alert_type(record), start_time=record.time,
        lat=record.lat if positioned else None, lon=record.lon if positioned else None,
        groups=encode_groups(record.groups),
    )
