"""When a network says "too many requests" lifts: the headers the three networks use.

Every one of them is read by the shape of its value, never by its name alone, since servers
differ on what a name carries (``RateLimit-Reset`` is seconds in the IETF draft and in
Mastodon's Rack::Attack, a Unix time in some Mastodon-compatible servers; ``X-RateLimit-Reset``
an ISO 8601 date on Mastodon, a Unix time on X and GoToSocial; ``Retry-After`` seconds or an
HTTP date by RFC 9110): an HTTP date or an ISO 8601 date is a time; a number is a Unix time
when it is large (``EPOCH_FLOOR``), else seconds from now, as the IETF RateLimit draft
itself tells delta-seconds from a timestamp. Dates are the server's clock: ``skew`` (our clock
minus the server's ``Date``) moves them onto ours. How long is actually waited is capped by
the caller (``max_wait_seconds``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

EPOCH_FLOOR = 1_000_000_000  # a reset at least this large is a Unix time, smaller a wait
SKEW_NOISE = 2.0  # seconds: clocks closer than this are taken to agree


def number(text: str | None) -> float | None:
    """A non-negative, finite number, or None."""
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def http_date(text: str | None) -> float | None:
    """An HTTP date as Unix time (a date without a zone is UTC), or None."""
    if not text:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def iso_date(text: str | None) -> float | None:
    """An ISO 8601 date as Unix time (without a zone: UTC), or None."""
    try:
        when = datetime.fromisoformat((text or "").strip())
    except ValueError:
        return None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def skew(date: str | None, now: float) -> float:
    """Our clock minus the server's, from its ``Date`` header (0 without one)."""
    server_now = http_date(date)
    if server_now is None:
        return 0.0
    difference = now - server_now
    # A Date is whole seconds and took a moment to arrive: a difference that small is that,
    # not a clock out of step.
    return difference if abs(difference) >= SKEW_NOISE else 0.0


def reset(text: str | None, now: float, skew: float = 0.0) -> float | None:
    """Any reset header (``Retry-After`` included) as Unix time on our clock, read by its
    value's shape (see the module's docstring); None when it is none of them."""
    value = number(text)
    if value is not None:
        return value + skew if value >= EPOCH_FLOOR else now + value
    when = http_date((text or "").strip())
    if when is None:
        when = iso_date(text)
    return when + skew if when is not None else None


def retry_after(text: str | None, now: float, skew: float = 0.0) -> float | None:
    """``Retry-After``: ``reset`` (RFC 9110's seconds or date; a Unix time is read as one)."""
    return reset(text, now, skew)


def reset_at(headers: Mapping[str, str], reset_header: str) -> float | None:
    """When a 429 says to try again: the network's own reset header (X's
    ``x-rate-limit-reset``, Bluesky's ``ratelimit-reset``), else ``Retry-After``, each read by
    its value's shape (``reset``), dates moved onto our clock by the answer's ``Date``. Names
    in any case: libraries hand headers over as they came, or lower-cased (atproto)."""
    now = time.time()
    named = {name.lower(): value for name, value in headers.items()}
    server = skew(named.get("date"), now)
    when = reset(named.get(reset_header.lower()), now, server)
    return when if when is not None else reset(named.get("retry-after"), now, server)


def utc(when: float, fmt: str = "%H:%M:%S UTC") -> str:
    """``when`` as a UTC time for a message; a reset too far to name (a server's nonsense)
    must not raise while an outcome is being recorded."""
    try:
        return datetime.fromtimestamp(when, UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return "a time too far to name"
