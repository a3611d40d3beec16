"""What `otszmq serve` puts in its children's environment besides the secrets (test_bridge.py
covers those): the allocator tuning, and the admin's own tunables kept."""

from __future__ import annotations

import pytest

from otszmq.config import load_settings
from otszmq.supervisor import MALLOC_TCACHE_COUNT, child_environment, malloc_tunables

OURS = f"glibc.malloc.tcache_count={MALLOC_TCACHE_COUNT}"


@pytest.mark.parametrize(("current", "expected"), [
    ("", OURS),
    ("glibc.malloc.arena_max=2", f"glibc.malloc.arena_max=2:{OURS}"),
    ("glibc.malloc.tcache_count=7", "glibc.malloc.tcache_count=7"),  # the admin's choice wins
    ("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=64",
     "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=64"),
])
def test_malloc_tunables_add_ours_and_keep_the_admins(current, expected):
    assert malloc_tunables(current) == expected


def test_children_get_the_tuning(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert child_environment(load_settings({"workers": "1"}, env={}))["GLIBC_TUNABLES"] == OURS
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    env = child_environment(load_settings({"workers": "1"}, env={}))
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=4:{OURS}"
