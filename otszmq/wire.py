"""Every message that crosses a ZeroMQ hop between stages, in one place.

A pipeline message is a short msgpack *header* frame plus the event's original
bytes, untouched. Headers are msgpack arrays with fixed positions (not maps):
they are packed and unpacked once per event per hop, and arrays are both smaller
and faster than maps. The first element of every header is the format version.

Hops and their frames::

    ingest ROUTER -> worker DEALER   [SourceHeader, event, event, ...]  (ROUTER adds the worker id)
    worker DEALER -> ingest ROUTER   [HELLO, worker name]               (every HEARTBEAT_INTERVAL)
    worker PUB    -> fanout XSUB     [TOPIC_EVENT, RoutedHeader, event, RoutedHeader, event, ...]
    worker PUB    -> fanout XSUB     [TOPIC_RECORD, record, record, ...] (see below)
    any   PUB     -> fanout XSUB     [TOPIC_STATS, msgpack map]         (see otszmq.metrics)
    fanout XPUB   -> ingest/store/stats SUB: the same frames, filtered by topic

PERF: both event hops carry *batches*: the events of one source read in one go,
and the events a worker routed in one drain round. A ZeroMQ message costs a pipe
wake-up (a syscall and often a context switch) when its peer is idle; batching
"whatever is ready now" pays that once per batch instead of once per event, and
adds no latency because nothing waits for a batch to fill. A batch's events are
separate frames, so no event is copied into a container.

NOTE: ingest -> workers is ROUTER/DEALER rather than PUSH/PULL. PUSH round-robins
every message, so it cannot keep all events of one source on one worker, which
per-source FIFO needs. A ROUTER addresses each event to the worker that owns its
source; data still flows one way, like PUSH, and the DEALER side only sends
heartbeats.

STORE: ``[TOPIC_RECORD, record, record, ...]`` carries what the store stage
writes, one frame per stored event, in the order the worker routed them. Each
record is a msgpack array built from the already parsed event (the store never
parses XML); ``otszmq.store.records`` documents its layout and version. A worker
sends one record batch per drain round, right *after* that round's routed batch,
so routing never waits on it; with no store subscribed, the PUB drops it
unsent (ZeroMQ filters by topic on the publisher side).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgpack

from otszmq.errors import WireError

WIRE_VERSION = 1

TOPIC_EVENT = b"E"
TOPIC_STATS = b"S"
TOPIC_RECORD = b"R"  # STORE: records for the store stage (see otszmq.store.records)

HELLO = b"HELLO"
HEARTBEAT_INTERVAL = 1.0
"""Seconds between worker heartbeats; ingest forgets a worker after 3 missed."""


# NOTE: the codes below are plain ints in namespaces, not enum.IntEnum/IntFlag: they are
# compared and combined once per event per hop, and every IntFlag operation runs Python
# code and builds a new member (it was ~8% of a worker's time).


class SourceKind:
    """``SourceHeader.kind``."""

    EVENT: Final = 0
    """A batch of CoT events from a client (or made by the server on a client's behalf)."""
    PROBE: Final = 1
    """No events: the worker echoes it as a routed PROBE so that ingest can prove the whole
    pipeline (ingest -> worker -> fanout -> ingest) works at start-up."""


class RouteMode:
    """``RoutedHeader.mode``."""

    BROADCAST: Final = 0
    """To every client whose OUT groups meet the sender's IN groups."""
    DIRECT: Final = 1
    """Only to the clients named by uid or callsign (still group-checked)."""
    MISSION: Final = 2
    """To a mission's subscribers; no streaming client receives it directly yet."""
    PROBE: Final = 3
    """Start-up handshake; delivered to nobody."""


class RouteFlag:
    """Bits of ``RoutedHeader.flags``."""

    NONE: Final = 0
    REPLAY: Final = 1
    """Current map state: newly connected clients receive the latest one per uid."""
    ANNOUNCE: Final = 2
    """Carries <contact callsign>: may identify the source connection (uid, callsign)."""
    POSITION: Final = 4
    """A position report (a-*): may be coalesced per uid for a slow client."""


class SourceHeader(NamedTuple):
    """What ingest knows about the source of an event, sent with it to a worker."""

    kind: int  # a SourceKind code
    ingest: str  # id of the ingest process that holds the connection
    conn: int  # connection number inside that ingest
    peer: str  # "ip:port", for logs
    sender_uid: str  # the connection's announced uid, "" until it announces
    groups_in: tuple[str, ...]  # the sender's (active) IN groups


class RoutedHeader(NamedTuple):
    """A worker's routing decision; everything a receiver needs without parsing XML."""

    worker: str  # id of the worker that routed it (with seq: loss detection)
    seq: int  # per-worker sequence number, contiguous for every subscriber
    ingest: str  # source ingest id
    conn: int  # source connection (never echoed to it)
    mode: int  # a RouteMode code
    flags: int  # RouteFlag bits
    groups_in: tuple[str, ...]  # sender's IN groups
    dest_uids: tuple[str, ...]
    dest_callsigns: tuple[str, ...]
    missions: tuple[str, ...]
    uid: str  # the event's uid
    type: str  # the event's CoT type
    callsign: str  # <contact callsign>, "" if absent
    stale: float  # the event's stale time, seconds since the epoch
    evict_uid: str  # t-x-d-d: the uid whose map state must be forgotten, "" if none


def _unpack(data: bytes, what: str, fields: int) -> list[Any]:
    try:
        items = msgpack.unpackb(data, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"{what}: not a msgpack array: {exc}") from exc
    if not isinstance(items, list) or len(items) != fields + 1:
        raise WireError(f"{what}: expected an array of {fields + 1} items")
    if items[0] != WIRE_VERSION:
        raise WireError(f"{what}: wire version {items[0]!r}, expected {WIRE_VERSION}")
    return items


def pack_source(header: SourceHeader) -> bytes:
    return msgpack.packb((WIRE_VERSION, *header))


def unpack_source(data: bytes) -> SourceHeader:
    items = _unpack(data, "source header", len(SourceHeader._fields))
    try:
        header = SourceHeader(
            int(items[1]), str(items[2]), int(items[3]), str(items[4]), str(items[5]),
            tuple(str(g) for g in items[6]),
        )
    except (TypeError, ValueError) as exc:
        raise WireError(f"source header: bad field: {exc}") from exc
    return header


def pack_routed(header: RoutedHeader) -> bytes:
    return msgpack.packb((WIRE_VERSION, *header))


def unpack_routed(data: bytes) -> RoutedHeader:
    items = _unpack(data, "routed header", len(RoutedHeader._fields))
    # PERF: no per-field conversion here: this runs once per event in every ingest,
    # and the only producer is our own worker. Shape errors surface as WireError above;
    # lists are turned into tuples lazily by whoever needs hashing.
    return RoutedHeader._make(items[1:])


def pack_stats(snapshot: dict[str, Any]) -> bytes:
    return msgpack.packb(snapshot)


def unpack_stats(data: bytes) -> dict[str, Any]:
    try:
        snapshot = msgpack.unpackb(data)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"stats: not msgpack: {exc}") from exc
    if not isinstance(snapshot, dict):
        raise WireError("stats: expected a map")
    return snapshot
