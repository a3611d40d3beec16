"""The store's keep ratio (otszmq.store.shedding): driven through a simulated store, tick by tick,
with explicit clock values: workers that could send ``demand`` records/s and build ``keep`` of
them, a writer that writes at most ``speed`` records/s, a queue bounded by the limit."""

from __future__ import annotations

import pytest

from otszmq.store.shedding import (
    ABSORB_TARGET,
    TICK,
    TRACK_TARGET,
    KeepController,
    worth_announcing,
)

LIMIT = 50_000


class SimulatedStore:
    """The counts a store would feed its controller, for a given demand and writer speed."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.controller = KeepController(limit)
        self.limit = limit
        self.now = 0.0
        self.received = self.skipped = self.written = self.dropped = 0
        self.queued = 0.0
        self.built_at: list[tuple[float, int]] = []  # (time, records built in that tick)
        self.controller.update(self.now, 0, 0, 0, 0)

    def run(self, seconds: float, demand: float, speed: float) -> None:
        for _ in range(round(seconds / TICK)):
            keep = self.controller.keep
            built = round(keep * demand * TICK)
            self.skipped += round(demand * TICK) - built
            self.received += built
            taken = min(built, self.limit - int(self.queued))
            self.dropped += built - taken
            self.queued += taken
            wrote = min(self.queued, speed * TICK)
            self.queued -= wrote
            self.written += round(wrote)
            self.now += TICK
            self.built_at.append((self.now, built))
            self.controller.update(
                self.now, self.received, self.skipped, self.written, int(self.queued)
            )

    @property
    def keep(self) -> float:
        return self.controller.keep


def test_an_idle_store_wants_everything() -> None:
    store = SimulatedStore()
    store.run(5, demand=0, speed=0)
    assert store.keep == 1.0


def test_a_writer_that_keeps_up_gets_everything() -> None:
    store = SimulatedStore()
    store.run(20, demand=5_000, speed=20_000)
    assert store.keep == 1.0
    assert store.skipped == 0 and store.dropped == 0


def test_a_flood_beyond_the_writer_is_thinned_to_what_it_writes() -> None:
    store = SimulatedStore()
    store.run(5, demand=2_000, speed=20_000)  # a quiet start: the writer has shown 2,000/s
    store.run(10, demand=40_000, speed=2_000)

    # It asks for what the writer writes, holding a small queue, and drops nothing.
    assert store.keep == pytest.approx(2_000 / 40_000, abs=0.02)
    assert store.queued == pytest.approx(TRACK_TARGET * LIMIT, rel=0.3)
    assert store.dropped == 0
    # The onset costs little: what was built in the flood's first second.
    first_second = sum(built for at, built in store.built_at if 5 < at <= 6)
    assert first_second < 0.3 * LIMIT


def test_a_flood_after_the_writer_was_fast_is_thinned_too() -> None:
    store = SimulatedStore()
    store.run(5, demand=15_000, speed=20_000)  # the writer has shown 15,000/s
    store.run(10, demand=45_000, speed=3_000)
    assert store.keep == pytest.approx(3_000 / 45_000, abs=0.02)
    assert store.dropped == 0


def test_a_stall_within_the_writers_reach_is_queued_not_thinned() -> None:
    store = SimulatedStore()
    store.run(10, demand=5_000, speed=20_000)  # the writer keeps up at 5,000/s
    store.run(3, demand=5_000, speed=0)  # a 3 s stall: a checkpoint, a vacuum
    assert store.skipped == 0  # all of it queued
    assert store.queued == pytest.approx(15_000, rel=0.05)
    store.run(10, demand=5_000, speed=20_000)
    assert store.keep == 1.0 and store.queued < 1_000
    assert store.skipped == 0 and store.dropped == 0


def test_a_long_stall_is_thinned_before_the_queue_overflows() -> None:
    store = SimulatedStore()
    store.run(10, demand=5_000, speed=20_000)
    store.run(30, demand=5_000, speed=0)
    assert store.keep == 0.0
    assert store.queued <= ABSORB_TARGET * LIMIT * 1.05
    assert store.dropped == 0  # thinned instead of dropped


def test_the_workers_build_everything_again_once_the_flood_is_over() -> None:
    store = SimulatedStore()
    store.run(10, demand=40_000, speed=2_000)
    assert store.keep < 0.1
    store.run(10, demand=1_000, speed=20_000)
    assert store.keep == 1.0


def test_keep_stays_put_between_ticks_and_limit_must_be_positive() -> None:
    controller = KeepController(100)
    assert controller.update(0.0, 0, 0, 0, 0) == 1.0
    controller.update(TICK, 10_000, 0, 0, 100)
    keep = controller.keep
    assert controller.update(TICK + TICK / 10, 90_000, 0, 0, 100) == keep  # too soon to judge
    with pytest.raises(ValueError, match="limit"):
        KeepController(0)


@pytest.mark.parametrize(
    ("keep", "announced", "worth"),
    [
        (1.0, 1.0, False), (0.97, 1.0, True), (1.0, 0.97, True), (0.5, 0.52, False),
        (0.5, 0.56, True), (0.0, 0.03, True), (0.03, 0.0, True), (0.0, 0.0, False),
    ],
)
def test_what_is_worth_announcing(keep: float, announced: float, worth: bool) -> None:
    assert worth_announcing(keep, announced) is worth
