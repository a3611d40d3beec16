"""LogThrottle: which occurrences of a recurring warning are said, and what a line stands for."""

from __future__ import annotations

import logging

import pytest

from otszmq.logthrottle import LogThrottle


def test_the_first_occurrence_is_said_at_once_and_the_rest_of_its_window_are_held() -> None:
    throttle = LogThrottle(window=10.0)
    assert throttle.allow(now=100.0) == 1
    assert [throttle.allow(now=100.0 + t) for t in (1.0, 5.0, 9.9)] == [0, 0, 0]
    # The next window's line stands for itself and the three held back.
    assert throttle.allow(now=110.0) == 4
    assert throttle.allow(now=111.0) == 0


def test_counts_add_up_what_a_line_stands_for() -> None:
    throttle = LogThrottle(window=10.0)
    assert throttle.allow(5, now=0.0) == 5
    assert throttle.allow(7, now=1.0) == 0
    assert throttle.allow(2, now=2.0) == 0
    assert throttle.allow(1, now=10.0) == 10


def test_a_window_opens_at_the_first_line_after_the_last_one_closed() -> None:
    throttle = LogThrottle(window=10.0)
    assert throttle.allow(now=0.0) == 1
    # Quiet for a long time: the next occurrence is said at once and starts a new window.
    assert throttle.allow(now=50.0) == 1
    assert throttle.allow(now=59.0) == 0
    assert throttle.allow(now=60.0) == 2


def test_a_burst_lets_that_many_lines_through_per_window() -> None:
    throttle = LogThrottle(window=10.0, burst=3)
    assert [throttle.allow(now=float(t)) for t in range(6)] == [1, 1, 1, 0, 0, 0]
    assert throttle.allow(now=10.0) == 4
    assert throttle.allow(now=10.5) == 1


def test_warning_says_how_many_were_held_back(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.logthrottle")
    throttle = LogThrottle(window=10.0, burst=2)
    with caplog.at_level(logging.WARNING, logger="test.logthrottle"):
        for n in range(5):
            throttle.warning(logger, "bad message %d: %s", n, "why", now=float(n))
    assert [r.getMessage() for r in caplog.records] == ["bad message 0: why", "bad message 1: why"]
    # A new window: its first line carries the tally of the three held back.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="test.logthrottle"):
        throttle.warning(logger, "bad message %d: %s", 5, "why", now=10.0)
    assert [r.getMessage() for r in caplog.records] == [
        "bad message 5: why (and 3 more like it, not logged)"
    ]


@pytest.mark.parametrize(("window", "burst"), [(0.0, 1), (-1.0, 1), (10.0, 0)])
def test_nonsense_settings_are_refused(window: float, burst: int) -> None:
    with pytest.raises(ValueError, match="LogThrottle"):
        LogThrottle(window=window, burst=burst)
