"""Optional DKIM signing (RFC 6376: rsa-sha256, relaxed/relaxed), per message: To, Message-ID
and the unsubscribe headers and links differ per recipient, and the receiver must see those
signed too, so each message has its own signature (only the canonical form of an edition's
header and body, placeholders and all, is made once: ``PreparedEdition.signed_parts``).

Why not dkimpy's ``dkim.sign``: it does RSA in pure Python, and its canonicalization with
regular expressions that try a match at every space. Measured on this machine (2 CPUs, a 19 KB
edition of seed 001, a 2048-bit key; ``python bench/sign.py``): dkimpy 6.2-8.4 ms a message
(120 msg/s; a signed send capped near 100-120 msg/s); this signer 0.31 ms, of which 0.22 ms is
OpenSSL's RSA through ``cryptography`` (as ``openssl speed rsa2048``: nothing left to gain
there) and 0.04 ms the body's canonicalization (dkimpy's: 0.38 ms). A signed send made about
1,200-1,900 msg/s against 4,400-6,200 unsigned: the RSA alone costs more than everything else
an unsigned message costs the sending loop, so reaching half the unsigned rate needs the
signing off that loop's thread (``cryptography`` signs without the GIL: 2 threads, 1.85x),
which pool.py does. dkimpy still checks these signatures in tests/test_dkim.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from briefcast.config import Settings

if TYPE_CHECKING:  # cryptography is imported (45 ms) only when a key is configured
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

# Oversigning: a header named here but absent is signed as absent, so nobody can add one.
# As with dkimpy's include_headers, each name is listed once in h=, present or not; a header
# present more than once is signed from its last instance up (RFC 6376 5.4.2).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"content-language",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"precedence",
)

MIN_KEY_BITS = 1024  # RFC 8301: verifiers refuse smaller keys
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")  # a header field's name, as dkimpy reads it
_FOLD = re.compile(rb"\r?\n")
_WSP = re.compile(rb"[ \t]+")
_SPACES = re.compile(rb"  +")  # a literal prefix: found by a fast search
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LINE = 76  # fold the signature header before this column


class DkimError(ValueError):
    """The DKIM settings cannot sign: one line saying why."""


class DkimSigner:
    """Signs messages with one RSA key, loaded (and checked) once."""

    def __init__(self, selector: str, domain: str, key: bytes) -> None:
        self.selector = _dns_name(selector, "selector")
        self.domain = _dns_name(domain, "domain")
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        self._key = _load_key(key)
        self._padding = padding.PKCS1v15()
        self._hash = hashes.SHA256()
        tags = [b"v=1", b"a=rsa-sha256", b"c=relaxed/relaxed"]
        tags += [b"d=" + self.domain, b"s=" + self.selector]
        # The tags that never change, folded once: "DKIM-Signature: v=1; ...;\r\n h=...;"
        self._head = _fold_tags(b"DKIM-Signature:", tags) + b";\r\n" + _fold_h(SIGNED_HEADERS)
        # What of it is signed, canonicalized once: the t= and bh= that follow continue it.
        self._signed_head = b"dkim-signature:" + _canonical_value(self._head.partition(b":")[2])

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        d = settings.delivery
        if not d.dkim_key_path:
            return None
        if not d.dkim_selector:
            raise DkimError("delivery.dkim_key_path is set but delivery.dkim_selector is not")
        domain = d.dkim_domain or settings.email.from_address.rpartition("@")[2]
        try:
            key = Path(d.dkim_key_path).expanduser().read_bytes()
        except OSError as exc:
            raise DkimError(f"cannot read the DKIM key {d.dkim_key_path}: {exc.strerror}") from exc
        return cls(d.dkim_selector, domain, key)

    def sign(self, message: bytes) -> bytes:
        """The ``DKIM-Signature:`` header (CRLF-terminated) to put before ``message``."""
        head, body = split(message)
        return self.sign_canonical(canonical_headers(head), canonical_body(body))

    def sign_canonical(self, headers: bytes, body: bytes) -> bytes:
        """:meth:`sign` of a message given its :func:`canonical_headers` and
        :func:`canonical_body`. The messages of one edition differ only where the recipient's
        address and token go, which canonicalizing does not touch: their canonical parts can
        be made once for all and filled in (``PreparedEdition.signed_parts``). That leaves
        the SHA-256 and the RSA, which run without the interpreter lock, and some 5 us that
        hold it (:meth:`sign` holds it some 70 us): the signing threads beside the sending
        loop (pool.py) hardly slow it down."""
        body_hash = base64.b64encode(hashlib.sha256(body).digest())
        tags = b" t=%d; bh=%s;" % (int(time.time()), body_hash)
        # The signature header itself, b= empty and no CRLF, goes last (RFC 6376 3.7).
        signed = headers + self._signed_head + tags + b" b="
        signature = base64.b64encode(self._key.sign(signed, self._padding, self._hash))
        return self._head + b"\r\n" + tags + b"\r\n b=" + _fold_value(signature, 3) + b"\r\n"


def split(message: bytes) -> tuple[bytes, bytes]:
    """A message's header fields (without the CRLF that ends the last) and its body, with
    CRLF line ends: a bare LF ends a line too, as for dkimpy."""
    if message.count(b"\n") != message.count(b"\r\n"):
        message = _FOLD.sub(b"\r\n", message)
    if message.startswith(b"\r\n"):
        return b"", message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:  # no body
        return message.removesuffix(b"\r\n"), b""
    return message[:end], message[end + 4 :]


def canonical_headers(head: bytes) -> bytes:
    """RFC 6376 3.4.2: the header fields to sign (``head``: as :func:`split` gives it), in
    h= order, relaxed: name lowercased, value unfolded, WSP runs made one space, CRLF after
    each."""
    return b"".join(
        name + b":" + _canonical_value(value) + b"\r\n"
        for name, value in _select(_fields(head), SIGNED_HEADERS)
    )


def canonical_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4, relaxed body canonicalization of a body with CRLF line ends.

    A literal search and ``bytes.replace`` wherever they do: a regular expression that starts
    with a space tries a match at every space, and a newsletter is full of them (dkimpy's
    three expressions take 0.38 ms on an edition's body, these steps 0.04 ms)."""
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _SPACES.sub(b" ", body)  # a run of WSP becomes one space
    # Now at most one space ends a line, after something that is not a space.
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    if body.endswith(b" "):  # a last line without CRLF, which DATA will end with one
        body = body[:-1]
    end = len(body)
    while end >= 2 and body.startswith(b"\r\n", end - 2):
        end -= 2  # empty lines at the end are ignored
    if end == 0:
        return b""
    return body if end == len(body) - 2 else body[:end] + b"\r\n"


