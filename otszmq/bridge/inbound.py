"""AMQP messages in: what others publish becomes events injected into the pipeline.

Sans-IO: a message body (and headers) in, an :class:`Injection` out, or
:class:`MalformedMessage` naming what is wrong. No XML is parsed here: the worker that the
injected event reaches parses it once, like a client's (and counts it if it is not CoT).

Inbound exchange (OTS's ``cot_parser`` shape, ``reference/ots.md`` §1.2): the body is OTS's
JSON ``{"uid": <sender>, "cot": "<event ...>"}`` (``user_id`` is ignored), or OTS's disconnect
notice ``{"uid": U, "cot": null, "disconnected": true}``, which becomes a ``t-x-d-d`` for U as
OTS's cot_parser makes it. Extension: ``"groups": [..]`` names the channels the event is
written to (default: the ``amqp_inbound_groups`` setting). A body that is bare CoT XML is
taken as one event from no particular sender.

Federation exchange: the body is the CoT XML; the headers name the origin server, the groups
it was written to there and its sender (``otszmq.bridge.mirror``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otszmq import servercot
from otszmq.bridge.flowtags import has_tag
from otszmq.bridge.mirror import HEADER_GROUPS, HEADER_ORIGIN, HEADER_SENDER, MirrorPlan
from otszmq.errors import BridgeError

DISCONNECTED_TYPE = "a-f-G-U-C"
"""The type OTS gives the link of the t-x-d-d it sends for a disconnected EUD."""


class MalformedMessage(BridgeError):
    """One AMQP message cannot be injected; it is dropped and counted."""


@dataclass(frozen=True, slots=True)
class Injection:
    events: tuple[bytes, ...]
    groups_in: tuple[str, ...]
    origin: str = ""
    sender_uid: str = ""


def _check_event(event: bytes, max_size: int, where: str) -> bytes:
    if len(event) > max_size:
        raise MalformedMessage(f"{where}: event of {len(event)} bytes is over {max_size}")
    if b"<event" not in event:
        raise MalformedMessage(f"{where}: no <event> in the body")
    return event


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = [v.decode() if isinstance(v, bytes) else v for v in value]
        if all(isinstance(v, str) and v for v in items):
            return tuple(items)
    raise MalformedMessage(f"{what}: expected a list of non-empty strings")


def decode_inbound(body: bytes, default_groups: Sequence[str], max_size: int) -> Injection:
    """A message from the inbound exchange (OTS's ``cot_parser`` shape or bare XML)."""
    where = "inbound message"
    text = body.lstrip()
    if text.startswith(b"<"):
        return Injection((_check_event(text, max_size, where),), tuple(default_groups))
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"{where}: neither JSON nor CoT XML: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedMessage(f"{where}: JSON body must be an object")
    sender = document.get("uid") or ""
    if not isinstance(sender, str):
        raise MalformedMessage(f"{where}: 'uid' must be a string")
    groups = (
        _strings(document["groups"], f"{where} 'groups'") if "groups" in document
        else tuple(default_groups)
    )
    cot = document.get("cot")
    if cot is None and document.get("disconnected") is True:
        if not sender:
            raise MalformedMessage(f"{where}: a disconnect notice needs a 'uid'")
        return Injection((servercot.delete(sender, DISCONNECTED_TYPE),), groups, "", sender)
    if not isinstance(cot, str):
        raise MalformedMessage(f"{where}: 'cot' must be a string of CoT XML")
    return Injection((_check_event(cot.encode(), max_size, where),), groups, "", sender)


@dataclass(frozen=True, slots=True)
class Skip:
    """A well-formed federation message this server does not take (counted by ``reason``)."""

    reason: str  # "own": we sent it; "loops": it carries our flow tag; "not_federated": none of
    # its groups federate here


def decode_federated(
    body: bytes, headers: Mapping[str, Any] | None, plan: MirrorPlan, max_size: int
) -> Injection | Skip:
    """A message from the federation exchange, for the server described by ``plan``."""
    where = "federation message"
    headers = headers or {}
    origin = headers.get(HEADER_ORIGIN)
    if isinstance(origin, bytes):
        origin = origin.decode(errors="replace")
    if not isinstance(origin, str) or not origin:
        raise MalformedMessage(f"{where}: no {HEADER_ORIGIN} header")
    if origin == plan.server_id:
        return Skip("own")
    event = _check_event(body, max_size, f"{where} from {origin}")
    if has_tag(event, plan.server_id):
        return Skip("loops")
    groups = plan.federated(_strings(headers.get(HEADER_GROUPS), f"{where} groups"))
    if not groups:
        return Skip("not_federated")
    sender = headers.get(HEADER_SENDER) or ""
    if isinstance(sender, bytes):
        sender = sender.decode(errors="replace")
    return Injection((event,), groups, origin, sender if isinstance(sender, str) else "")
