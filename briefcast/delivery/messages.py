"""Each recipient's DATA bytes, from the prepared editions, DKIM-signed when a key is set:
the same for a live send and a test send."""

from __future__ import annotations

from briefcast.delivery.dkim import DkimSigner
from briefcast.delivery.prepared import PreparedEdition


class Messages:
    """Builds each recipient's DATA bytes from the prepared editions (and signs them).

    Thread-safe: a signed send makes its messages in threads ahead of the sending loop."""

    def __init__(self, editions: dict[str, PreparedEdition], dkim: DkimSigner | None) -> None:
        self.editions = editions
        self.dkim = dkim

    def data(self, edition: str, to: str, token: str) -> bytes:
        prepared = self.editions[edition]
        if self.dkim is None:
            return prepared.wire(to, token)
        # The signature is of render(to, token), body canonicalized once per edition; it goes
        # before wire(to, token), that message already dot-stuffed once per edition: the
        # signature header needs no stuffing (its folded lines start with a space).
        signature = self.dkim.sign_canonical(*prepared.signed_parts(to, token))
        return signature + prepared.wire(to, token)
