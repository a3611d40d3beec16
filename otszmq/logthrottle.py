"""Warnings about what can happen thousands of times a second, kept to a few log lines.

Dropped records, refused sends, malformed messages: under overload or a misbehaving peer each
can recur on every message. Every occurrence is counted by its caller all the same (counters,
``otszmq stats``); a :class:`LogThrottle` only decides which of them are also said, and how
many the line it lets through stands for.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Final

DEFAULT_WINDOW: Final = 10.0


class LogThrottle:
    """At most ``burst`` lines per ``window`` seconds; a window opens at the first line after
    the last one closed, so a rare warning is always logged at once."""

    def __init__(self, window: float = DEFAULT_WINDOW, burst: int = 1) -> None:
        if window <= 0 or burst < 1:
            raise ValueError(f"LogThrottle: window {window} must be > 0, burst {burst} >= 1")
        self._window = window
        self._burst = burst
        self._window_end = -math.inf
        self._lines = 0
        self._held = 0

    def allow(self, count: int = 1, now: float | None = None) -> int:
        """Note ``count`` occurrences; the number a line logged now would stand for (these and
        every one held back since the last line), or 0 when no line may be logged now."""
        now = time.monotonic() if now is None else now
        self._held += count
        if now >= self._window_end:
            self._window_end, self._lines = now + self._window, 0
        if self._lines >= self._burst:
            return 0
        self._lines += 1
        held, self._held = self._held, 0
        return held

    def warning(
        self, logger: logging.Logger, message: str, *args: object, now: float | None = None
    ) -> None:
        """Log one occurrence of a warning that names its own details (a malformed message's
        error), if allowed; a line after some were held back says how many."""
        held = self.allow(now=now)
        if held > 1:
            logger.warning(message + " (and %d more like it, not logged)", *args, held - 1)
        elif held:
            logger.warning(message, *args)
