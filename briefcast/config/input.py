"""``[input]``: how much a brief or a subscriber CSV may be, and the languages text may be in."""

from __future__ import annotations

from pydantic import Field

from briefcast.config.fields import Detectable, Section


class InputSettings(Section):
    max_bytes: int = Field(2_000_000, gt=0, le=100_000_000)  # a brief file
    max_csv_bytes: int = Field(200_000_000, gt=0, le=10_000_000_000)  # a subscriber CSV
    # Besides the site's languages, what unmarked text may be recognised as.
    detect_languages: Detectable = ["en", "it", "fr", "de", "es"]  # noqa: RUF012 (pydantic copies it)
