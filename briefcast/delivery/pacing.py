"""Pacing a send: a rate (messages per second) and an hourly cap, over all connections.

Both answer "may a message start now?" without blocking: the sending loop drives every
connection from one thread, so a wait is a timeout for its next turn, never a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class RateLimiter:
    """At most ``per_second`` messages, evenly spaced."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._clock = clock

    def reserve(self) -> float:
        """0 and a slot taken, or the seconds until the next slot (nothing taken)."""
        if not self._interval:
            return 0.0
        now = self._clock()
        if now < self._next:
            return self._next - now
        # No credit piles up while idle: the next slot counts from now, so no bursts.
        self._next = now + self._interval
        return 0.0


class HourlyCap:
    """At most ``cap`` messages in any rolling ``window`` seconds (an hour).

    Counts per minute, not per message, so memory stays small at any cap; it rounds the
    safe way (a message leaves the count a full window after it was sent, or later).
    """

    def __init__(
        self,
        cap: int,
        *,
        window: float = 3600.0,
        buckets: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cap = cap
        self._width = window / buckets
        self._buckets = buckets
        self._counts: dict[int, int] = {}
        self._clock = clock

    def seed(self, times: Iterable[float]) -> None:
        """Messages sent before this run (the relay counted them too)."""
        for when in times:
            key = int(when // self._width)
            self._counts[key] = self._counts.get(key, 0) + 1

    def used(self) -> int:
        self._expire(int(self._clock() // self._width))
        return sum(self._counts.values())

    def reserve(self) -> float:
        """0 and a slot taken, or the seconds until a slot frees up (nothing taken)."""
        if not self.cap:
            return 0.0
        now = self._clock()
        current = int(now // self._width)
        self._expire(current)
        if sum(self._counts.values()) < self.cap:
            self._counts[current] = self._counts.get(current, 0) + 1
            return 0.0
        return max(0.01, (min(self._counts) + self._buckets + 1) * self._width - now)

    def _expire(self, current: int) -> None:
        for key in [k for k in self._counts if k < current - self._buckets]:
            del self._counts[key]
