"""Token buckets in memory: a burst, then a steady rate, per key (a client address, an email
address).

One set of buckets per process: with ``--workers N`` each worker counts on its own, so a
client may get up to N times the rate (run one worker, or put a limit in the proxy in front).
Memory is bounded: at most ``max_keys`` buckets. When full, the buckets that have filled up
again are forgotten first (forgetting one changes nothing: a new bucket starts full); only
if none has, the least recently used goes.
"""

from __future__ import annotations

import ipaddress
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


def address_key(address: str) -> str:
    """What the per-address limit counts: one mailbox. Sub-addresses (``x+1@``, ``x+2@``)
    reach the same one at Gmail, Fastmail, Proton, Outlook and with Postfix's and Exim's
    usual settings, so the tag is dropped; a domain has no case (RFC 5321), and the local
    part is compared as subscribers are stored, lower-cased."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address.casefold()
    return f"{local.partition('+')[0] or local}@{domain}".casefold()


def client_key(host: str) -> str:
    """What the per-client limit counts: an IPv4 address, or an IPv6 address's /64. An ISP
    gives a customer at least a /64 (RFC 6177), and one host picks any address in it at will
    (privacy addresses, RFC 8981): counting each address would let one client have 2**64
    buckets. Anything else (a Unix socket's name) counts as it is."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
