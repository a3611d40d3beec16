"""Every message that crosses a ZeroMQ hop between stages, in one place.

A pipeline message carries a whole *batch* of events in one msgpack frame: per-event headers
with fixed positions (arrays, not maps: smaller and faster) and each event's original bytes,
untouched. The first element of every array that crosses a hop is the format version.

Hops and their frames::

    ingest ROUTER -> worker DEALER   [work]                      (ROUTER adds the worker id)
        work   = [WIRE_VERSION, sent, [[source, [event, event, ...]], ...]]
        sent   = events this ingest has sent this worker so far, this message's included
        source = SourceHeader's fields, in order
    worker DEALER -> ingest ROUTER   [HELLO, worker name]        (every HEARTBEAT_INTERVAL)
    worker DEALER -> ingest ROUTER   [DONE, done]                (after each drain round)
        done   = [WIRE_VERSION, sent of the last work message the worker has handled]
    worker PUB    -> fanout XSUB     [TOPIC_EVENT, routed]
        routed = [WIRE_VERSION, worker, first_seq, [[*RoutedHeader fields, event], ...]]
    worker PUB    -> fanout XSUB     [TOPIC_RECORD, records]     (otszmq.store.records)
    worker PUB    -> fanout XSUB     [TOPIC_RECORD_KEPT, records]   (SHED below)
    store  PUB    -> fanout XSUB     [TOPIC_SHED, shed]          (SHED below; workers read it)
        shed   = [WIRE_VERSION, keep]   (a float in [0, 1])
    any   PUB     -> fanout XSUB     [TOPIC_STATS, msgpack map]  (see otszmq.metrics)
    fanout XPUB   -> ingest/store/bridge/stats/worker SUB: the same frames, filtered by topic
    api/bridge PUSH -> ingest 0 PULL   [INJECT_EVENTS, InjectHeader, event, ...]
    api/bridge PUSH -> ingest 0 PULL   [INJECT_REGROUP, Regroup]
    api        PUSH -> ingest 0 PULL   [INJECT_DISCONNECT, Disconnect]

PERF: a batch is what is ready now, never waited for: the events every source assigned to one
worker completed in one event-loop turn of ingest, and the events a worker routed in one drain
round. A ZeroMQ message costs a pipe wake-up (a syscall and often a context switch) when its peer
is idle, so batching pays that once per batch instead of once per event. And the batch is *one*
frame: pyzmq spends 1.5-3 us of Python per frame on each side (measured here: two frames per
event cost 5.8 us a routed event in send + receive, one msgpack frame 2.5 us with packing and
unpacking), against ~0.1 us for msgpack to pack or unpack an event in C. The event bytes are
copied into the frame; at ~600 bytes a copy costs less than one frame's bookkeeping.

CREDIT: ingest lets only so many events be in flight to one worker (sent, not yet DONE:
``worker_inflight_limit``) and stops reading the sockets of that worker's clients while it is over
(otszmq.ingest.workerpool). Without it, under sustained overload the only bound was the ROUTER's
high-water mark in messages, each a loop turn's batch: a worker's queue grew by ~1 MB/s for
minutes, and every event waited behind it, before anything was dropped. DONE echoes a running
total, not a count of its own, so a lost or late DONE is made good by the next one.

Sequence numbers: each worker numbers the events it routes, contiguously; a routed batch says
the number of its first event. A subscriber that sees a gap (the fan-out dropped a message at
its high-water mark) counts the missing events (:class:`SequenceGaps`).

NOTE: ingest -> workers is ROUTER/DEALER rather than PUSH/PULL. PUSH round-robins
every message, so it cannot keep all events of one source on one worker, which
per-source FIFO needs. A ROUTER addresses each batch to the worker that owns its
source; data still flows one way, like PUSH, and the DEALER side only sends
heartbeats and DONEs (CREDIT below).

INJECT: server-made events (API markers, events the bridge brings in from RabbitMQ) enter the
pipeline through the first ingest process, which treats each injecting source as one more
connection: sticky to a worker (its order kept), parsed, routed and stored like a client's.
``origin`` names the server an event came from ("" for this one) and travels to the routed
header, so the bridge never sends a federated event back out (no loops). The same socket carries
``Regroup``: a user's active channels changed (the API's ``PUT /Marti/api/groups/active``);
and ``Disconnect``: a user was deactivated or deleted, so its live streams are closed (its next
handshake or stream login is refused by the user database anyway).
Injected messages come from other programs, so they are checked field by field; work and routed
batches come only from our own stages and are checked for shape, not field by field.

STORE: ``[TOPIC_RECORD, records]`` carries what the store stage writes, one record per stored
event, in the order the worker routed them; ``otszmq.store.records`` documents the layout. A
worker sends the records it built over up to ``record_linger`` seconds (otszmq.workers.service)
as one batch, *after* the routed batches of the events they came from, so routing never waits
on it; with no store subscribed, the PUB drops it unsent (ZeroMQ filters by topic on the
publisher side).

SHED: the store's writer gets only the CPU routing leaves, so under a flood it writes a small
share of the records the workers could build, and building, packing and forwarding the rest
(~10 % of a worker's CPU per event, and the fan-out's and the store's share) is spent for
nothing at the moment routing needs the CPU most. So the store says how many it wants: ``keep``,
the fraction of *sheddable* records (position reports, feeds' tracks, other events) a worker
should build, from 1 (all: not shedding) to 0 (none), worked out from what it writes, what
its queue holds and what the workers say they skipped (otszmq.store.shedding; each record frame
carries its worker's count of skipped records, otszmq.store.records). It says ``[TOPIC_SHED,
keep]`` when keep changes enough, again every SHED_REPEAT seconds while it is below 1, and once
more when it is back at 1. A worker applies the last keep it heard, if younger than SHED_EXPIRY
(a store that died shedding, or a lost word, cannot thin the records for longer), to each
sheddable record at random, so every source's records are thinned alike, and counts the events
it did not record. What people write by hand is rare and not made up for by the next report (a
chat message, an alert, a 9-line, a marker a person placed:
``otszmq.store.records.KEPT_WHILE_SHEDDING``), so a worker always records those; a frame of
records all built while keep was 0 goes as ``[TOPIC_RECORD_KEPT, records]``, which the store
takes past its limit (up to otszmq.store.buffer.KEPT_ROOM times it).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgpack

from otszmq.errors import WireError

WIRE_VERSION = 5

TOPIC_EVENT = b"E"
TOPIC_STATS = b"S"
TOPIC_RECORD = b"R"  # STORE: records for the store stage (see otszmq.store.records)
# SHED: records built while the store asked for no sheddable ones (only kept kinds). Starts
# with TOPIC_RECORD, so the store's one subscription receives both.
TOPIC_RECORD_KEPT = b"RK"
TOPIC_SHED = b"Q"  # SHED: the share of sheddable records the store asks the workers for

SHED_REPEAT = 0.5
"""Seconds between two repeats of the store's ``[TOPIC_SHED, keep]`` while keep is below 1."""
SHED_EXPIRY = 4 * SHED_REPEAT
"""Seconds a worker applies a keep below 1 after it heard it (then it builds every record)."""

