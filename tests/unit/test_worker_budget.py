"""The per-source allowance of kept store records while the store sheds (otszmq.workers.budget)."""

from __future__ import annotations

import pytest

from otszmq.workers.budget import SourceBudget


def test_each_source_has_its_own_limit_per_window() -> None:
    budget = SourceBudget(100, limit=2, window=10.0)
    assert [budget.allow("a", 100.0) for _ in range(3)] == [True, True, False]
    assert budget.allow("b", 100.5)  # another source is not charged for a's
    assert not budget.allow("a", 109.9)  # the window runs from a's first use


def test_a_new_window_starts_at_the_first_use_after_the_last_ended() -> None:
    budget = SourceBudget(100, limit=1, window=10.0)
    assert budget.allow("a", 100.0)
    assert not budget.allow("a", 105.0)
    assert budget.allow("a", 110.0)
    assert not budget.allow("a", 119.0)
    assert budget.allow("a", 125.0)


def test_the_sources_tracked_are_bounded() -> None:
    budget = SourceBudget(2, limit=1, window=10.0)
    assert budget.allow("a", 0.0) and budget.allow("b", 0.0)
    assert budget.allow("c", 0.0)  # full: forgotten, so a source starts over
    assert budget.allow("a", 0.0)
    assert not budget.allow("c", 0.0)


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0)])
def test_a_budget_that_allows_nothing_is_refused(limit: int, window: float) -> None:
    with pytest.raises(ValueError, match="limit must be >= 1 and window > 0"):
        SourceBudget(100, limit, window)
