"""An edition's message bytes, prepared once, then filled in per recipient by joining bytes.

The builder leaves ASCII placeholders for the only things that differ between recipients (the
To address; the unsubscribe token in the unsubscribe URL, the mailto and the Message-ID).
The Message-ID does not carry the token itself but an opaque id derived from it (see
:func:`opaque_id`): a Message-ID travels far (quoted in replies, forwarded, archived, in
spam reports), and the unsubscribe token is permanent.
Here the edition is split at them once, and dot-stuffed once for SMTP's DATA, so a recipient's
message costs one ``bytes.join``: no template, no MJML, no ``EmailMessage`` per recipient.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime
from functools import cached_property

from briefcast.delivery import dkim
from briefcast.render.email import TO_PLACEHOLDER, TOKEN_PLACEHOLDER, EmailEdition

_TO = TO_PLACEHOLDER.encode()
_TOKEN = TOKEN_PLACEHOLDER.encode()
# The Message-ID's own placeholder, put in place of the token's there (the builder writes
# one placeholder for both); no "." and no whitespace, like the others.
_MSGID = b"__BC_MSGID__"
_SPLIT = re.compile(
    b"(" + re.escape(_TO) + b"|" + re.escape(_TOKEN) + b"|" + re.escape(_MSGID) + b")"
)
_MESSAGE_ID_TOKEN = re.compile(rb"(?mi)^(Message-ID:[^\r\n]*?)" + re.escape(_TOKEN))
_OPAQUE = b"briefcast-message-id-v1:"


def opaque_id(message_id: str, token: str) -> str:
    """The Message-ID's per-recipient part: 128 bits of SHA-256 over the edition's Message-ID
    (its brief and edition) and the recipient's unsubscribe token. The token holds a 128-bit
    HMAC under the secret, so nobody without it can compute or invert this, and it tells
    neither the token nor the subscriber's id; it differs per brief and edition, so two
    messages are not linked by it. A bounce or a complaint naming it is matched to its
    delivery through the Message-ID the ledger records (:mod:`briefcast.bounces.record`)."""
    digest = hashlib.sha256(_OPAQUE + message_id.encode() + b"\x00" + token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


# SMTP DATA: a line starting with "." gets a second one, the receiver removes it (RFC 5321).
_LEADING_DOT = re.compile(rb"(?m)^\.")
_END_OF_DATA = b".\r\n"
_UNSAFE = re.compile(r"[\x00-\x20\x7f<>]")  # CR/LF would let an address inject headers


def dot_stuff(message: bytes) -> bytes:
    """The message as DATA sends it, ending with the lone-dot line."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return _LEADING_DOT.sub(b"..", message) + _END_OF_DATA


@dataclass(frozen=True, slots=True)
class _Template:
    pieces: tuple[bytes, ...]  # literal bytes, with the placeholders as separate pieces
    to_slots: tuple[int, ...]
    token_slots: tuple[int, ...]
    msgid_slots: tuple[int, ...]

    @classmethod
    def split(cls, data: bytes) -> _Template:
        pieces = tuple(_SPLIT.split(data))
        return cls(
            pieces,
            tuple(i for i, p in enumerate(pieces) if p == _TO),
            tuple(i for i, p in enumerate(pieces) if p == _TOKEN),
            tuple(i for i, p in enumerate(pieces) if p == _MSGID),
        )

    def fill(self, to: bytes, token: bytes, msgid: bytes) -> bytes:
        pieces = list(self.pieces)
        for i in self.to_slots:
            pieces[i] = to
        for i in self.token_slots:
            pieces[i] = token
        for i in self.msgid_slots:
            pieces[i] = msgid
        return b"".join(pieces)


