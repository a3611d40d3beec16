"""The channels a stored item was written to, as one text column, and the SQL that filters by them.

Every item the store keeps (EUDs, the CoT log, points, chat, alerts, CASEVAC, markers, lines,
video) carries the IN groups of the connection that sent it, so that a listing shows a caller
only what its OUT groups read (TAK's rule, :meth:`otszmq.api.caller.Caller.may_read`).

Form: the names, sorted, each enclosed in commas: ``",A,B,"`` (``None`` for no groups: rows
written before schema version 3, which only admins see). "Meets any of these groups" is then a
substring test per name, the same on SQLite and PostgreSQL and needing no join table on the
store's hot path. A ``,`` or ``%`` inside a name is percent-encoded so that a name can never
match across a separator.

NOTE: substring tests use ``instr`` (SQLite) / ``strpos`` (PostgreSQL), not ``LIKE``: LIKE is
case-insensitive on SQLite and treats ``_`` and ``%`` as wildcards, and group names are exact.
PERF: no index serves the test; a listing scans the rows its other filters leave. Fine for an
admin API; a join table would pay off only with many groups and very large tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce
from typing import Any

from peewee import Expression, Field, PostgresqlDatabase, fn


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace(",", "%2C")


def _unescape(name: str) -> str:
    return name.replace("%2C", ",").replace("%25", "%")


def encode_groups(names: Iterable[str]) -> str | None:
    """The column value of ``names``; None when there are none."""
    unique = sorted({_escape(name) for name in names})
    return "," + ",".join(unique) + "," if unique else None


def decode_groups(value: str | None) -> list[str]:
    """The names of a column value, sorted (the inverse of :func:`encode_groups`)."""
    if not value:
        return []
    return sorted(_unescape(name) for name in value.strip(",").split(",") if name)


def meets_any(column: Field, names: Iterable[str]) -> Any:
    """A peewee expression: the row's groups meet at least one of ``names``.

    ``False`` as SQL (matches nothing) when ``names`` is empty. The column's model must be bound
    to its database, which picks the substring function.
    """
    database = column.model._meta.database
    find = fn.STRPOS if isinstance(database, PostgresqlDatabase) else fn.INSTR
    tests: list[Expression] = [
        find(column, "," + _escape(name) + ",") > 0 for name in sorted(set(names))
    ]
    if not tests:
        # A comparison that is false for every row, NULL included (no literal FALSE on SQLite).
        return column.is_null() & column.is_null(False)
    return reduce(lambda left, right: left | right, tests)
