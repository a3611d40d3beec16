"""What the bridge publishes for one routed event: OTS's mirror layout and federation.

Sans-IO: a routed header plus the event's bytes in, a list of :class:`Publication` out. The
AMQP side (``otszmq.bridge.amqp``) only sends them.

Mirror (OTS's layout, ``reference/ots.md`` §1.2), so OTS plugins and AMQP consumers work
unchanged; the body is OTS's JSON ``{"uid": sender, "cot": xml}``:

- every event -> ``firehose`` (fanout);
- a broadcast -> ``groups`` (topic), routing key ``<group>.OUT`` per group it was written to;
- a direct message -> ``dms`` (direct), routing key each destination uid and callsign;
- a mission event -> ``missions`` (topic), routing key ``missions.<name>``.

Only events made on this server are mirrored by default (``origin == ""``): servers sharing a
broker each mirror their own, so a consumer sees each event once.

Federation: an event made here (``origin == ""``) written to a federated group goes once to the
federation exchange, routing key our server id, body the CoT XML with our ``_flow-tags_``
stamp, AMQP headers naming the origin, the federated groups and the sender.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from otszmq.bridge.flowtags import add_tag
from otszmq.wire import RoutedHeader, RouteMode

FIREHOSE = "firehose"
GROUPS = "groups"
DMS = "dms"
MISSIONS = "missions"
OTS_TTL_MS = 86_400_000
"""OTS puts this per-message expiration (one day) on everything it publishes."""

HEADER_ORIGIN = "x-otszmq-origin"
HEADER_GROUPS = "x-otszmq-groups"
HEADER_SENDER = "x-otszmq-sender"
ALL_GROUPS = "*"


class Publication(NamedTuple):
    exchange: str  # an exchange name (see otszmq.bridge.topology)
    routing_key: str
    body: bytes
    content_type: str
    headers: dict[str, Any] | None = None
    expiration_ms: int | None = None


@dataclass(frozen=True)
class MirrorPlan:
    """Which events leave the server, and where to."""

    server_id: str
    federation_exchange: str
    federated_groups: frozenset[str] = field(default_factory=frozenset)  # {"*"}: all
    mirror: bool = True
    mirror_federated: bool = False

    def federated(self, groups: Iterable[str]) -> tuple[str, ...]:
        """The subset of ``groups`` that federates."""
        if ALL_GROUPS in self.federated_groups:
            return tuple(groups)
        return tuple(g for g in groups if g in self.federated_groups)

    def wanted(self, header: RoutedHeader) -> bool:
        """Cheap pre-check on the pipeline's hot path: does anything go out for this event?"""
        if header.mode == RouteMode.PROBE:
            return False
        if header.origin:
            return self.mirror and self.mirror_federated
        return self.mirror or bool(self.federated_groups and self.federated(header.groups_in))

    def publications(self, header: RoutedHeader, event: bytes) -> list[Publication]:
        out: list[Publication] = []
        if header.mode == RouteMode.PROBE:
            return out
        if self.mirror and (not header.origin or self.mirror_federated):
            out += _mirror(header, event)
        if not header.origin and self.federated_groups:
            groups = self.federated(header.groups_in)
            if groups:
                out.append(Publication(
                    self.federation_exchange, self.server_id, add_tag(event, self.server_id),
                    "application/xml",
                    {HEADER_ORIGIN: self.server_id, HEADER_GROUPS: list(groups),
                     HEADER_SENDER: _sender(header)},
                ))
        return out


def ots_body(sender_uid: str, event: bytes) -> bytes:
    """OTS's message body: ``{"uid": <sender>, "cot": "<event ...>"}``."""
    return json.dumps(
        {"uid": sender_uid, "cot": event.decode("utf-8", errors="replace")},
        ensure_ascii=False,
    ).encode()


def _sender(header: RoutedHeader) -> str:
    """The uid of the EUD that sent the event (OTS's ``uid``); the event's own uid when the
    source never announced one (a client's first event, a server-made marker)."""
    return header.sender_uid or header.uid


def _mirror(header: RoutedHeader, event: bytes) -> list[Publication]:
    body = ots_body(_sender(header), event)

    def pub(exchange: str, key: str) -> Publication:
        return Publication(exchange, key, body, "application/json", None, OTS_TTL_MS)

    out = [pub(FIREHOSE, "")]
    mode = header.mode
    if mode == RouteMode.BROADCAST:
        out += (pub(GROUPS, f"{group}.OUT") for group in header.groups_in)
    elif mode == RouteMode.DIRECT:
        out += (pub(DMS, key) for key in (*header.dest_uids, *header.dest_callsigns))
    elif mode == RouteMode.MISSION:
        out += (pub(MISSIONS, f"missions.{name}") for name in header.missions)
    return out
