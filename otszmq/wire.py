"""Every message that crosses a ZeroMQ hop between stages, in one place.

A pipeline message is a short msgpack *header* frame plus the event's original
bytes, untouched. Headers are msgpack arrays with fixed positions (not maps):
they are packed and unpacked once per event per hop, and arrays are both smaller
and faster than maps. The first element of every header is the format version.

Hops and their frames::

    ingest ROUTER -> worker DEALER   [counts, SourceHeader, event, ..., SourceHeader, event, ...]
                                     (ROUTER adds the worker id; counts: events per source)
    worker DEALER -> ingest ROUTER   [HELLO, worker name]               (every HEARTBEAT_INTERVAL)
    worker PUB    -> fanout XSUB     [TOPIC_EVENT, RoutedHeader, event, RoutedHeader, event, ...]
    worker PUB    -> fanout XSUB     [TOPIC_RECORD, record, record, ...] (see below)
    any   PUB     -> fanout XSUB     [TOPIC_STATS, msgpack map]         (see otszmq.metrics)
    fanout XPUB   -> ingest/store/stats SUB: the same frames, filtered by topic
    api/bridge PUSH -> ingest 0 PULL   [INJECT_EVENTS, InjectHeader, event, ...]
    api/bridge PUSH -> ingest 0 PULL   [INJECT_REGROUP, Regroup]

PERF: both event hops carry *batches*: the events every source assigned to one worker
completed in one event-loop turn of ingest (``counts`` says how many follow each
source header), and the events a worker routed in one drain round. A ZeroMQ message costs a pipe
wake-up (a syscall and often a context switch) when its peer is idle; batching
"whatever is ready now" pays that once per batch instead of once per event, and
adds no latency because nothing waits for a batch to fill. A batch's events are
separate frames, so no event is copied into a container.

NOTE: ingest -> workers is ROUTER/DEALER rather than PUSH/PULL. PUSH round-robins
every message, so it cannot keep all events of one source on one worker, which
per-source FIFO needs. A ROUTER addresses each event to the worker that owns its
source; data still flows one way, like PUSH, and the DEALER side only sends
heartbeats.

INJECT: server-made events (API markers, events the bridge brings in from RabbitMQ) enter the
pipeline through the first ingest process, which treats each injecting source as one more
connection: sticky to a worker (its order kept), parsed, routed and stored like a client's.
``origin`` names the server an event came from ("" for this one) and travels to the routed
header, so the bridge never sends a federated event back out (no loops). The same socket carries
``Regroup``: a user's active channels changed (the API's ``PUT /Marti/api/groups/active``).

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

WIRE_VERSION = 2

TOPIC_EVENT = b"E"
TOPIC_STATS = b"S"
TOPIC_RECORD = b"R"  # STORE: records for the store stage (see otszmq.store.records)

INJECT_EVENTS = b"I"
INJECT_REGROUP = b"G"

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
    origin: str = ""  # the server the events came from; "" for this one (see INJECT above)


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
    origin: str  # SourceHeader.origin: "" if made on this node
    sender_uid: str  # SourceHeader.sender_uid: the uid the source speaks as, "" if unknown


class InjectHeader(NamedTuple):
    """Who injects a batch of server-made events, and as whom they are routed."""

    source: str  # the injecting component ("api", "bridge", ...), for logs
    origin: str  # "" for this node, else the server the events came from
    sender_uid: str  # the uid the events are sent on behalf of, "" if none
    groups_in: tuple[str, ...]  # the channels the events are written to


class Regroup(NamedTuple):
    """A user's active channels changed: regroup that user's live connections."""

    user: str
    groups_in: tuple[str, ...]
    groups_out: tuple[str, ...]


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
            tuple(str(g) for g in items[6]), str(items[7]),
        )
    except (TypeError, ValueError) as exc:
        raise WireError(f"source header: bad field: {exc}") from exc
    return header


def pack_counts(counts: list[int]) -> bytes:
    return msgpack.packb(counts)


def unpack_counts(data: bytes, frames_after: int) -> list[int]:
    """The events-per-source frame of an ingest -> worker message, checked against the number
    of frames that follow it (one header per source plus its events)."""
    try:
        counts = msgpack.unpackb(data)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"batch counts: not msgpack: {exc}") from exc
    if not isinstance(counts, list) or not all(
        isinstance(n, int) and n >= 0 for n in counts
    ):
        raise WireError("batch counts: expected a list of non-negative ints")
    if len(counts) + sum(counts) != frames_after:
        raise WireError(f"batch counts: {counts} do not match {frames_after} frames")
    return counts


def pack_routed(header: RoutedHeader) -> bytes:
    return msgpack.packb((WIRE_VERSION, *header))


def unpack_routed(data: bytes) -> RoutedHeader:
    items = _unpack(data, "routed header", len(RoutedHeader._fields))
    # PERF: no per-field conversion here: this runs once per event in every ingest,
    # and the only producer is our own worker. Shape errors surface as WireError above;
    # lists are turned into tuples lazily by whoever needs hashing.
    return RoutedHeader._make(items[1:])


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WireError(f"{what}: expected a list of strings")
    return tuple(value)


def pack_inject(header: InjectHeader) -> bytes:
    return msgpack.packb((WIRE_VERSION, *header))


def unpack_inject(data: bytes) -> InjectHeader:
    """Checked field by field: injectors are other programs, not our own worker."""
    items = _unpack(data, "inject header", len(InjectHeader._fields))
    if not all(isinstance(v, str) for v in items[1:4]):
        raise WireError("inject header: source, origin and sender_uid must be strings")
    return InjectHeader(items[1], items[2], items[3], _strings(items[4], "inject header groups"))


def pack_regroup(regroup: Regroup) -> bytes:
    return msgpack.packb((WIRE_VERSION, *regroup))


def unpack_regroup(data: bytes) -> Regroup:
    items = _unpack(data, "regroup", len(Regroup._fields))
    if not isinstance(items[1], str) or not items[1]:
        raise WireError("regroup: user must be a non-empty string")
    return Regroup(items[1], _strings(items[2], "regroup groups_in"),
                   _strings(items[3], "regroup groups_out"))


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
