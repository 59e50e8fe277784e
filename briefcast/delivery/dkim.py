"""Optional DKIM signing with dkimpy, per message (To, Message-ID and the unsubscribe headers
differ per recipient, and the receiver must see those signed too).

dkimpy does RSA in pure Python: about 8 ms per message with a 2048-bit key on this machine,
which caps a DKIM-signed send near 120 messages/s. Relays that sign for you are faster.
"""

from __future__ import annotations

from pathlib import Path

from briefcast.config import Settings

# Oversigning: a header named here but absent is signed as absent, so nobody can add one.
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


class DkimError(ValueError):
    """The DKIM settings cannot sign: one line saying why."""


class DkimSigner:
    def __init__(self, selector: str, domain: str, key: bytes) -> None:
        import dkim  # dkimpy: imported only when a key is configured

        self._dkim = dkim
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self._key = key
        try:  # a bad key must stop the run before the first message, not at each one
            self.sign(b"From: a@example.org\r\nSubject: key check\r\n\r\nbody\r\n")
        except Exception as exc:
            raise DkimError(f"the DKIM key cannot sign: {exc}") from exc

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
        signature: bytes = self._dkim.sign(
            message,
            self.selector,
            self.domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
            linesep=b"\r\n",
        )
        return signature