INJECT_EVENTS = b"I"
INJECT_REGROUP = b"G"
INJECT_DISCONNECT = b"D"

HELLO = b"HELLO"
DONE = b"DONE"
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
    """A worker's routing decision; everything a receiver needs without parsing XML.

    In a routed batch each event is one array of these fields followed by the event's bytes
    (:data:`RoutedEntry`); ingest unpacks the fields by position, slower consumers (the bridge)
    name them with :func:`routed_header`.
    """

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


ROUTED_FIELDS: Final = len(RoutedHeader._fields)
RoutedEntry = tuple[Any, ...]
"""One event of a routed batch: the RoutedHeader fields in order, then the event's bytes."""


class RoutedBatch(NamedTuple):
    worker: str  # the worker that routed these events
    first_seq: int  # that worker's number for the first of them (see SequenceGaps)
    events: tuple[RoutedEntry, ...]


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


class Disconnect(NamedTuple):
    """A user may no longer stream: close that user's live connections."""

    user: str
    reason: str  # for the logs: "deactivated", "deleted"


def _versioned(data: bytes, what: str, fields: int) -> tuple[Any, ...]:
    """The ``fields`` items after the version of a message; sequences come back as tuples."""
    try:
        items = msgpack.unpackb(data, use_list=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"{what}: not msgpack: {exc}") from exc
    if not isinstance(items, tuple) or len(items) != fields + 1:
        raise WireError(f"{what}: expected an array of {fields + 1} items")
    if items[0] != WIRE_VERSION:
        raise WireError(f"{what}: wire version {items[0]!r}, expected {WIRE_VERSION}")
    return items[1:]


