"""Unit tests of the routing decision (otszmq.workers.router.route)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otszmq.wire import RouteFlag, RouteMode, SourceHeader, SourceKind
from otszmq.workers.cot import CotEvent, parse_event
from otszmq.workers.kinds import REPLAYABLE_KINDS, classify
from otszmq.workers.router import Decision, route
from tests.support import instant_event

SENDER = "ANDROID-sender"
SOURCE = SourceHeader(SourceKind.EVENT, "ingest-1", 7, "127.0.0.1:5000", SENDER, ("__ANON__",), "")


def event(cot_type: str, detail: str = "", uid: str = "item-1") -> CotEvent:
    # Routing reads neither times nor position: the shared builder's instant event will do.
    return parse_event(instant_event(uid, cot_type, "m-g", detail))


def test_an_sa_without_destinations_is_a_replayable_position_broadcast() -> None:
    decision = route(event("a-f-G-U-C", '<contact callsign="ALPHA"/>'), SOURCE)
    assert decision == Decision(
        RouteMode.BROADCAST, RouteFlag.REPLAY | RouteFlag.POSITION | RouteFlag.ANNOUNCE
    )


def test_an_sa_without_a_callsign_announces_nothing() -> None:
    decision = route(event("a-f-G-U-C"), SOURCE)
    assert decision == Decision(RouteMode.BROADCAST, RouteFlag.REPLAY | RouteFlag.POSITION)


def test_a_chat_broadcast_is_not_map_state() -> None:
    assert route(event("b-t-f"), SOURCE) == Decision(RouteMode.BROADCAST, RouteFlag.NONE)


def test_destinations_by_uid_and_callsign_make_a_direct_message_that_is_never_replayed() -> None:
    detail = '<marti><dest uid="ANDROID-b"/><dest callsign="BRAVO"/></marti>'
    decision = route(event("b-m-p-s-m", detail), SOURCE)
    assert decision == Decision(RouteMode.DIRECT, RouteFlag.NONE, ("ANDROID-b",), ("BRAVO",))


def test_a_direct_sa_keeps_its_position_flags_but_not_replay() -> None:
    detail = '<contact callsign="ALPHA"/><marti><dest callsign="BRAVO"/></marti>'
    decision = route(event("a-f-G-U-C", detail), SOURCE)
    assert decision.mode == RouteMode.DIRECT
    assert decision.flags == RouteFlag.POSITION | RouteFlag.ANNOUNCE


@pytest.mark.parametrize(
    "detail",
    [
        "<marti/>",  # an empty <marti>: a broadcast
        f'<marti><dest uid="{SENDER}"/></marti>',  # iTAK names itself: not a recipient
    ],
)
def test_destinations_that_name_nobody_else_leave_a_broadcast(detail: str) -> None:
    decision = route(event("b-m-p-s-m", detail), SOURCE)
    assert decision == Decision(RouteMode.BROADCAST, RouteFlag.REPLAY)


def test_a_mission_destination_goes_to_the_mission() -> None:
    detail = f'<marti><dest uid="{SENDER}" mission="ops"/><dest mission="logs"/></marti>'
    decision = route(event("b-m-p-s-m", detail), SOURCE)
    assert decision == Decision(RouteMode.MISSION, RouteFlag.NONE, missions=("ops", "logs"))


def test_a_delete_evicts_its_linked_item_or_else_itself() -> None:
    linked = route(event("t-x-d-d", '<link uid="marker-9" relation="none"/>'), SOURCE)
    assert linked.evict_uid == "marker-9"
    assert route(event("t-x-d-d", uid="marker-3"), SOURCE).evict_uid == "marker-3"


@pytest.mark.parametrize(
    ("cot_type", "reason"), [("t-x-c-t", "ping"), ("t-x-takp-q", "protocol_negotiation")]
)
def test_pings_and_protocol_negotiation_are_routed_nowhere(cot_type: str, reason: str) -> None:
    assert route(event(cot_type), SOURCE).drop_reason == reason


def test_each_decision_is_a_fresh_object() -> None:
    # Handlers set flags on the decision: a shared one would carry them to the next event.
    first = route(event("a-f-G-U-C", '<contact callsign="ALPHA"/>'), SOURCE)
    second = route(event("a-f-G-U-C"), SOURCE)
    assert first is not second
    assert not second.flags & RouteFlag.ANNOUNCE


_NAMES = st.sampled_from(["", SENDER, "ANDROID-b", "BRAVO", "ops"])


@given(
    cot_type=st.sampled_from(["a-f-G-U-C", "b-t-f", "b-m-p-s-m", "u-d-f", "t-x-d-d", "b-f-t-r"]),
    dests=st.none() | st.lists(st.tuples(_NAMES, _NAMES, _NAMES), max_size=4),
)
def test_the_mode_follows_the_destinations_as_the_rules_say(
    cot_type: str, dests: list[tuple[str, str, str]] | None
) -> None:
    """The mode and destinations against the rules written out plainly: uids other than the
    sender's or callsigns make a direct message, else missions a mission message, else (no
    <marti>, an empty one, or one naming only the sender) a broadcast, map state if replayable."""
    detail = ""
    if dests is not None:
        names = ("uid", "callsign", "mission")
        items = "".join(
            "<dest" + "".join(f' {n}="{v}"' for n, v in zip(names, dest, strict=True) if v) + "/>"
            for dest in dests
        )
        detail = f"<marti>{items}</marti>"
    decision = route(event(cot_type, detail), SOURCE)
    uids = tuple(uid for uid, _, _ in dests or () if uid and uid != SENDER)
    callsigns = tuple(callsign for _, callsign, _ in dests or () if callsign)
    missions = tuple(mission for _, _, mission in dests or () if mission)
    if uids or callsigns:
        expected = (RouteMode.DIRECT, uids, callsigns, missions)
    elif missions:
        expected = (RouteMode.MISSION, (), (), missions)
    else:
        expected = (RouteMode.BROADCAST, (), (), ())
    assert (decision.mode, decision.dest_uids, decision.dest_callsigns, decision.missions) == (
        expected
    )
    replay = decision.mode == RouteMode.BROADCAST and classify(cot_type) in REPLAYABLE_KINDS
    assert bool(decision.flags & RouteFlag.REPLAY) == replay
