"""The load scenarios: what each simulated client sends, and who must receive each event.

Rate scenarios (paced by benchmarks.load, rampable by benchmarks.ramp), what each client sends
and who must receive it:

- `sa-broadcast`: SA reports, to every other client.
- `takserver`: TAK Server's own load-test shape, 1 SA/s (to every other client) plus a `t-x-c-t`
  ping every 10 s (answered by a `t-x-c-t-r` pong).
- `chat-dm`: GeoChat `b-t-f` direct messages by callsign, each to exactly its addressee.
- `mixed`: per 100 events 70 SA, 15 DMs, 14 markers `b-m-p-s-m` and one ~30 KiB drawing; DMs to
  their addressee, the rest to every other client.

Other scenarios have their own programs: `connect-storm` (benchmarks.storm) and `idle-hold`
(benchmarks.idle). Event kind and addressee are pure functions of (sender, seq), so the receivers'
records need no extra field and the checks run after the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from benchmarks import cotgen, cotmix

RATE_SCENARIOS = ("sa-broadcast", "takserver", "chat-dm", "mixed")
OTHER_SCENARIOS = ("connect-storm", "idle-hold")
SCENARIOS = RATE_SCENARIOS + OTHER_SCENARIOS
# TAK Server's load test: every client reports its position once a second and pings every 10 s.
TAKSERVER_SA_PER_CLIENT_S = 1.0
TAKSERVER_PING_EVERY_S = 10.0


class Kind(IntEnum):
    SA = 0
    CHAT = 1
    MARKER = 2
    DRAWING = 3


DIRECT_KINDS = frozenset({Kind.CHAT})
MIXED_SHARES = {Kind.SA: 70, Kind.CHAT: 15, Kind.MARKER: 14, Kind.DRAWING: 1}


def _interleave(shares: dict[Kind, int]) -> tuple[Kind, ...]:
    """A cycle with each kind `share` times, spread evenly (a 1% kind is not 1% in a clump)."""
    slots = [
        ((index + 0.5) / share, kind) for kind, share in shares.items() for index in range(share)
    ]
    return tuple(kind for _, kind in sorted(slots))


@dataclass(frozen=True, slots=True)
class Plan:
    """Kind of event number `seq` of every client (a cycle), and the addressee of a direct one."""

    scenario: str
    clients: int
    pattern: tuple[Kind, ...]

    @classmethod
    def for_scenario(cls, scenario: str, clients: int) -> Plan:
        if scenario == "chat-dm":
            return cls(scenario, clients, (Kind.CHAT,))
        if scenario == "mixed":
            return cls(scenario, clients, _interleave(MIXED_SHARES))
        return cls(scenario, clients, (Kind.SA,))

    @property
    def broadcast_only(self) -> bool:
        return not DIRECT_KINDS.intersection(self.pattern)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(sorted(set(self.pattern)))

    def kind(self, seq: int) -> Kind:
        return self.pattern[seq % len(self.pattern)]

    def addressee(self, src: int, seq: int) -> int:
        """Who event `seq` of `src` is for when it is direct: every other client in turn."""
        return (src + 1 + seq % (self.clients - 1)) % self.clients

    def expected_pairs(self, measured: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """(sender, receiver) -> deliveries owed for the measured seq ranges."""
        owed: dict[tuple[int, int], int] = {}
        others = range(self.clients)
        for src, (lo, hi) in enumerate(measured):
            broadcasts = 0
            for seq in range(lo, hi):
                if self.kind(seq) in DIRECT_KINDS:
                    pair = (src, self.addressee(src, seq))
                    owed[pair] = owed.get(pair, 0) + 1
                else:
                    broadcasts += 1
            for receiver in others:
                if receiver != src:
                    pair = (src, receiver)
                    owed[pair] = owed.get(pair, 0) + broadcasts
        return owed


class Sender:
    """Builds what one client owes in one pacer tick: events `first`..`first + count - 1`."""

    def __init__(self, plan: Plan, sa: cotgen.SaFactory, run_id: str) -> None:
        self.plan = plan
        self.sa = sa
        self._chat = cotmix.ChatFactory(run_id, sa.index)
        self._markers = cotmix.MarkerFactory(run_id, sa.index)
        self._sa_only = plan.pattern == (Kind.SA,)

    def batch(self, time_: bytes, stale: bytes, first: int, count: int, t_us: int) -> bytes:
        header = self.sa.header(time_, stale)
        if self._sa_only:
            # PERF: the common case stays one list comprehension over one prebuilt header.
            return b"".join([self.sa.event(header, first + k, t_us) for k in range(count)])
        parts: list[bytes] = []
        for seq in range(first, first + count):
            kind = self.plan.kind(seq)
            if kind is Kind.SA:
                parts.append(self.sa.event(header, seq, t_us))
            elif kind is Kind.CHAT:
                dst = self.plan.addressee(self.sa.index, seq)
                parts.append(self._chat.event(time_, stale, seq, t_us, dst))
            elif kind is Kind.MARKER:
                parts.append(self._markers.marker(time_, stale, seq, t_us))
            else:
                parts.append(self._markers.drawing(time_, stale, seq, t_us))
        return b"".join(parts)

    def ping(self, time_: bytes, stale: bytes) -> bytes:
        return cotmix.ping(self.sa.uid, time_, stale)
