"""What kind of message a CoT type is: the dispatch table the worker routes and stores by.

CoT types are hyphen-separated atoms (``a-f-G-U-C``, ``b-t-f-d``). :func:`classify` maps a type to
an :class:`EventKind` through one table of ``(kind, prefixes, exact types)`` rows instead of an
if/elif chain, so a new kind is one row. A prefix matches whole atoms: ``b-m-p`` covers ``b-m-p``
and ``b-m-p-s-m`` but not ``b-m-pq``; the longest matching prefix wins, and an exact type beats
every prefix.
"""

from __future__ import annotations

import enum
import functools
from typing import Final, NamedTuple

__all__ = ["REPLAYABLE_KINDS", "EventKind", "classify"]


class EventKind(enum.Enum):
    """What a CoT event is, as far as routing, storage and replay care."""

    SA = "sa"  # position reports; NOTE: any a-... type, so 2525 markers (a-u-G) land here too
    PING = "ping"  # t-x-c-t, answered by ingest and never routed
    PONG = "pong"  # t-x-c-t-r
    DELETE = "delete"  # t-x-d-d
    CHAT = "chat"  # b-t-f and its receipts (b-t-f-d delivered, b-t-f-r read ...)
    FILE_TRANSFER = "file_transfer"  # b-f-t-r request, b-f-t-a ack
    ALERT = "alert"  # b-a-o-tbl 911, b-a-o-can cancel, b-a-g geofence breach ...
    CASEVAC = "casevac"  # b-r-f-h-c 9-line
    MARKER = "marker"  # b-m-p-... spot, waypoint, SPI, sensor
    ROUTE = "route"  # b-m-r
    DRAWING = "drawing"  # u-d-... shapes, freehand, geofence
    RANGE_BEARING = "range_bearing"  # u-rb-...
    VIDEO = "video"  # b-i-v
    MISSION = "mission"  # t-x-m-... data sync notifications
    PROTOCOL = "protocol"  # t-x-takp-... TAK protocol negotiation
    OTHER = "other"


class _Row(NamedTuple):
    kind: EventKind
    prefixes: tuple[str, ...] = ()  # matched on whole atoms, without a trailing "-"
    exact: tuple[str, ...] = ()  # matched only as the whole type


_TABLE: Final[tuple[_Row, ...]] = (
    _Row(EventKind.SA, prefixes=("a",)),
    # NOTE: exact, so that a hypothetical t-x-c-t-x is not taken for a ping (which ingest answers
    # and drops) and the pong t-x-c-t-r keeps its own kind.
    _Row(EventKind.PING, exact=("t-x-c-t",)),
    _Row(EventKind.PONG, exact=("t-x-c-t-r",)),
    _Row(EventKind.DELETE, exact=("t-x-d-d",)),
    _Row(EventKind.CHAT, prefixes=("b-t-f",)),
    _Row(EventKind.FILE_TRANSFER, prefixes=("b-f-t",)),
    _Row(EventKind.ALERT, prefixes=("b-a",)),
    _Row(EventKind.CASEVAC, prefixes=("b-r-f-h-c",)),
    _Row(EventKind.MARKER, prefixes=("b-m-p",)),
    _Row(EventKind.ROUTE, prefixes=("b-m-r",)),
    _Row(EventKind.DRAWING, prefixes=("u-d",)),
    _Row(EventKind.RANGE_BEARING, prefixes=("u-rb",)),
    _Row(EventKind.VIDEO, prefixes=("b-i-v",)),
    _Row(EventKind.MISSION, prefixes=("t-x-m",)),
    _Row(EventKind.PROTOCOL, prefixes=("t-x-takp",)),
)


def _index(table: tuple[_Row, ...]) -> tuple[dict[str, EventKind], dict[str, EventKind]]:
    """The table as two lookups (exact types, prefixes); a string listed twice is a bug."""
    exact: dict[str, EventKind] = {}
    prefixes: dict[str, EventKind] = {}
    for row in table:
        for cot_type in row.exact:
            if cot_type in exact:
                raise ValueError(f"CoT type {cot_type!r} is listed twice")
            exact[cot_type] = row.kind
        for prefix in row.prefixes:
            if prefix in prefixes or prefix.endswith("-"):
                raise ValueError(f"CoT type prefix {prefix!r} is listed twice or ends in '-'")
            prefixes[prefix] = row.kind
    return exact, prefixes


# NOTE: built once from the constant table and never changed afterwards (read-only lookups).
_EXACT, _PREFIXES = _index(_TABLE)

# Kinds a newly connected EUD receives as current map state (their latest non-stale events).
REPLAYABLE_KINDS: Final[frozenset[EventKind]] = frozenset(
    {
        EventKind.SA,
        EventKind.MARKER,
        EventKind.ROUTE,
        EventKind.DRAWING,
        EventKind.RANGE_BEARING,
        EventKind.CASEVAC,
        EventKind.ALERT,
        EventKind.VIDEO,
    }
)


def _lookup(
    cot_type: str, exact: dict[str, EventKind], prefixes: dict[str, EventKind]
) -> EventKind:
    """Exact match first, then the longest prefix made of whole atoms, else OTHER."""
    kind = exact.get(cot_type)
    if kind is not None:
        return kind
    candidate = cot_type
    while True:
        kind = prefixes.get(candidate)
        if kind is not None:
            return kind
        cut = candidate.rfind("-")
        if cut < 0:
            return EventKind.OTHER
        candidate = candidate[:cut]  # drop the last atom: the next longest prefix


# PERF: a live network uses a few dozen distinct types, so nearly every call is a cache hit.
# The bound keeps a sender of random types from growing the cache; a miss costs one dict
# lookup per atom.
@functools.lru_cache(maxsize=1024)
def classify(cot_type: str) -> EventKind:
    """The :class:`EventKind` of a CoT type: exact match first, then the longest atom prefix."""
    return _lookup(cot_type, _EXACT, _PREFIXES)
