"""``[delivery]``: live sending: pool, pace, retries, bounces, DKIM."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from briefcast.config.fields import DAY, Section, seconds_field


class DeliverySettings(Section):
    """Live sending (``publish --send``): pool, pace, retries, bounces, DKIM."""

    pool_size: int = Field(4, ge=1, le=100)  # SMTP connections kept open and reused
    rate_per_second: float = Field(0, ge=0, le=100_000, allow_inf_nan=False)  # 0: no pacing
    hourly_cap: int = Field(0, ge=0)  # 0: no cap; counts every brief's sends
    batch_size: int = Field(1000, ge=1, le=100_000)  # subscribers read, ledger rows written
    max_attempts: int = Field(5, ge=1, le=100)  # per message, over all runs; then given up
    backoff_seconds: list[Annotated[float, Field(ge=0, le=DAY, allow_inf_nan=False)]] = Field(
        default=[60, 300, 900, 3600], min_length=1
    )
    # A run waits for deferred retries due this soon; later ones are left to a re-run.
    retry_window_seconds: float = seconds_field(900, ge=0)
    timeout_seconds: float = seconds_field(60, gt=0)  # per SMTP read or write
    hard_bounce_threshold: int = Field(3, ge=1, le=1000)  # then the subscriber is bounced
    # Another run sending the same brief: wait this long for it to finish, then refuse.
    lock_wait_seconds: float = seconds_field(10, ge=0)
    dkim_selector: str | None = None
    dkim_domain: str | None = None  # default: the From address's domain
    dkim_key_path: str | None = None  # PEM private key; DKIM signing only when set
    # From BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET only: signs the unsubscribe tokens.
    unsubscribe_secret: SecretStr | None = None
