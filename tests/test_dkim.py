"""DKIM signing (briefcast.delivery.dkim): RSA through ``cryptography``, relaxed/relaxed
canonicalization of our own, and every signature checked by dkimpy's ``dkim.verify`` with a
DNS function that returns the public key's TXT record."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from delivery_helpers import SECRET, make_settings
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st

from briefcast.delivery import tokens
from briefcast.delivery.dkim import SIGNED_HEADERS, DkimError, DkimSigner, canonical_body
from briefcast.delivery.messages import Messages
from briefcast.delivery.prepared import PreparedEdition
from briefcast.render.email import EmailEdition

SELECTOR = "brief2026"
DOMAIN = "example.org"
DnsFunc = Callable[..., bytes]

PLAIN = (
    b"From: Europolitiche Brief <briefs@example.org>\r\n"
    b"To: reader@example.net\r\n"
    b"Subject: Paris summit\r\n"
    b"Date: Wed, 07 Jan 2026 18:23:00 +0100\r\n"
    b"Message-ID: <paris.en.abc123@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Leaders from 35 countries met in Paris.\r\n"
)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(private_key: object, fmt: serialization.PrivateFormat) -> bytes:
    return private_key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def signer(key: rsa.RSAPrivateKey) -> DkimSigner:
    return DkimSigner(SELECTOR, DOMAIN, pem(key, serialization.PrivateFormat.PKCS8))


@pytest.fixture(scope="module")
def dns(key: rsa.RSAPrivateKey) -> DnsFunc:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record

    return lookup


def signed(signer: DkimSigner, message: bytes) -> bytes:
    return signer.sign(message) + message


def verifies(message: bytes, dns: DnsFunc) -> bool:
    return bool(dkim.verify(message, dnsfunc=dns))


# --- signatures dkimpy accepts -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PKCS8", "TraditionalOpenSSL"], ids=["pkcs8", "pkcs1"])
def test_plain_message_verifies(key: rsa.RSAPrivateKey, dns: DnsFunc, fmt: str) -> None:
    one = DkimSigner(SELECTOR, DOMAIN, pem(key, getattr(serialization.PrivateFormat, fmt)))
    header = one.sign(PLAIN)
    assert header.startswith(b"DKIM-Signature: ") and header.endswith(b"\r\n")
    assert header.count(b"\n") == header.count(b"\r\n")
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))  # RFC 5322's SHOULD
    assert verifies(header + PLAIN, dns)


def test_signature_names_every_signed_header_even_absent(signer: DkimSigner) -> None:
    header = signer.sign(PLAIN)
    h = re.search(rb"[;\s]h=([^;]*);", header)
    assert h is not None
    assert tuple(re.split(rb"\s*:\s*", h[1].strip())) == SIGNED_HEADERS
    tags = dict(t.strip().split(b"=", 1) for t in header.partition(b":")[2].split(b";"))
    assert tags[b"a"] == b"rsa-sha256" and tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == SELECTOR.encode()


def test_body_hash_is_dkimpys(key: rsa.RSAPrivateKey, signer: DkimSigner) -> None:
    ours = re.search(rb"bh=([^;]+);", signer.sign(PLAIN))
    theirs = re.search(
        rb"bh=([^;]+);",
        dkim.sign(
            PLAIN,
            SELECTOR.encode(),
            DOMAIN.encode(),
            pem(key, serialization.PrivateFormat.TraditionalOpenSSL),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        ),
    )
    assert ours is not None and theirs is not None and ours[1] == theirs[1]


def recipient_messages(
    mails: list[EmailEdition], dkim_signer: DkimSigner
) -> list[tuple[bytes, bytes]]:
    """Each edition as Messages.data sends it, signed, un-dot-stuffed back to the message;
    with the recipient's unsubscribe token."""
    editions = {m.edition: PreparedEdition.from_edition(m) for m in mails}
    messages = Messages(editions, dkim_signer)
    out = []
    for i, edition in enumerate(editions, start=1):
        token = tokens.sign(SECRET, i)
        data = messages.data(edition, f"reader{i}@example.net", token)
        assert data.endswith(b"\r\n.\r\n")
        out.append((data[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n."), token.encode()))
    return out


def test_briefcast_editions_verify(
    brief_and_mails: tuple[str, list[EmailEdition]], signer: DkimSigner, dns: DnsFunc
) -> None:
    _, mails = brief_and_mails
    messages = recipient_messages(mails, signer)
    assert len(messages) == 3
    for message, token in messages:
        assert message.startswith(b"DKIM-Signature:")
        assert verifies(message, dns)
        # The per-recipient parts are signed: the unsubscribe header and the body's links.
        tampered = message.replace(b"unsubscribe%20", b"unsubscribe%20x", 1)
        assert tampered != message and not verifies(tampered, dns)
        head, _, body = message.partition(b"\r\n\r\n")
        assert token in body
        other = body.replace(token, token[:-1] + (b"A" if token[-1:] != b"A" else b"B"), 1)
        assert not verifies(head + b"\r\n\r\n" + other, dns)


def test_folded_headers_and_odd_whitespace_verify(signer: DkimSigner, dns: DnsFunc) -> None:
    message = (
        b"From:   Europolitiche Brief\t <briefs@example.org>   \r\n"
        b"To:\treader@example.net\r\n"
        b"Subject: A subject folded\r\n"
        b"  over   three\r\n"
        b"\t lines  \t\r\n"
        b"Date: Wed, 07 Jan 2026 18:23:00 +0100\r\n"
        b"X-Unsigned:    whatever\r\n"
        b"List-Unsubscribe: <https://briefs.example.org/unsubscribe/abc>,\r\n"
        b" <mailto:unsubscribe@example.org?subject=unsubscribe%20abc>\r\n"
        b"\r\n"
        b"body\r\n"
    )
    assert verifies(signed(signer, message), dns)
    # Relaxed: refolding and changing whitespace runs in transit keeps the signature valid.
    mangled = signed(signer, message).replace(
        b"A subject folded\r\n  over   three", b"A   subject\r\n folded over three"
    )
    assert verifies(mangled, dns)
    assert not verifies(mangled.replace(b"folded over", b"folded, over"), dns)


def test_trailing_blank_lines_and_whitespace_verify(signer: DkimSigner, dns: DnsFunc) -> None:
    head = PLAIN.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    body = (
        b"  Indented line with trailing spaces   \r\n"
        b"tabs\tinside\t\tand at the end\t\r\n"
        b"   \r\n"
        b"\r\n"
        b"last line \t \r\n"
        b"\r\n"
        b" \t\r\n"
        b"\r\n"
    )
    message = signed(signer, head + body)
    assert verifies(message, dns)
    # Empty lines and trailing whitespace at the end are not part of the signed body ...
    assert verifies(message.removesuffix(b" \t\r\n\r\n") + b"\r\n", dns)
    assert verifies(message + b"\r\n\r\n", dns)
    # ... but the text is.
    assert not verifies(message.replace(b"last line", b"last  line!"), dns)


def test_empty_body_and_lf_line_ends_verify(signer: DkimSigner, dns: DnsFunc) -> None:
    head = PLAIN.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert verifies(signed(signer, head + b"\r\n"), dns)
    assert verifies(signed(signer, head), dns)  # no body at all
    lf = PLAIN.replace(b"\r\n", b"\n")
    assert verifies(signed(signer, lf), dns)
    assert verifies(signer.sign(lf) + PLAIN, dns)  # as the relay passes it on


def test_header_present_twice_is_signed_bottom_up(signer: DkimSigner, dns: DnsFunc) -> None:
    message = PLAIN.replace(
        b"Subject: Paris summit\r\n", b"Subject: first\r\nX-Other: 1\r\nSubject: second\r\n"
    )
    done = signed(signer, message)
    assert verifies(done, dns)
    # h= names subject once: the last instance is the one signed (RFC 6376 5.4.2).
    assert not verifies(done.replace(b"Subject: second", b"Subject: changed"), dns)
    assert verifies(done.replace(b"Subject: first", b"Subject: changed"), dns)


# --- tampering fails ----------------------------------------------------------------------------


def test_tampered_body_fails(signer: DkimSigner, dns: DnsFunc) -> None:
    done = signed(signer, PLAIN)
    assert not verifies(done.replace(b"35 countries", b"36 countries"), dns)
    assert not verifies(done + b"P.S. an added line\r\n", dns)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: Paris summit", b"Subject: Paris summit!"),
        (b"To: reader@example.net", b"To: other@example.net"),
        (b"Message-ID: <paris.en.abc123", b"Message-ID: <paris.en.abc124"),
        (b"Content-Type: text/plain", b"Content-Type: text/html"),
    ],
)
def test_tampered_signed_header_fails(
    signer: DkimSigner, dns: DnsFunc, old: bytes, new: bytes
) -> None:
    done = signed(signer, PLAIN)
    assert verifies(done, dns)
    assert not verifies(done.replace(old, new), dns)


@pytest.mark.parametrize(
    "added",
    [b"Reply-To: phish@example.com", b"List-Unsubscribe: <https://example.com/x>"],
)
def test_oversigned_absent_header_added_later_fails(
    signer: DkimSigner, dns: DnsFunc, added: bytes
) -> None:
    done = signed(signer, PLAIN)
    assert b"Reply-To" not in PLAIN and b"List-Unsubscribe" not in PLAIN
    head, _, body = done.partition(b"\r\n\r\n")
    assert not verifies(head + b"\r\n" + added + b"\r\n\r\n" + body, dns)
    # A header that is not signed may be added (relays add Received and the like).
    assert verifies(head + b"\r\nX-Relay: 1\r\n\r\n" + body, dns)


# --- the canonical body: dkimpy's, on anything -----------------------------------------------

_LINE = st.text(alphabet=" \ta.é<>", max_size=12).map(lambda s: s.encode())


@given(st.lists(_LINE, max_size=8))
def test_canonical_body_is_dkimpys(lines: list[bytes]) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    assert canonical_body(body) == Relaxed.canonicalize_body(body)


def test_canonical_body_examples() -> None:
    assert canonical_body(b"") == b""
    assert canonical_body(b"\r\n\r\n") == b""
    assert canonical_body(b"a  \t b \r\n\r\n \r\n") == b"a b\r\n"
    assert canonical_body(b" x\r\n") == b" x\r\n"
    assert canonical_body(b"no line end  ") == b"no line end\r\n"  # DATA adds the CRLF


# --- keys and settings that cannot sign ---------------------------------------------------------


def test_from_settings(key: rsa.RSAPrivateKey, tmp_path: Path, dns: DnsFunc) -> None:
    assert DkimSigner.from_settings(make_settings()) is None
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem(key, serialization.PrivateFormat.TraditionalOpenSSL))
    made = DkimSigner.from_settings(make_settings(dkim_selector=SELECTOR, dkim_key_path=str(path)))
    assert made is not None and made.domain == b"example.org"  # the From address's domain
    assert verifies(signed(made, PLAIN), dns)


