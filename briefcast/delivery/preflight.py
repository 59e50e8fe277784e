"""What a send needs before it starts, checked before anything is built.

A live send needs the secret that signs every subscriber's unsubscribe link; either kind of
send needs a DKIM key that can sign, when one is configured. ``DeliveryError`` is what a
send that cannot start (or cannot go on) raises.
"""

from __future__ import annotations

from briefcast.config import Settings
from briefcast.delivery.dkim import DkimError, DkimSigner
from briefcast.errors import BriefcastError

SECRET_ENV = "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET"


class DeliveryError(BriefcastError):
    """Sending cannot start: ``str(error)`` is one line for the editor."""


def unsubscribe_secret(settings: Settings) -> str:
    secret = settings.delivery.unsubscribe_secret
    value = secret.get_secret_value() if secret else ""
    if not value.strip():
        raise DeliveryError(
            f"{SECRET_ENV} is not set: it signs every subscriber's unsubscribe link"
        )
    return value


def check_ready(settings: Settings) -> None:
    """Everything a live send needs that can be checked before anything is built."""
    unsubscribe_secret(settings)
    try:
        DkimSigner.from_settings(settings)
    except DkimError as exc:
        raise DeliveryError(str(exc)) from exc
