"""How the suite drives each server: where its ramps start and stop, the load flags it needs, and
for a peer (benchmarks/peers/NAME) the scenarios it cannot do at the suite's size, and why.

Start rates sit close enough below each server's ceiling that doubling reaches it in a few steps
(measured: the relay tens of thousands of events/s). The peers' figures come from running them on
this kind of machine (benchmarks/peers/README.md):
taky sustains ~1,000-2,000 SA/s with 10 clients and collapses past that cliff (nothing sent after
it arrives in time); OpenTAKServer ~20-50/s with 10 clients, its single cot_parser routing ~30
CoT/s, and it forks a process per connection that builds a whole Flask app (~0.5 s of CPU, ~3 MiB
of PSS while idle, ~30 MiB once it handles CoT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# For a peer with a cliff: a ramp step that delivers less than this share of what it owed, above
# a rate that passed, ends its ramp. Past a cliff every higher rate collapses the same way, and
# each collapse leaves a backlog the server works on long after (benchmarks.ramp
# --end-on-collapse).
COLLAPSE_RATIO = 0.5


@dataclass(frozen=True, slots=True)
class Limit:
    """A scenario a peer cannot run at the suite's size: at most `clients` (None: not at all)."""

    clients: int | None
    reason: str


def _no_load_args(clients: int) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True, slots=True)
class Profile:
    # (clients, start rate events/s): a ramp with N clients starts at the rate of the last entry
    # whose client count is <= N (the first entry below that).
    start_rates: tuple[tuple[int, float], ...]
    max_rate: float = 200_000.0
    min_rate: float = 10.0
    end_on_collapse: float = 0.0
    # At most this many ramp steps (fewer than the suite's --max-steps); None: the suite's.
    max_steps: int | None = None
    limits: dict[str, Limit] = field(default_factory=dict)
    # What a reader of a scenario's table must know about this server's row, by scenario.
    caveats: dict[str, str] = field(default_factory=dict)
    # Extra flags for benchmarks.load and benchmarks.ramp with N clients.
    load_args: Callable[[int], tuple[str, ...]] = _no_load_args
    # Environment variables of start.sh that name a port: the suite gives each a free one.
    port_env: tuple[str, ...] = ()
    # Seconds a ramp step or run may take beyond its windows: settle, drain, clean-up.
    extra_step_seconds: float = 0.0
    # idle-hold holds the connections at least this long before measuring, s (not in --quick).
    idle_hold_min: float = 0.0

    def start_rate(self, clients: int) -> float:
        rate = self.start_rates[0][1]
        for at_least, value in self.start_rates:
            if clients >= at_least:
                rate = value
        return rate

    def ramp_args(self, scale: float = 1.0) -> tuple[str, ...]:
        """benchmarks.ramp's rate flags; `scale` shrinks the rates (the suite's --quick)."""
        return (
            "--max-rate", f"{self.max_rate * scale:g}", "--min-rate", f"{self.min_rate * scale:g}",
            "--end-on-collapse", f"{self.end_on_collapse:g}",
        )  # fmt: skip


def ots_load_args(clients: int) -> tuple[str, ...]:
    """OpenTAKServer subscribes a client to traffic only while handling its first SA, and only if
    that client's broker channel is already open (opened by its fork after building a Flask app:
    measured here, 50 forks at once had all their broker connections after ~20 s), so the first
    SA comes late. Its cot_parser routes ~30 CoT/s, so the settle repeats SAs at most ~10/s in all
    and waits long for them. The drain is longer: its queue delays the last deliveries."""
    delay = 2.0 + 0.4 * clients
    every = max(1.0, clients / 10.0)
    settle = 10.0 + 0.3 * clients
    return (
        "--announce-delay", f"{delay:g}", "--announce-every", f"{every:g}",
        "--settle-timeout", f"{settle:g}", "--drain", "4",
    )  # fmt: skip


TAKY_SELECT = "taky's single select() loop cannot watch descriptors above 1023"
OTS_FORKS = (
    "OpenTAKServer forks a handler per connection that builds a whole Flask app (~0.5 s of CPU; "
    "~3 MiB PSS idle, ~30 MiB once it handles CoT)"
)
OTS_DEAF = (
    "a client is sometimes left deaf, which fails a step at any rate (10 clients: one run in two "
    "to four; 20 or more: many clients, a third to most of the deliveries never arrive): "
    "OpenTAKServer subscribes a client only if its broker channel is ready when its first SA "
    "arrives, and declares, binds and consumes on that channel from another thread than the one "
    "running it (pika is not thread-safe), however late the client announces "
    "(benchmarks/peers/README.md)"
)
PROFILES: dict[str, Profile] = {
    # NOTE: start near where each ends (10 clients / 50 clients), so that the steps go into
    # bisecting rather than doubling; the relay's cap is far above what the generator can send,
    # so its figure is a measurement and not the cap (it used to stop at 200,000 with 10).
    "relay": Profile(start_rates=((2, 32000.0), (50, 16000.0)), max_rate=2_000_000.0),
    "otszmq": Profile(start_rates=((2, 16000.0), (50, 8000.0), (200, 1000.0))),
    "otszmq-nostore": Profile(start_rates=((2, 16000.0), (50, 8000.0), (200, 1000.0))),
    "taky": Profile(
        start_rates=((2, 500.0), (50, 250.0), (200, 50.0)),
        max_rate=8000.0,
        min_rate=20.0,
        end_on_collapse=COLLAPSE_RATIO,
        limits={"idle-hold": Limit(1000, TAKY_SELECT)},
    ),
    "ots": Profile(
        start_rates=((2, 20.0), (50, 5.0)),
        max_rate=400.0,
        min_rate=2.0,
        # A step costs ~20 s with 10 clients and a minute with 50 (settle, clean-up).
        max_steps=6,
        end_on_collapse=COLLAPSE_RATIO,
        limits={
            "takserver": Limit(20, OTS_FORKS + ", and its one cot_parser routes ~30 CoT/s: "
                               "hundreds of clients at 1 SA/s each are out of its reach"),
            "connect-storm": Limit(50, OTS_FORKS),
            "idle-hold": Limit(50, OTS_FORKS),
        },
        caveats={
            **{scenario: OTS_DEAF for scenario in ("sa-broadcast", "chat-dm", "mixed")},
            "connect-storm": "the clients send their SA at once, as ATAK does, and OpenTAKServer "
            "leaves a client whose first SA comes before its broker channel is open deaf for "
            "good: the broadcast and map columns show that",
            "takserver": OTS_DEAF + "; and it sends a ping back as it came instead of answering "
            "it with a t-x-c-t-r pong, so its pongs are 0",
        },
        load_args=ots_load_args,
        port_env=("OTS_API_PORT",),
        # Settle (announce delay, slow routing) and clean.sh waiting out cot_parser's backlog.
        extra_step_seconds=120.0,
        # The forks build their Flask apps for ~10 s after 50 connections arrive.
        idle_hold_min=30.0,
    ),
}
# A peer added under benchmarks/peers/ without a profile here.
DEFAULT_PROFILE = Profile(start_rates=((2, 1000.0),))


def profile(name: str) -> Profile:
    return PROFILES.get(name, DEFAULT_PROFILE)
