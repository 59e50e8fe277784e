"""The return path (VERP): each message's envelope sender names its row of the ledger.

A relay that accepts a message and fails to deliver it later sends the bounce (a DSN) to the
envelope sender, the SMTP ``MAIL FROM``. With ``bounces+<token>@domain`` there, the bounce
says by its own address which delivery it is about, whatever the remote server wrote in it:
the token is the delivery's id, signed (:func:`briefcast.delivery.tokens.sign_return`), so it
is checked without the database and cannot be made for another delivery.

The template is ``[bounces] return_path`` (``{token}`` where the token goes), by default
``bounces+{token}@`` the domain of ``[email] from_address``: the same domain as the From
address, which keeps SPF aligned for DMARC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from briefcast.config import Settings
from briefcast.delivery import tokens

TOKEN = "{token}"
_TOKEN = re.compile(r"(?<![A-Za-z0-9])" + tokens.RETURN_TOKEN + r"(?![A-Za-z0-9])", re.IGNORECASE)


def template(settings: Settings) -> str:
    """The return-path template: ``[bounces] return_path``, or ``bounces+{token}@<From
    domain>``."""
    if settings.bounces.return_path:
        return settings.bounces.return_path
    return "bounces+" + TOKEN + "@" + settings.email.from_address.rpartition("@")[2]


class ReturnPath:
    """Makes each delivery's return path, and finds and checks the tokens in text."""

    def __init__(self, template: str, secret: str) -> None:
        if template.count(TOKEN) != 1:
            raise ValueError(f"the return path must contain {TOKEN} once: {template!r}")
        self.template = template
        self._prefix, _, self._suffix = template.partition(TOKEN)
        self._secret = secret
        self._sign = tokens.return_signer(secret)

    @classmethod
    def from_settings(cls, settings: Settings, secret: str) -> ReturnPath:
        return cls(template(settings), secret)

    def address(self, delivery_id: int) -> str:
        """The envelope sender of one delivery's message."""
        return self._prefix + self._sign(delivery_id) + self._suffix

    def deliveries(self, text: str) -> Iterator[tuple[str, int | None]]:
        """Every return-path token in ``text``: (the token, its delivery id, or None when
        its signature is wrong: a forgery, or another secret). Found by their own shape,
        in any case (a local part may have been lower-cased, or upper-cased) and wherever
        they are (inside <...>, after "rfc822;"), whatever template they were sent with:
        the signature is what counts, and a template changed since must not lose them."""
        for m in _TOKEN.finditer(text):
            token = m[0]
            yield token, tokens.verify_return(self._secret, token)
