"""Per-language words and dates. Languages are data: one TOML file each in templates/i18n/."""

from __future__ import annotations

import tomllib
from datetime import datetime
from functools import cache

from babel import Locale
from babel.dates import format_date, format_datetime

from briefcast.config import TEMPLATES_DIR

I18N_DIR = TEMPLATES_DIR / "i18n"
FALLBACK = "en"


@cache
def strings(lang: str) -> dict[str, str]:
    """The words for ``lang``; keys missing there fall back to English."""
    base = tomllib.loads((I18N_DIR / f"{FALLBACK}.toml").read_text("utf-8"))
    path = I18N_DIR / f"{lang}.toml"
    if lang != FALLBACK and path.exists():
        base |= tomllib.loads(path.read_text("utf-8"))
    return base


def t(lang: str, key: str, **values: str) -> str:
    return strings(lang)[key].format(**values)


@cache
def language_name(code: str, in_lang: str) -> str:
    """``language_name("en", "it") == "inglese"``."""
    try:
        return Locale.parse(in_lang).languages.get(code, code)
    except (ValueError, LookupError):
        return code


def long_date(when: datetime, lang: str) -> str:
    """A date as people write it in ``lang``: "7 gennaio 2026", "January 7, 2026"."""
    return format_date(when, format="long", locale=lang)


def long_datetime(when: datetime, lang: str) -> str:
    return format_datetime(when, format="d MMMM y, HH:mm", locale=lang, tzinfo=when.tzinfo)