def test_missing_key_file_or_selector(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(DkimError, match="cannot read the DKIM key"):
        DkimSigner.from_settings(make_settings(dkim_selector=SELECTOR, dkim_key_path=missing))
    with pytest.raises(DkimError, match="dkim_selector is not"):
        DkimSigner.from_settings(make_settings(dkim_key_path=missing))


def one_line(exc: pytest.ExceptionInfo[DkimError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize(
    "other",
    [lambda: ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate],
    ids=["ec", "ed25519"],
)
def test_non_rsa_key_is_refused(other: Callable[[], object]) -> None:
    with pytest.raises(DkimError) as exc:
        DkimSigner(SELECTOR, DOMAIN, pem(other(), serialization.PrivateFormat.PKCS8))
    assert "not an RSA key" in one_line(exc)


def test_unusable_keys_are_refused(key: rsa.RSAPrivateKey) -> None:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    for bad in (b"", b"not a key", public, encrypted):
        with pytest.raises(DkimError) as exc:
            DkimSigner(SELECTOR, DOMAIN, bad)
        assert "DKIM key" in one_line(exc)


@pytest.mark.parametrize(
    ("selector", "domain"), [("bad selector", DOMAIN), (SELECTOR, "x.org; h=to")]
)
def test_header_injection_through_names_is_refused(
    signer: DkimSigner, selector: str, domain: str, key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(DkimError, match="not a domain name"):
        DkimSigner(selector, domain, pem(key, serialization.PrivateFormat.PKCS8))
