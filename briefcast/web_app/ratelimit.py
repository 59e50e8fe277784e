"""Token buckets in memory: a burst, then a steady rate, per key (a client address, an email
address).

One set of buckets per process: with ``--workers N`` each worker counts on its own, so a
client may get up to N times the rate (run one worker, or put a limit in the proxy in front).
Memory is bounded: at most ``max_keys`` buckets. When full, the buckets that have filled up
again are forgotten first (forgetting one changes nothing: a new bucket starts full); only
if none has, the least recently used goes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class Buckets:
    def __init__(self, burst: int, per_hour: float, max_keys: int) -> None:
        self.burst = float(burst)
        self.rate = per_hour / 3600.0  # tokens per second
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (tokens, when)
        self._lock = threading.Lock()
        self._swept = float("-inf")

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is there."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, when = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now)
                return 0.0
            self._store(key, tokens, now)
            return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.max_keys and now - self._swept >= 1.0:
            self._swept = now  # a sweep looks at every bucket: at most one a second
            full = [
                k for k, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst
            ]
            for k in full:
                del self._buckets[k]
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)
        self._buckets[key] = (tokens, now)
