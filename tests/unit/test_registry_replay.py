from __future__ import annotations

from otszmq.ingest.outbound import Outbound
from otszmq.ingest.registry import ANON_GROUP, Connection, Registry
from otszmq.ingest.replay import ReplayCache, ReplayItem


def conn(cid: int, groups_out: frozenset[str] = frozenset({ANON_GROUP})) -> Connection:
    return Connection(id=cid, peer=f"p{cid}", out=Outbound(None), groups_out=groups_out)  # type: ignore[arg-type]


def test_readers_by_group_each_once():
    registry = Registry()
    a, b = conn(1, frozenset({"red", "blue"})), conn(2, frozenset({"blue"}))
    c = conn(3)
    for x in (a, b, c):
        registry.add(x)
    assert {x.id for x in registry.readers(["red"])} == {1}
    assert sorted(x.id for x in registry.readers(["red", "blue"])) == [1, 2]
    assert {x.id for x in registry.readers([ANON_GROUP])} == {3}
    assert list(registry.readers(["nobody"])) == []
    registry.remove(a)
    registry.remove(a)  # idempotent
    assert {x.id for x in registry.readers(["red", "blue"])} == {2}


def test_addressing_by_uid_and_callsign_is_group_checked():
    registry = Registry()
    a, b, c = conn(1), conn(2), conn(3, frozenset({"red"}))
    for x in (a, b, c):
        registry.add(x)
    assert registry.announce(a, "uid-a", "ALPHA")
    assert not registry.announce(a, "uid-a", "ALPHA")
    registry.announce(b, "uid-b", "BRAVO")
    registry.announce(c, "uid-c", "CHARLIE")
    found = registry.addressed(["uid-a"], ["BRAVO", "ALPHA"], [ANON_GROUP])
    assert sorted(x.id for x in found) == [1, 2]
    # c does not read __ANON__: an anonymous sender cannot reach it directly.
    assert registry.addressed(["uid-c"], ["CHARLIE"], [ANON_GROUP]) == []
    assert registry.announced == 3
    registry.announce(a, "uid-a", "ALPHA-2")  # callsign change re-indexes
    assert registry.addressed([], ["ALPHA"], [ANON_GROUP]) == []
    assert [x.id for x in registry.addressed([], ["ALPHA-2"], [ANON_GROUP])] == [1]
    registry.remove(a)
    assert registry.addressed(["uid-a"], ["ALPHA-2"], [ANON_GROUP]) == []
    assert registry.announced == 2


def test_replay_keeps_latest_per_uid_and_respects_groups_and_staleness():
    cache = ReplayCache(limit=10)
    cache.put("x", ReplayItem(b"x1", 100.0, (ANON_GROUP,)))
    cache.put("y", ReplayItem(b"y1", 100.0, ("red",)))
    cache.put("x", ReplayItem(b"x2", 100.0, (ANON_GROUP,)))
    cache.put("z", ReplayItem(b"z1", 10.0, (ANON_GROUP,)))
    assert cache.visible(frozenset({ANON_GROUP}), now=50.0) == [b"x2"]  # z is stale
    assert cache.visible(frozenset({ANON_GROUP, "red"}), now=50.0) == [b"y1", b"x2"]
    cache.forget("x")
    assert cache.visible(frozenset({ANON_GROUP}), now=50.0) == []
    assert cache.prune(now=1000.0) == 1 and len(cache) == 0


def test_replay_is_bounded():
    cache = ReplayCache(limit=2)
    for uid in "abc":
        cache.put(uid, ReplayItem(uid.encode(), 1e12, (ANON_GROUP,)))
    assert len(cache) == 2 and cache.evicted_for_space == 1
    assert cache.visible(frozenset({ANON_GROUP}), now=0) == [b"b", b"c"]
    disabled = ReplayCache(limit=0)
    disabled.put("a", ReplayItem(b"a", 1e12, (ANON_GROUP,)))
    assert len(disabled) == 0
