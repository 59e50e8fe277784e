"""When a network says "too many requests" lifts: the headers the three networks use.

``Retry-After`` (RFC 9110: seconds, or an HTTP date) and the reset headers (a number: Unix
time when it is large, else seconds from now). Dates are the server's clock: ``skew`` (our
clock minus the server's ``Date``) moves them onto ours.
"""

from __future__ import annotations

import math
from datetime import UTC
from email.utils import parsedate_to_datetime

EPOCH_FLOOR = 1_000_000_000  # a reset at least this large is a Unix time, smaller a wait


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


def retry_after(text: str | None, now: float, skew: float = 0.0) -> float | None:
    """``Retry-After``: seconds from ``now``, or the server's date moved by ``skew``."""
    seconds = number(text)
    if seconds is not None:
        return now + seconds
    when = http_date((text or "").strip())
    return when + skew if when is not None else None


def reset(text: str | None, now: float, skew: float = 0.0) -> float | None:
    """A reset header's number: the server's Unix time (moved by ``skew``) when it is large,
    else seconds from ``now``."""
    value = number(text)
    if value is None:
        return None
    return value + skew if value >= EPOCH_FLOOR else now + value
