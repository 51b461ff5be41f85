"""How fast one sender may go: a messages-per-second pace, a sliding-window quota, a cap
on messages in flight per recipient domain, and an adaptive slow-down when relays answer
421/451.

The configured limits hold for all senders together: each sender takes `1/share` of them,
where `share` is the number of live senders (see `mailer.delivery.workers`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mailer.config import SenderSettings

WINDOW_BUCKETS = 100
RECENT_SECONDS = 2.0
MIN_RATE = 0.1
SLOWDOWN_SPACING = 1.0


class Throttle:
    def __init__(
        self, settings: SenderSettings, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.monotonic = monotonic
        self.share = 1
        """Live senders sharing the limits (this one included)."""
        self._next_slot = 0.0
        self._window: deque[tuple[int, int]] = deque()
        """(bucket number, messages delivered in it) over the last window_seconds."""
        self._in_window = 0
        self._in_flight = 0
        self._recent: deque[float] = deque()
        self._domains: dict[str, asyncio.Semaphore] = {}
        self._domain_cap = 0
        self._cap: float | None = None
        """The adaptive ceiling in messages per second after a 421/451; None: none."""
        self._cap_ceiling = 0.0
        self._cap_since = 0.0
        self.slowdowns = 0

    def set_share(self, live_senders: int) -> None:
        self.share = max(1, live_senders)

    def rate(self) -> float | None:
        """This sender's current limit in messages per second (None: unlimited)."""
        self._recover()
        limits = []
        if self.settings.rate_per_second:
            limits.append(self.settings.rate_per_second / self.share)
        if self._cap is not None:
            limits.append(self._cap)
        return min(limits) if limits else None

    def window_quota(self) -> int | None:
        if not self.settings.window_limit:
            return None
        return max(1, self.settings.window_limit // self.share)

    @asynccontextmanager
    async def domain(self, domain: str) -> AsyncIterator[None]:
        """Hold one of the places for messages in flight to `domain`."""
        semaphore = self._domain(domain)
        if semaphore is None:
            yield
            return
        async with semaphore:
            yield

    def _domain(self, domain: str) -> asyncio.Semaphore | None:
        per_domain = self.settings.per_domain_concurrency
        if not per_domain:
            return None
        cap = max(1, per_domain // self.share)
        if cap != self._domain_cap:  # the number of senders changed: new caps from now on
            self._domains.clear()
            self._domain_cap = cap
        semaphore = self._domains.get(domain)
        if semaphore is None:
            if len(self._domains) > 10_000:
                self._domains = {d: s for d, s in self._domains.items() if s.locked()}
            semaphore = self._domains[domain] = asyncio.Semaphore(cap)
        return semaphore

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until the rate and the window allow one more message, then hold its place.

        The pace counts when messages start; the window counts messages in flight and,
        once delivered, when they were delivered, which is when a relay counts them."""
        while True:
            now = self.monotonic()
            wait = max(self._window_wait(now), self._rate_wait(now))
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        rate = self.rate()
        if rate is not None:
            self._next_slot = max(now, self._next_slot) + 1.0 / rate
        self._recent.append(now)
        self._forget_before(now - RECENT_SECONDS)
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._count(self.monotonic())

    def _rate_wait(self, now: float) -> float:
        return self._next_slot - now if self.rate() is not None else 0.0

    def _window_wait(self, now: float) -> float:
        quota = self.window_quota()
        if quota is None:
            return 0.0
        width = self._bucket_width()
        current = int(now / width)
        # A bucket leaves once all of it is a whole window old (never early: up to one
        # bucket's width late).
        while self._window and self._window[0][0] + WINDOW_BUCKETS < current:
            self._in_window -= self._window.popleft()[1]
        if self._in_window + self._in_flight < quota:
            return 0.0
        if not self._window:  # all of the quota is in flight: wait for one to finish
            return 0.05
        return (self._window[0][0] + WINDOW_BUCKETS + 1) * width - now

    def _bucket_width(self) -> float:
        return self.settings.window_seconds / WINDOW_BUCKETS

    def _count(self, now: float) -> None:
        if self.settings.window_limit:
            bucket = int(now / self._bucket_width())
            if self._window and self._window[-1][0] == bucket:
                self._window[-1] = (bucket, self._window[-1][1] + 1)
            else:
                self._window.append((bucket, 1))
            self._in_window += 1

    def observed_rate(self) -> float:
        """Messages per second started over the last couple of seconds."""
        self._forget_before(self.monotonic() - RECENT_SECONDS)
        return len(self._recent) / RECENT_SECONDS

    def _forget_before(self, moment: float) -> None:
        while self._recent and self._recent[0] < moment:
            self._recent.popleft()

    def slow_down(self) -> bool:
        """A relay asked us to slow down: lower the ceiling by `slowdown_factor`. Answers
        within a second of the previous slow-down (the rest of a burst) change nothing.
        Returns whether the rate was lowered."""
        now = self.monotonic()
        if self._cap is not None and now - self._cap_since < SLOWDOWN_SPACING:
            return False
        current = self.rate()
        # Unlimited: start from what was actually going out (or one per connection).
        basis = (
            current if current is not None else self.observed_rate() or self.settings.concurrency
        )
        if self._cap is None:
            self._cap_ceiling = basis
        self._cap = max(MIN_RATE, basis * self.settings.slowdown_factor)
        self._cap_since = now
        self.slowdowns += 1
        return True

    def _recover(self) -> None:
        """Double the ceiling for each quiet `recover_seconds`; drop it once back at the top."""
        if self._cap is None:
            return
        now = self.monotonic()
        while self._cap is not None and now - self._cap_since >= self.settings.recover_seconds:
            self._cap_since += self.settings.recover_seconds
            self._cap *= 2
            if self._cap >= self._cap_ceiling:
                self._cap = None
