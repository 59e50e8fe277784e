"""The security headers every response carries, as ASGI header pairs built once.

Two Content-Security-Policies: the published site's pages (written by the publish, with
their CSS inline in a ``<style>`` element) may use inline styles; the subscribe and
unsubscribe pages (ours, CSS in ``/_serve/serve.css``) may not. Neither may run any script.
HSTS only over https: sent over plain http it would be meaningless (and a browser ignores
it), and behind a proxy the scheme is the proxy's only when ``[serve] trust_proxy`` says so.
"""

from __future__ import annotations

from collections.abc import Iterable

Header = tuple[bytes, bytes]

_COMMON = (
    "default-src 'none'; img-src 'self' data:; font-src 'self'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SITE_CSP = _COMMON + "; style-src 'self' 'unsafe-inline'; connect-src 'self'"
FORMS_CSP = _COMMON + "; style-src 'self'"

HSTS: Header = (b"strict-transport-security", b"max-age=31536000")


def security(csp: str, referrer: str) -> tuple[Header, ...]:
    return (
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", referrer.encode()),
    )


# The site's pages may send a visitor's browser elsewhere with the origin as referrer; the
# forms' pages carry tokens in their URLs, which must never leave in a Referer.
SITE: tuple[Header, ...] = security(SITE_CSP, "strict-origin-when-cross-origin")
FORMS: tuple[Header, ...] = security(FORMS_CSP, "no-referrer")
FORMS_NAMES = frozenset(name for name, _ in FORMS)


def with_hsts(headers: Iterable[Header], scheme: str) -> list[Header]:
    out = list(headers)
    if scheme == "https":
        out.append(HSTS)
    return out
