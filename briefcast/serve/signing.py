"""What the pages sign with the unsubscribe secret: confirmation links and CSRF tokens.

Each kind has its own purpose prefix inside the HMAC, so neither can pass for the other nor
for an unsubscribe token (:mod:`briefcast.delivery.tokens`), though one secret signs all.

**Confirmation tokens**: ``<subscriber id>.<language>.<expiry>.<HMAC>``, the expiry in Unix
seconds, the HMAC (SHA-256, 128 bits) over those three and the subscriber's address. It names
its subscriber and the edition asked for, stops working at its expiry, and stops working if
the row's address is no longer the one it was sent to (a purged id used again).

**CSRF**: a signed double-submit cookie. The browser gets a random value, signed by us, in a
cookie (HttpOnly, SameSite=Strict; over https Secure and named ``__Host-``); each form carries
the HMAC of that value and of the form's address. A value we did not sign is replaced.
Another site can make a browser post a form, but can neither read the cookie nor compute its
HMAC without the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import NamedTuple

from briefcast.delivery import tokens

_CONFIRM = b"briefcast-confirm-v1:"
_CSRF = b"briefcast-csrf-v1:"
_CSRF_COOKIE = b"briefcast-csrf-cookie-v1:"
_SIG_BYTES = 16
_CONFIRM_TOKEN = re.compile(
    r"([1-9][0-9]{0,18})\.([a-z]{2}|both)\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})"
)
_COOKIE_VALUE = re.compile(r"([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{22})")


def _mac(secret: bytes, purpose: bytes, *parts: str) -> str:
    mac = hmac.new(secret, purpose + "\x00".join(parts).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:_SIG_BYTES]).rstrip(b"=").decode()


class Confirmation(NamedTuple):
    subscriber_id: int
    language: str
    expires: int
    signature: str

    @property
    def expired(self) -> bool:
        return time.time() > self.expires

    def signed_for(self, secret: bytes, email: str) -> bool:
        expected = _mac(
            secret, _CONFIRM, str(self.subscriber_id), self.language, str(self.expires), email
        )
        return hmac.compare_digest(expected, self.signature)


def confirmation(secret: bytes, subscriber_id: int, email: str, language: str, ttl: float) -> str:
    expires = int(time.time() + ttl)
    signature = _mac(secret, _CONFIRM, str(subscriber_id), language, str(expires), email)
    return f"{subscriber_id}.{language}.{expires}.{signature}"


def parse_confirmation(token: str) -> Confirmation | None:
    """The token's parts if it has the shape of one; its signature is checked against the
    subscriber's address by :meth:`Confirmation.signed_for`."""
    m = _CONFIRM_TOKEN.fullmatch(token)
    # The id is looked up before the signature can be checked (it signs the address): one
    # larger than any row's would overflow SQLite's integer there, a 500 instead of a 404.
    if m is None or int(m[1]) > tokens.MAX_ID:
        return None
    return Confirmation(int(m[1]), m[2], int(m[3]), m[4])


# --- CSRF -----------------------------------------------------------------------------------

# Over https the cookie has the __Host- prefix: browsers then accept it only with Secure,
# Path=/ and no Domain, so a sibling subdomain (or a man in the middle of a plain-http page)
# cannot plant one of its own ("cookie tossing"), as OWASP's CSRF cheat sheet advises. Over
# plain http (loopback, tests) browsers refuse Secure cookies and hence the prefix: there the
# name is unprefixed and the cookie not Secure, as the editor's session cookie does.
CSRF_COOKIE = "bc_csrf"
CSRF_COOKIE_HTTPS = "__Host-bc_csrf"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 7 * 86_400


def csrf_cookie_name(https: bool) -> str:
    return CSRF_COOKIE_HTTPS if https else CSRF_COOKIE


def _csrf_cookie_mac(secret: bytes, nonce: str) -> str:
    return _mac(secret, _CSRF_COOKIE, nonce)


def csrf_issued(secret: bytes, cookie: str | None) -> bool:
    """Whether the cookie's value is one this server issued (its nonce signed): a value the
    client made up is never signed into a form token (the signed double-submit pattern)."""
    if cookie is None:
        return False
    m = _COOKIE_VALUE.fullmatch(cookie)
    return m is not None and hmac.compare_digest(_csrf_cookie_mac(secret, m[1]), m[2])


def csrf_cookie_value(secret: bytes, current: str | None) -> tuple[str, bool]:
    """The browser's CSRF cookie value, and whether it is new (to be set): the one it has
    if we issued it, else a fresh one."""
    if csrf_issued(secret, current):
        assert current is not None
        return current, False
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_csrf_cookie_mac(secret, nonce)}", True


def csrf_token(secret: bytes, cookie: str, action: str) -> str:
    return _mac(secret, _CSRF, cookie, action)


def csrf_valid(secret: bytes, cookie: str | None, action: str, given: str | None) -> bool:
    if not cookie or not given or not csrf_issued(secret, cookie):
        return False
    return hmac.compare_digest(csrf_token(secret, cookie, action), given)
