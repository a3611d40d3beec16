"""Rounds of the paired ramps, and the medians a target is judged on.

The suite ramps the servers of a paired scenario in turn several times (run_suite
--paired-rounds): one ramp each moves by 5-30 % between two runs on this machine, too much for a
ratio target with a 10 % margin. Each record carries its `round`; records of suite runs before
there were rounds have none and read as round 1.

A ratio is taken within a round (the two ramps met the same minutes of the machine), then the
median over the rounds; every median here is the lower middle one, so it is always a value that
was measured, never the mean of two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
Key = tuple[str, int]  # server, clients


def round_of(run: Json) -> int:
    return int(run.get("round", 1))


def result_of(run: Json) -> Json | None:
    """The run's program result, None when it has none (failed or skipped)."""
    result = run.get("result")
    return result if isinstance(result, dict) else None


def max_rate(run: Json) -> float | None:
    """The run's max sustainable rate, if it has one."""
    rate = (result_of(run) or {}).get("max_sustainable_rate")
    return float(rate) if rate else None


def by_server(records: Iterable[Json]) -> dict[Key, list[Json]]:
    """Every round of each server and client count, in the order the records came."""
    groups: dict[Key, list[Json]] = {}
    for run in records:
        groups.setdefault((run["server"], run["clients"]), []).append(run)
    return groups


@dataclass(frozen=True, slots=True)
class Median:
    """The median of a value over the rounds, the round it came from, and every round's."""

    value: float
    round: int
    values: tuple[float, ...]  # in round order

    @property
    def rounds(self) -> int:
        return len(self.values)


def median(measured: dict[int, float]) -> Median | None:
    """The lower median of values by round; None when no round measured it."""
    if not measured:
        return None
    ordered = sorted(measured.items(), key=lambda item: (item[1], item[0]))
    number, value = ordered[(len(ordered) - 1) // 2]
    return Median(value, number, tuple(value for _, value in sorted(measured.items())))


def median_of(group: Iterable[Json], value: Callable[[Json], float | None]) -> Median | None:
    """The median over a server's rounds of `value` (None where a round did not measure it)."""
    measured = {round_of(run): v for run in group if (v := value(run)) is not None}
    return median(measured)


@dataclass(frozen=True, slots=True)
class Ratio:
    """The median over the rounds of one server's max rate over another's, and the two rates of
    the round it came from."""

    median: Median
    mine: float
    theirs: float


def ratio_median(mine: Iterable[Json], theirs: Iterable[Json], *, paired: bool) -> Ratio | None:
    """Within each round both measured when the ramps were `paired` (took turns); else each
    round of `mine` against the median of `theirs`, the ramps having run apart."""
    their_rates = {round_of(run): rate for run in theirs if (rate := max_rate(run))}
    my_rates = {round_of(run): rate for run in mine if (rate := max_rate(run))}
    if not paired:
        theirs_median = median(their_rates)
        if theirs_median is None:
            return None
        their_rates = dict.fromkeys(my_rates, theirs_median.value)
    ratios = {n: rate / their_rates[n] for n, rate in my_rates.items() if n in their_rates}
    found = median(ratios)
    if found is None:
        return None
    return Ratio(found, my_rates[found.round], their_rates[found.round])


def in_round(group: Iterable[Json], number: int) -> Json:
    """The run of that round (a round a median came from: there is one)."""
    found = next((run for run in group if round_of(run) == number), None)
    if found is None:
        raise LookupError(f"no run of round {number}")
    return found


def representative(group: list[Json]) -> Json:
    """The round of a server whose max rate is the median; the first when none has one."""
    found = median_of(group, max_rate)
    return group[0] if found is None else in_round(group, found.round)


def collapsed(records: Iterable[Json]) -> list[Json]:
    """One record per server and client count, its median round, in the order they came."""
    return [representative(group) for group in by_server(records).values()]
