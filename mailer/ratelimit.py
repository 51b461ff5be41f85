"""Sliding-window rate limits kept in this process's memory."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most `limit` hits per key within any `window` seconds."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Count a hit; 0 when allowed, else the seconds until one would be."""
        now = self.clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    self._forget_idle(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            return 0.0

    def blocked(self, key: str) -> float:
        """Without counting a hit: 0 when one would be allowed, else the seconds to wait."""
        now = self.clock()
        with self._lock:
            hits = self._hits.get(key)
            recent = [t for t in hits if t > now - self.window] if hits else []
            if len(recent) < self.limit:
                return 0.0
            return max(recent[0] + self.window - now, 0.001)

    def count(self, key: str) -> int:
        """How many hits `key` has within the window (at most `limit`)."""
        now = self.clock()
        with self._lock:
            hits = self._hits.get(key)
            return sum(1 for t in hits if t > now - self.window) if hits else 0

    def forget(self, key: str) -> None:
        """Side effect: `key`'s hits dropped."""
        with self._lock:
            self._hits.pop(key, None)

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]
        for key in idle:
            del self._hits[key]
        # Still full (a flood of distinct keys): forget the oldest tenth, so memory stays
        # bounded at the price of a little leniency towards the oldest keys.
        if len(self._hits) >= self.max_keys:
            for key in list(itertools.islice(self._hits, self.max_keys // 10 or 1)):
                del self._hits[key]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