# -- ingest -> worker ------------------------------------------------------------------------

WorkItem = tuple[SourceHeader, list[bytes]]
"""One source's events of a work message, in the order the source sent them."""


def pack_work(sent: int, items: list[WorkItem]) -> bytes:
    return msgpack.packb((WIRE_VERSION, sent, items))


def unpack_work(data: bytes) -> tuple[int, tuple[tuple[tuple[Any, ...], tuple[bytes, ...]], ...]]:
    """A work message's running total ``sent`` and its ``(source fields, events)`` pairs,
    shape-checked.

    The source fields are not converted here: a worker checks each distinct one once with
    :func:`source_header` and keeps the result (the same connection sends the same fields
    until its identity changes).
    """
    sent, items = _versioned(data, "work", 2)
    if not isinstance(sent, int) or isinstance(sent, bool) or sent < 0:
        raise WireError("work: sent must be an int >= 0")
    if not isinstance(items, tuple):
        raise WireError("work: expected an array of [source, events] pairs")
    for item in items:
        if (
            not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], tuple)
            or not isinstance(item[1], tuple)
            or not all(isinstance(event, bytes) for event in item[1])
        ):
            raise WireError("work: expected [source, events] pairs with events as bytes")
    return sent, items


def pack_done(sent: int) -> bytes:
    return msgpack.packb((WIRE_VERSION, sent))


def unpack_done(data: bytes) -> int:
    """The running total a worker's DONE echoes (see CREDIT above)."""
    (sent,) = _versioned(data, "done", 1)
    if not isinstance(sent, int) or isinstance(sent, bool) or sent < 0:
        raise WireError("done: expected an int >= 0")
    return sent


def pack_shed(keep: float) -> bytes:
    return msgpack.packb((WIRE_VERSION, float(keep)))


def unpack_shed(data: bytes) -> float:
    """The share of sheddable records the store asks the workers to build (see SHED above)."""
    (keep,) = _versioned(data, "shed", 1)
    # NOTE: a bool is an int to Python: refused, it is what wire version 4 said here.
    if isinstance(keep, bool) or not isinstance(keep, int | float) or not 0.0 <= keep <= 1.0:
        raise WireError(f"shed: expected a keep ratio in [0, 1], got {keep!r}")
    return float(keep)


def source_header(fields: tuple[Any, ...]) -> SourceHeader:
    """Check and convert the source fields of a work message."""
    if len(fields) != len(SourceHeader._fields):
        raise WireError(f"source header: expected {len(SourceHeader._fields)} fields")
    try:
        kind, ingest, conn, peer, sender_uid, groups_in, origin = fields
        if not isinstance(groups_in, tuple) or not all(isinstance(g, str) for g in groups_in):
            raise TypeError("groups_in must be a list of strings")
        return SourceHeader(
            int(kind), str(ingest), int(conn), str(peer), str(sender_uid), groups_in, str(origin)
        )
    except (TypeError, ValueError) as exc:
        raise WireError(f"source header: bad field: {exc}") from exc


