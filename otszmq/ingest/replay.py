"""Current map state for clients that connect: the latest broadcast event per uid.

Every ingest sees every routed event, so each keeps its own copy; a new client is
sent the non-stale items it may see (its OUT groups meet the sender's IN groups).
Bounded: past ``limit`` uids the least recently updated item is forgotten and
counted. Items leave when they go stale, or when a ``t-x-d-d`` deletes their uid
(which also happens when a client disconnects).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple


class ReplayItem(NamedTuple):
    data: bytes
    stale: float  # seconds since the epoch
    groups_in: tuple[str, ...]


class ReplayCache:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, ReplayItem] = OrderedDict()
        self.evicted_for_space = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, uid: str, item: ReplayItem) -> None:
        if self.limit == 0:
            return
        items = self._items
        if uid in items:
            items.move_to_end(uid)
        items[uid] = item
        if len(items) > self.limit:
            items.popitem(last=False)
            self.evicted_for_space += 1

    def forget(self, uid: str) -> None:
        self._items.pop(uid, None)

    def visible(self, groups_out: frozenset[str], now: float) -> list[bytes]:
        """Non-stale items a reader of ``groups_out`` may see, oldest first."""
        found: list[bytes] = []
        stale_uids: list[str] = []
        for uid, item in self._items.items():
            if item.stale <= now:
                stale_uids.append(uid)
            elif not groups_out.isdisjoint(item.groups_in):
                found.append(item.data)
        for uid in stale_uids:
            del self._items[uid]
        return found

    def prune(self, now: float) -> int:
        """Drop stale items; returns how many (run from the periodic sweep)."""
        stale_uids = [uid for uid, item in self._items.items() if item.stale <= now]
        for uid in stale_uids:
            del self._items[uid]
        return len(stale_uids)
