"""Routing decisions: who may receive a parsed event (DESIGN §3).

The worker decides *how* an event travels (broadcast to groups, direct to
uids/callsigns, to a mission, or nowhere) and flags what receivers need to know
(replayable map state, a position report, an identity announcement, a delete);
each ingest then resolves the decision against its own connections.

Per-kind behaviour lives in a table of ``(name, kinds, handler)`` rows rather
than an if/elif chain, so adding a kind is adding a row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from otszmq.wire import RouteFlag, RouteMode, SourceHeader
from otszmq.workers.cot import CotEvent
from otszmq.workers.kinds import REPLAYABLE_KINDS, EventKind, classify


@dataclass(slots=True)
class Decision:
    mode: int  # a RouteMode code
    flags: int  # RouteFlag bits
    dest_uids: tuple[str, ...] = ()
    dest_callsigns: tuple[str, ...] = ()
    missions: tuple[str, ...] = ()
    evict_uid: str = ""
    drop_reason: str = ""  # non-empty: route to nobody, count under this reason


Handler = Callable[[CotEvent, SourceHeader, Decision], None]


def _drop_ping(event: CotEvent, source: SourceHeader, decision: Decision) -> None:
    # Ingest answers pings itself; one that reaches a worker has nowhere to go.
    decision.drop_reason = "ping"


def _drop_protocol(event: CotEvent, source: SourceHeader, decision: Decision) -> None:
    # t-x-takp-* negotiates a connection's encoding with the server; never routed.
    decision.drop_reason = "protocol_negotiation"


def _position(event: CotEvent, source: SourceHeader, decision: Decision) -> None:
    decision.flags |= RouteFlag.POSITION
    if event.callsign:
        decision.flags |= RouteFlag.ANNOUNCE


def _delete(event: CotEvent, source: SourceHeader, decision: Decision) -> None:
    target = next((link.uid for link in event.links if link.uid), None)
    decision.evict_uid = target or event.uid


RULES: tuple[tuple[str, frozenset[EventKind], Handler], ...] = (
    ("ping", frozenset({EventKind.PING}), _drop_ping),
    ("protocol", frozenset({EventKind.PROTOCOL}), _drop_protocol),
    ("position", frozenset({EventKind.SA}), _position),
    ("delete", frozenset({EventKind.DELETE}), _delete),
)

_HANDLERS: dict[EventKind, tuple[Handler, ...]] = {
    kind: tuple(handler for _, kinds, handler in RULES if kind in kinds) for kind in EventKind
}


@functools.lru_cache(maxsize=1024)
def _type_rules(cot_type: str) -> tuple[int, tuple[Handler, ...]]:
    """The REPLAY flag a broadcast of this CoT type carries, and its kind's handlers.

    PERF: one cached lookup per event instead of classify() then two lookups keyed by the
    EventKind (an Enum member hashes in Python: ~0.1 us each). Bounded like classify's cache.
    """
    kind = classify(cot_type)
    return (RouteFlag.REPLAY if kind in REPLAYABLE_KINDS else RouteFlag.NONE), _HANDLERS[kind]


def route(event: CotEvent, source: SourceHeader) -> Decision:
    """Decide where ``event`` from ``source`` goes."""
    replay_flag, handlers = _type_rules(event.type)
    if not event.dests:
        # PERF: the common case (an SA, a marker): no <marti> destinations, a broadcast.
        decision = Decision(RouteMode.BROADCAST, replay_flag)
    else:
        decision = _addressed(event, source, replay_flag)
    for handler in handlers:
        handler(event, source, decision)
    return decision


def _addressed(event: CotEvent, source: SourceHeader, replay_flag: int) -> Decision:
    """The decision for an event with <marti> destinations (before its kind's handlers)."""
    uids: list[str] = []
    callsigns: list[str] = []
    missions: list[str] = []
    for dest in event.dests:
        # iTAK names its own uid as a destination on mission events: not a recipient.
        if dest.uid and dest.uid != source.sender_uid:
            uids.append(dest.uid)
        if dest.callsign:
            callsigns.append(dest.callsign)
        if dest.mission:
            missions.append(dest.mission)
    if uids or callsigns:
        mode = RouteMode.DIRECT
    elif missions:
        mode = RouteMode.MISSION
    else:
        # An empty <marti/>, or one naming only the sender: a broadcast.
        return Decision(RouteMode.BROADCAST, replay_flag)
    # Only a broadcast is current map state for newly connected clients.
    return Decision(mode, RouteFlag.NONE, tuple(uids), tuple(callsigns), tuple(missions))