# -- worker -> fan-out -> ingest, bridge -------------------------------------------------------


def pack_routed_batch(worker: str, first_seq: int, events: list[RoutedEntry]) -> bytes:
    return msgpack.packb((WIRE_VERSION, worker, first_seq, events))


def routed_batch(frames: list[bytes]) -> RoutedBatch:
    """The batch of a ``[TOPIC_EVENT, routed]`` message, as a subscriber receives it."""
    if len(frames) != 2:
        raise WireError(f"routed batch: expected [topic, batch], got {len(frames)} frames")
    return unpack_routed_batch(frames[1])


def unpack_routed_batch(data: bytes) -> RoutedBatch:
    """A routed batch, checked for shape: every event an array of ROUTED_FIELDS + 1 items.

    PERF: no per-field conversion: this runs in every ingest for every event, and the only
    producer is our own worker. Fields keep msgpack's types (sequences are tuples).
    """
    worker, first_seq, events = _versioned(data, "routed batch", 3)
    if not isinstance(worker, str) or not isinstance(first_seq, int):
        raise WireError("routed batch: worker must be a string and first_seq an int")
    if not isinstance(events, tuple) or not all(
        isinstance(event, tuple) and len(event) == ROUTED_FIELDS + 1 for event in events
    ):
        raise WireError(f"routed batch: every event must be an array of {ROUTED_FIELDS + 1}")
    return RoutedBatch(worker, first_seq, events)


def routed_header(entry: RoutedEntry) -> RoutedHeader:
    """The named header of one routed event (its bytes are ``entry[-1]``)."""
    return RoutedHeader._make(entry[:ROUTED_FIELDS])


class SequenceGaps:
    """Counts the events lost between the workers and one subscriber, by sequence gaps."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def check(self, worker: str, first_seq: int, count: int) -> int:
        """Record a batch; the number of events missing before it (0 if none).

        A batch numbered below what was expected (a restarted worker counts from 1 again)
        starts afresh rather than counting a negative gap.
        """
        expected = self._next.get(worker)
        self._next[worker] = first_seq + count
        if expected is None or first_seq <= expected:
            return 0
        return first_seq - expected


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise WireError(f"{what}: expected a list of strings")
    return value


def pack_inject(header: InjectHeader) -> bytes:
    return msgpack.packb((WIRE_VERSION, *header))


def unpack_inject(data: bytes) -> InjectHeader:
    """Checked field by field: injectors are other programs, not our own worker."""
    source, origin, sender_uid, groups = _versioned(
        data, "inject header", len(InjectHeader._fields)
    )
    if not all(isinstance(v, str) for v in (source, origin, sender_uid)):
        raise WireError("inject header: source, origin and sender_uid must be strings")
    return InjectHeader(source, origin, sender_uid, _strings(groups, "inject header groups"))


def pack_regroup(regroup: Regroup) -> bytes:
    return msgpack.packb((WIRE_VERSION, *regroup))


def unpack_regroup(data: bytes) -> Regroup:
    user, groups_in, groups_out = _versioned(data, "regroup", len(Regroup._fields))
    if not isinstance(user, str) or not user:
        raise WireError("regroup: user must be a non-empty string")
    return Regroup(user, _strings(groups_in, "regroup groups_in"),
                   _strings(groups_out, "regroup groups_out"))


def pack_disconnect(disconnect: Disconnect) -> bytes:
    return msgpack.packb((WIRE_VERSION, *disconnect))


def unpack_disconnect(data: bytes) -> Disconnect:
    user, reason = _versioned(data, "disconnect", len(Disconnect._fields))
    if not isinstance(user, str) or not user:
        raise WireError("disconnect: user must be a non-empty string")
    if not isinstance(reason, str):
        raise WireError("disconnect: reason must be a string")
    return Disconnect(user, reason)


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
