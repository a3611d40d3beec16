"""otszmq.inject.Injector without a node: refused sends are counted, and logged sparingly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from otszmq.inject import Injector
from tests.support import marker_event


def test_sends_with_no_ingest_are_refused_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="otszmq.inject")
    with Injector(f"ipc://{tmp_path}/nobody.ipc", "test") as injector:
        results = [injector.send([marker_event(f"m{i}")], groups_in=("__ANON__",))
                   for i in range(50)]
        assert not injector.regroup("alice", ["A"], ["A"])
        assert results == [False] * 50
        assert injector.dropped == 51
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
