"""The bridge's bounded buffer between the pipeline and RabbitMQ.

Overflow policy: drop the oldest (newer positions supersede older ones, and a broker that
has been away for a while is better served the recent past), counted by the caller. The
pipeline side only appends (never waits); the AMQP side takes when it can publish.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Outbox(Generic[Item]):
    __slots__ = ("_items", "_ready", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Item] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> int:
        """Append ``item``; returns how many old items were dropped to make room (0 or 1)."""
        items = self._items
        dropped = 0
        if len(items) >= self.limit:
            items.popleft()
            dropped = 1
        items.append(item)
        self._ready.set()
        return dropped

    def take(self, limit: int) -> list[Item]:
        """Up to ``limit`` of the oldest items, removed."""
        items = self._items
        count = min(limit, len(items))
        taken = [items.popleft() for _ in range(count)]
        if not items:
            self._ready.clear()
        return taken

    def put_back(self, items: list[Item]) -> int:
        """Return unsent ``items`` to the front (oldest first); returns how many did not fit."""
        room = self.limit - len(self._items)
        keep = items[len(items) - room:] if room < len(items) else items
        self._items.extendleft(reversed(keep))
        if self._items:
            self._ready.set()
        return len(items) - len(keep)

    async def wait(self) -> None:
        """Until something is waiting."""
        await self._ready.wait()
