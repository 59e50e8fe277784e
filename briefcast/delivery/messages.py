"""Each recipient's DATA bytes, from the prepared editions, DKIM-signed when a key is set:
the same for a live send and a test send."""

from __future__ import annotations

from briefcast.delivery.dkim import DkimSigner
from briefcast.delivery.prepared import PreparedEdition, dot_stuff


class Messages:
    """Builds each recipient's DATA bytes from the prepared editions (and signs them)."""

    def __init__(self, editions: dict[str, PreparedEdition], dkim: DkimSigner | None) -> None:
        self.editions = editions
        self.dkim = dkim

    def data(self, edition: str, to: str, token: str) -> bytes:
        prepared = self.editions[edition]
        if self.dkim is None:
            return prepared.wire(to, token)
        raw = prepared.render(to, token)
        return dot_stuff(self.dkim.sign(raw) + raw)