class PreparedEdition:
    """One edition ready to send: ``render`` gives a recipient's message, ``wire`` the same
    message as DATA bytes (dot-stuffed, terminated)."""

    def __init__(self, edition: str, eml: bytes) -> None:
        if _TO not in eml or _TOKEN not in eml:
            raise ValueError(f"edition {edition}: the message has no per-recipient placeholders")
        if not eml.endswith(b"\r\n"):
            eml += b"\r\n"
        head, sep, body = eml.partition(b"\r\n\r\n")
        eml = _MESSAGE_ID_TOKEN.sub(lambda m: m[1] + _MSGID, head, count=1) + sep + body
        self.edition = edition
        self.eml = eml
        self._raw = _Template.split(eml)
        # Placeholders hold no "." and no line break, so stuffing before filling them in is
        # the same as stuffing each filled-in message, once instead of per recipient.
        self._wire = _Template.split(dot_stuff(eml))
        self._message_id = _header(eml, b"Message-ID").decode("ascii")

    @classmethod
    def from_edition(cls, mail: EmailEdition) -> PreparedEdition:
        return cls(mail.edition, mail.eml)

    def render(self, to: str, token: str) -> bytes:
        return self._raw.fill(*self._values(to, token))

    def wire(self, to: str, token: str) -> bytes:
        return self._wire.fill(*self._values(to, token))

    def _values(self, to: str, token: str) -> tuple[bytes, bytes, bytes]:
        to_bytes, token_bytes = _values(to, token)
        return to_bytes, token_bytes, opaque_id(self._message_id, token).encode("ascii")

    def signed_parts(self, to: str, token: str) -> tuple[bytes, bytes]:
        """What ``DkimSigner.sign_canonical`` signs of ``render(to, token)``: its header fields
        and its body canonicalized (RFC 6376 relaxed), canonicalized once per edition. The
        placeholders and what replaces them hold no whitespace and no line break, so filling
        them in after canonicalizing gives the same bytes as canonicalizing after."""
        values = self._values(to, token)
        if not all(values):  # an empty one could leave a space trailing
            head, body = dkim.split(self.render(to, token))
            return dkim.canonical_headers(head), dkim.canonical_body(body)
        head_template, body_template = self._signing
        return head_template.fill(*values), body_template.fill(*values)

    @cached_property
    def _signing(self) -> tuple[_Template, _Template]:
        head, body = dkim.split(self.eml)
        headers, body = dkim.canonical_headers(head), dkim.canonical_body(body)
        return _Template.split(headers), _Template.split(body)

    def message_id(self, token: str) -> str:
        return self._message_id.replace(_MSGID.decode(), opaque_id(self._message_id, token))

    def marked_test(self, subject: str) -> PreparedEdition:
        """The same edition with ``[TEST]`` before its subject, for --test-to."""
        # Header, not EmailMessage: the latter folds a subject starting "[" onto a line of
        # its own, which readers then show with a leading space.
        value = f"[TEST] {subject}"
        encoded = Header(value, None if value.isascii() else "utf-8", header_name="Subject")
        return self._with_header(b"Subject", encoded.encode(linesep="\r\n").encode("ascii"))

    def dated(self, when: datetime) -> PreparedEdition:
        """The same edition with ``Date`` set to ``when``: the moment a send begins.

        The preview's Date is the brief's date, and a send may go hours or days later (a
        scheduled approval, a re-run). RFC 5322 makes Date the moment the message entered
        the mail system; mail clients sort the inbox by it, and SpamAssassin scores a Date
        well before the Received headers (DATE_IN_PAST_*). Like To and the token, it is
        the message's envelope, not what the editor approved: the text is unchanged."""
        if when.tzinfo is None:
            raise ValueError("a Date needs a time zone")
        return self._with_header(b"Date", format_datetime(when.replace(microsecond=0)).encode())

    def _with_header(self, name: bytes, value: bytes) -> PreparedEdition:
        head, _, body = self.eml.partition(b"\r\n\r\n")
        line = name + b": " + value + b"\r\n"
        header = rb"(?mi)^" + re.escape(name) + rb":.*\r\n(?:[ \t].*\r\n)*"
        lines, found = re.subn(header, lambda _: line, head + b"\r\n", count=1)
        if not found:
            raise ValueError(f"edition {self.edition}: no {name.decode()} header to replace")
        return PreparedEdition(self.edition, lines + b"\r\n" + body)


def _values(to: str, token: str) -> tuple[bytes, bytes]:
    if _UNSAFE.search(to) or _UNSAFE.search(token) or token.startswith("."):
        raise ValueError(f"unsafe address or token: {to!r} {token!r}")
    # A non-ASCII address travels as UTF-8 (SMTPUTF8); everything else here is ASCII.
    return to.encode("utf-8"), token.encode("ascii")


def _header(message: bytes, name: bytes) -> bytes:
    head = message.partition(b"\r\n\r\n")[0]
    unfolded = re.sub(rb"\r\n(?=[ \t])", b"", head)
    m = re.search(rb"(?mi)^" + re.escape(name) + rb":[ \t]*([^\r\n]*?)[ \t]*\r?$", unfolded)
    if not m:
        raise ValueError(f"the message has no {name.decode()} header")
    return m[1]
