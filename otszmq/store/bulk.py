"""Multi-row INSERT and upsert statements for the writer, their SQL text built once per shape.

PERF: peewee builds SQL in Python at about 20 us per bound value; profiled on a 500-record SA
batch into SQLite that was 90% of the writer's time against 5% in SQLite itself (~2,000
records/s). These statements have one shape per table and chunk size, so their text is made
once and cached, and a batch only flattens its values (the rate went up about tenfold).

The SQL is the common subset of SQLite (>= 3.24) and PostgreSQL (>= 9.5): double-quoted
identifiers, ``ON CONFLICT ... DO NOTHING`` and ``ON CONFLICT (key) DO UPDATE ... WHERE``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from peewee import Database

from otszmq.pacing import never_pause
from otszmq.store.models import BaseModel, UtcDateTimeField

Row = dict[str, Any]

# Bound values per statement: under SQLite's limit (32766 since 3.32, 999 before) and small
# enough that one statement stays a modest packet for PostgreSQL.
MAX_PARAMETERS: Final = 900
# Converted datetimes kept for reuse (see BulkWriter._convert); cleared when full.
CONVERTED_LIMIT: Final = 8192


@dataclass(frozen=True)
class Upsert:
    """Replace the row with the same ``key``, unless the stored row is newer by ``newer``."""

    key: str = "uid"
    newer: str = "time"
    keep: tuple[str, ...] = ()  # keep the stored value where the new one is NULL


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class _Shape:
    sql: str
    values: Callable[[Row], tuple[Any, ...]]  # a row's values in column order
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, db_value)


class BulkWriter:
    """Runs cached multi-row statements on one database (used by one thread)."""

    def __init__(self, database: Database, pace: Callable[[], None] = never_pause) -> None:
        self.database = database
        self._pace = pace  # called before each statement (otszmq.pacing)
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        # PERF: an SA's time, start and point time are one instant, and a batch holds many
        # reports per second: each distinct datetime is turned into text once (measured: the
        # conversions were 14% of the store's time, five per SA record).
        self._converted: dict[Any, Any] = {}

    def insert(
        self,
        model: type[BaseModel],
        rows: Sequence[Row],
        *,
        ignore: bool = False,
        upsert: Upsert | None = None,
    ) -> None:
        """Insert ``rows`` (all with the same keys, which are field names) in chunks."""
        if not rows:
            return
        names = tuple(rows[0])
        per_statement = max(1, MAX_PARAMETERS // len(names))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            shape = self._shape(model, names, len(chunk), ignore, upsert)
            values = shape.values
            params: list[Any] = []
            if shape.converters:
                converted = self._converted
                if len(converted) > CONVERTED_LIMIT:
                    converted.clear()
                for row in chunk:
                    flat = list(values(row))
                    for position, convert in shape.converters:
                        value = flat[position]
                        text = converted.get(value)
                        if text is None:
                            text = converted[value] = convert(value)
                        flat[position] = text
                    params += flat
            else:
                for row in chunk:
                    params += values(row)
            self._pace()
            # NOTE: peewee's stubs leave execute_sql untyped.
            self.database.execute_sql(shape.sql, params)  # type: ignore[no-untyped-call]

    def _shape(
        self, model: type[BaseModel], names: tuple[str, ...], count: int, ignore: bool,
        upsert: Upsert | None,
    ) -> _Shape:
        key = (model, names, count, ignore, upsert)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._build(model, names, count, ignore, upsert)
        return shape

    def _build(
        self, model: type[BaseModel], names: tuple[str, ...], count: int, ignore: bool,
        upsert: Upsert | None,
    ) -> _Shape:
        fields = model._meta.fields
        table = quote(model._meta.table_name)
        columns = {name: quote(fields[name].column_name) for name in names}
        placeholders = "(" + ", ".join([self.database.param] * len(names)) + ")"
        # NOTE: only identifiers from our own models are formatted in; every value is bound.
        sql = (
            f"INSERT INTO {table} ({', '.join(columns.values())}) VALUES "  # noqa: S608
            + ", ".join([placeholders] * count)
        )
        if ignore:
            sql += " ON CONFLICT DO NOTHING"
        elif upsert is not None:
            sets = []
            for name, column in columns.items():
                if name == upsert.key:
                    continue
                new = f"EXCLUDED.{column}"
                sets.append(f"{column} = " + (
                    f"COALESCE({new}, {table}.{column})" if name in upsert.keep else new
                ))
            newer = columns[upsert.newer]
            sql += (
                f" ON CONFLICT ({columns[upsert.key]}) DO UPDATE SET {', '.join(sets)}"
                f" WHERE {table}.{newer} IS NULL OR EXCLUDED.{newer} >= {table}.{newer}"
            )
        # Only our own datetime field needs converting; every other value is a plain
        # str/int/float/bool/None that both drivers bind as is.
        converters = tuple(
            (position, fields[name].db_value) for position, name in enumerate(names)
            if isinstance(fields[name], UtcDateTimeField)
        )
        getter = operator.itemgetter(*names)
        # itemgetter of one name returns the bare value, not a 1-tuple.
        values = getter if len(names) > 1 else (lambda row: (getter(row),))
        return _Shape(sql, values, converters)
