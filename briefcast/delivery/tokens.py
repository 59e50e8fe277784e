"""Signed tokens: ``<id>.<HMAC>``, each naming one row and nobody else, unforgeable.

Two kinds, from the same secret (``BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET``), kept apart by
the purpose each signature starts with, so that one kind can never pass for the other:

- the **unsubscribe token** (:func:`sign`, :func:`verify`) names a subscriber. It rides in
  the unsubscribe URL, the mailto subject and the Message-ID, so it uses only characters that
  need no escaping in any of them (digits, ``.``, base64url).
- the **return-path token** (:func:`sign_return`, :func:`verify_return`) names a row of the
  delivery ledger: it is the variable part of each message's envelope sender (VERP,
  ``bounces+<token>@domain``), where a late bounce comes back to. A local part may be
  lower-cased on the way (it should not be, but some systems do), so this one is digits,
  ``.`` and lower-case hexadecimal only, and is read in any case.

Changing an id breaks its signature, and without the secret nobody can sign another id.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Callable

# Domain separation: one secret signs both kinds.
_PURPOSE = b"briefcast-unsubscribe-v1:"
_RETURN_PURPOSE = b"briefcast-return-path-v1:"
_SIG_BYTES = 16  # 128 bits: far beyond guessing, and keeps header lines short
# 80 bits: guessing one means sending a report per guess to our own mailbox; and the address
# stays short (a local part is at most 64 characters).
_RETURN_SIG_BYTES = 10
_ID = r"([1-9][0-9]{0,18})"
# The largest id a row can have (SQLite's integer, PostgreSQL's bigint): a token naming more
# is not one of ours, and is refused before a look-up that would overflow (SQLite raises).
MAX_ID = 2**63 - 1
_TOKEN = re.compile(_ID + r"\.([A-Za-z0-9_-]{22})")
RETURN_TOKEN = _ID + r"\.([0-9a-f]{20})"  # a pattern to find one in text (case-insensitive)
_RETURN_TOKEN = re.compile(RETURN_TOKEN, re.IGNORECASE)


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes, purpose: bytes) -> hmac.HMAC:
    # Keyed once: copying it is cheaper than keying HMAC again for every message.
    return hmac.new(secret, purpose, hashlib.sha256)


def _digest(secret: bytes, purpose: bytes, row_id: int, size: int) -> bytes:
    mac = _keyed(secret, purpose).copy()
    mac.update(str(row_id).encode())
    return mac.digest()[:size]


def _signature(secret: bytes, subscriber_id: int) -> str:
    digest = _digest(secret, _PURPOSE, subscriber_id, _SIG_BYTES)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _return_signature(secret: bytes, delivery_id: int) -> str:
    # Hexadecimal: twice as fast to make as base32, and one case only.
    return _digest(secret, _RETURN_PURPOSE, delivery_id, _RETURN_SIG_BYTES).hex()


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _secret_key(secret: str | bytes) -> bytes:
    key = _key(secret)
    if not key:
        raise ValueError("the unsubscribe secret is empty")
    return key


def _sign(
    secret: str | bytes, row_id: int, what: str, signature: Callable[[bytes, int], str]
) -> str:
    if row_id < 1:
        raise ValueError(f"{what} ids start at 1")
    return f"{row_id}.{signature(_secret_key(secret), row_id)}"


def _verify(
    secret: str | bytes,
    token: str,
    pattern: re.Pattern[str],
    signature: Callable[[bytes, int], str],
    *,
    any_case: bool = False,
) -> int | None:
    key = _key(secret)
    m = pattern.fullmatch(token.strip())
    if not key or not m:
        return None
    row_id = int(m[1])
    if row_id > MAX_ID:
        return None
    given = m[2].lower() if any_case else m[2]
    return row_id if hmac.compare_digest(signature(key, row_id), given) else None


def sign(secret: str | bytes, subscriber_id: int) -> str:
    return _sign(secret, subscriber_id, "subscriber", _signature)


def verify(secret: str | bytes, token: str) -> int | None:
    """The subscriber id the token was signed for, or None for anything else."""
    return _verify(secret, token, _TOKEN, _signature)


def sign_return(secret: str | bytes, delivery_id: int) -> str:
    """The return-path token of one delivery (ledger row)."""
    return _sign(secret, delivery_id, "delivery", _return_signature)


def return_signer(secret: str | bytes) -> Callable[[int], str]:
    """:func:`sign_return` for one secret, keyed once: what the sender calls per message."""
    keyed = _keyed(_secret_key(secret), _RETURN_PURPOSE)

    def sign(delivery_id: int) -> str:
        if delivery_id < 1:
            raise ValueError("delivery ids start at 1")
        mac = keyed.copy()
        text = str(delivery_id)
        mac.update(text.encode())
        return f"{text}.{mac.digest()[:_RETURN_SIG_BYTES].hex()}"

    return sign


def verify_return(secret: str | bytes, token: str) -> int | None:
    """The delivery id a return-path token was signed for (in any case), or None."""
    return _verify(secret, token, _RETURN_TOKEN, _return_signature, any_case=True)
