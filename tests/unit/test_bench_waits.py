"""benchmarks.waits: a run's half-rate windows grouped by how long the server waited for a core."""

from __future__ import annotations

from typing import Any

from benchmarks import waits

OTSZMQ = {"otszmq", "otszmq-nostore"}


def ramp(server: str, *windows: tuple[float, float | None, float]) -> dict[str, Any]:
    """An sa-broadcast record whose half-rate step had these (p99, server wait, busy) windows."""
    rows = [{"p99_ms": p99, "server_runqueue_wait_ms_per_s": wait, "system_busy_percent": busy}
            for p99, wait, busy in windows]  # fmt: skip
    return {"scenario": "sa-broadcast", "clients": 10, "server": server,
            "result": {"max_sustainable_rate": 1000.0, "at_half": {"row": rows[0],
                                                                   "repeats": rows}}}  # fmt: skip


def test_windows_are_grouped_by_the_servers_wait_and_the_others_summed_up() -> None:
    records = [
        ramp("otszmq", (12.0, 900.0, 150.0), (30.0, 1050.0, 190.0), (20.0, 950.0, 160.0)),
        ramp("otszmq-nostore", (60.0, 1300.0, 170.0), (40.0, 1150.0, 185.0)),
        ramp("relay", (4.0, 10.0, 90.0), (6.5, 59.0, 140.0)),
    ]
    lines = waits.wait_lines(records, OTSZMQ, 25.0)
    assert lines[0].startswith("The 5 half-rate windows of the otszmq and otszmq-nostore ramps")
    table = [line for line in lines if line.startswith("| ") and "windows" not in line]
    assert table == [
        "| under 1,000 | 2 | 12.0 ms | 12.0 to 20.0 | 2 |",
        "| 1,000 to 1,100 | 1 | 30.0 ms | 30.0 to 30.0 | 0 |",
        "| 1,100 to 1,200 | 1 | 40.0 ms | 40.0 to 40.0 | 0 |",
        "| 1,200 and more | 1 | 60.0 ms | 60.0 to 60.0 | 0 |",
    ]
    assert "- relay: 2 windows, its processes waiting 10 to 59 ms/s, p99 4.0 to 6.5 ms" in lines
    # p99 rises with the wait here: a strong correlation, printed with two decimals.
    correlation = waits.correlation([900.0, 1050.0, 950.0, 1300.0, 1150.0],
                                    [12.0, 30.0, 20.0, 60.0, 40.0])  # fmt: skip
    assert correlation is not None and correlation > 0.9
    assert f"correlates {correlation:.2f} with that wait" in lines[0]


def test_runs_from_before_the_waits_were_measured_give_no_table() -> None:
    records = [ramp("otszmq", (12.0, None, 150.0), (30.0, None, 190.0))]
    assert waits.half_windows(records) == []
    assert waits.wait_lines(records, OTSZMQ, 25.0) == []


def test_a_correlation_that_is_not_defined_reads_n_a() -> None:
    assert waits.correlation([1.0, 2.0], [3.0, 4.0]) is None  # too few points
    assert waits.correlation([1.0, 1.0, 1.0], [3.0, 4.0, 5.0]) is None  # a constant
    lines = waits.wait_lines([ramp("otszmq", (12.0, 900.0, 150.0))], OTSZMQ, 25.0)
    assert "correlates n/a with that wait and n/a with how busy" in lines[0]
