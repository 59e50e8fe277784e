"""``[smtp]``: the relay the newsletter goes through."""

from __future__ import annotations

from pydantic import Field, SecretStr

from briefcast.config.fields import Section


class SmtpSettings(Section):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65_535)
    starttls: bool = True
    tls: bool = False
    user: str | None = None
    password: SecretStr | None = None  # from BRIEFCAST_SMTP__PASSWORD only
