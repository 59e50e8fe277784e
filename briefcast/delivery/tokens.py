"""Unsubscribe tokens: ``<subscriber id>.<HMAC>``, one per subscriber, unforgeable.

The token rides in the unsubscribe URL, the mailto subject and the Message-ID, so it uses
only characters that need no escaping in any of them (digits, ``.``, base64url). It names
its subscriber and nobody else: changing the id breaks the signature, and without the
secret (from the environment) nobody can sign another id.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re

# Domain separation: the same secret may one day sign other things.
_PURPOSE = b"briefcast-unsubscribe-v1:"
_SIG_BYTES = 16  # 128 bits: far beyond guessing, and keeps header lines short
_TOKEN = re.compile(r"([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{22})")


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    # Keyed once: copying it is cheaper than keying HMAC again for every subscriber.
    return hmac.new(secret, _PURPOSE, hashlib.sha256)


def _signature(secret: bytes, subscriber_id: int) -> str:
    mac = _keyed(secret).copy()
    mac.update(str(subscriber_id).encode())
    return base64.urlsafe_b64encode(mac.digest()[:_SIG_BYTES]).rstrip(b"=").decode()


def sign(secret: str | bytes, subscriber_id: int) -> str:
    if subscriber_id < 1:
        raise ValueError("subscriber ids start at 1")
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the unsubscribe secret is empty")
    return f"{subscriber_id}.{_signature(key, subscriber_id)}"


def verify(secret: str | bytes, token: str) -> int | None:
    """The subscriber id the token was signed for, or None for anything else."""
    key = secret.encode() if isinstance(secret, str) else secret
    m = _TOKEN.fullmatch(token.strip())
    if not key or not m:
        return None
    subscriber_id = int(m[1])
    expected = _signature(key, subscriber_id)
    return subscriber_id if hmac.compare_digest(expected, m[2]) else None