def _canonical_value(value: bytes) -> bytes:
    """RFC 6376 3.4.2: a header value unfolded, WSP runs made one space, stripped."""
    if b"\n" in value:
        value = _FOLD.sub(b"", value)
    if b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", value)
    return value.strip()


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields in order: (lowercase name, raw value, still folded)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n") if head else ():
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise DkimError("the message starts with a folded header line")
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif m := _FIELD.match(line):
            fields.append((m[1].lower(), line[m.end() :]))
        elif not line.startswith(b"From "):  # an mbox separator, skipped as dkimpy does
            raise DkimError(f"not a header line: {line[:40]!r}")
    return fields


def _select(
    fields: list[tuple[bytes, bytes]], names: tuple[bytes, ...]
) -> list[tuple[bytes, bytes]]:
    """The instances of ``names`` to sign, in h= order: for a name listed again, the instance
    above the one signed before it; an absent one signs nothing (RFC 6376 5.4.2)."""
    chosen = []
    last: dict[bytes, int] = {}
    for name in names:
        i = last.get(name, len(fields))
        while i > 0:
            i -= 1
            if fields[i][0] == name:
                chosen.append(fields[i])
                break
        last[name] = i
    return chosen


def _fold_tags(start: bytes, tags: list[bytes]) -> bytes:
    """``start`` then the tags, "; "-separated, folded before column _LINE."""
    out, column = start, len(start)
    for i, tag in enumerate(tags):
        piece = (b"; " if i else b" ") + tag
        if i and column + len(piece) > _LINE:
            out += b";\r\n " + tag
            column = 1 + len(tag)
        else:
            out += piece
            column += len(piece)
    return out


def _fold_h(names: tuple[bytes, ...]) -> bytes:
    """`` h=from:to:...;`` folded at the colons (FWS is allowed around them)."""
    out = b" h="
    column = len(out)
    for i, name in enumerate(names):
        piece = (b":" if i else b"") + name
        if i and column + len(piece) + 1 > _LINE:
            out += b":\r\n " + name
            column = 1 + len(name)
        else:
            out += piece
            column += len(piece)
    return out + b";"


def _fold_value(value: bytes, column: int) -> bytes:
    """A base64 value folded before column _LINE (its FWS is ignored by verifiers)."""
    first = _LINE - column
    chunks = [value[:first]]
    chunks += [value[i : i + _LINE - 1] for i in range(first, len(value), _LINE - 1)]
    return b"\r\n ".join(chunks)


def _dns_name(value: str, what: str) -> bytes:
    try:
        name = value.encode("idna") if not value.isascii() else value.encode("ascii")
    except UnicodeError as exc:
        raise DkimError(f"the DKIM {what} {value!r} is not a domain name") from exc
    if not _DNS_NAME.fullmatch(name.decode("ascii")):
        raise DkimError(f"the DKIM {what} {value!r} is not a domain name")
    return name


def _load_key(pem: bytes) -> RSAPrivateKey:
    """The RSA private key of a PEM file (PKCS#1 or PKCS#8), checked by signing once: a bad
    key must stop the run before the first message, not at each one."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # encrypted
        raise DkimError(f"the DKIM key cannot be read: {exc}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DkimError(f"the DKIM key is not a PEM private key: {first}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "unknown"
        raise DkimError(f"the DKIM key is not an RSA key ({kind}): rsa-sha256 needs one")
    if key.key_size < MIN_KEY_BITS:
        raise DkimError(f"the DKIM key has {key.key_size} bits: receivers need {MIN_KEY_BITS}+")
    try:
        probe = b"briefcast DKIM key check"
        signature = key.sign(probe, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
    except Exception as exc:
        raise DkimError(f"the DKIM key cannot sign: {exc}") from exc
    return key
