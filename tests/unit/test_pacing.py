"""Unit tests of otszmq.pacing: pauses after each slice of work, on a fake clock."""

from __future__ import annotations

import pytest

from otszmq.pacing import PAUSE_SECONDS, Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def pacer(slice_seconds: float, fake: FakeTime) -> Pacer:
    return Pacer(slice_seconds, clock=fake.clock, sleep=fake.sleep)


def test_pauses_once_per_slice_of_work():
    fake = FakeTime()
    pace = pacer(1.0, fake)  # whole seconds: no rounding in the sums
    for _ in range(10):  # 10 pause points 0.25 s apart: 2.5 s of work
        fake.now += 0.25
        pace()
    assert fake.slept == [PAUSE_SECONDS, PAUSE_SECONDS]
    assert pace.pauses == 2


def test_a_wait_for_input_starts_a_new_slice():
    fake = FakeTime()
    pace = pacer(1.0, fake)
    fake.now += 5.0  # blocked on input: not work
    pace.rest()
    fake.now += 0.5
    pace()
    assert fake.slept == []
    fake.now += 0.5
    pace()
    assert fake.slept == [PAUSE_SECONDS]


def test_slice_zero_never_pauses():
    fake = FakeTime()
    pace = pacer(0.0, fake)
    for _ in range(100):
        fake.now += 1.0
        pace()
    assert fake.slept == []


@pytest.mark.parametrize(("slice_seconds", "pause_seconds"), [(-0.001, 0.0002), (0.001, 0.0)])
def test_bad_arguments_are_refused(slice_seconds, pause_seconds):
    with pytest.raises(ValueError, match="slice must be >= 0 s and pause > 0 s"):
        Pacer(slice_seconds, pause_seconds)
