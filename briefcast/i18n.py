"""Per-language words and dates. Languages are data: one TOML file each in templates/i18n/.

A site's ``[site] templates_dir`` may have an ``i18n/`` folder too: its ``<lang>.toml``
files change our words key by key (a file with just ``unsubscribe = "Leave"`` is enough)
and may add languages.
"""

from __future__ import annotations

import difflib
import tomllib
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime

from briefcast.errors import ConfigError
from briefcast.resources import templates_root

FALLBACK = "en"


@cache
def strings(lang: str, templates_dir: Path | None = None) -> dict[str, str]:
    """The words for ``lang``; keys missing there fall back to English. With a site's
    ``templates_dir``: ours in English, the site's in English, ours in ``lang``, the site's
    in ``lang``, each key from the last that has it."""
    ours = templates_root() / "i18n"
    words: dict[str, str] = tomllib.loads((ours / f"{FALLBACK}.toml").read_text("utf-8"))
    known = set(words)
    for code in dict.fromkeys((FALLBACK, lang)):
        if code != FALLBACK and (ours / f"{code}.toml").is_file():
            words |= tomllib.loads((ours / f"{code}.toml").read_text("utf-8"))
        if templates_dir is not None:
            words |= _site_words(templates_dir / "i18n" / f"{code}.toml", known)
    return words


def _site_words(path: Path, known: set[str]) -> dict[str, str]:
    """A site's word file, if it has one: strings under our keys, or a one-line error."""
    if not path.is_file():
        return {}
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: is not valid TOML: {exc}") from None
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise ConfigError(f'{path}: unknown key "{key}"{hint}')
        if not isinstance(value, str):
            raise ConfigError(f'{path}: "{key}" must be a string')
    return data


def t(lang: str, key: str, /, *, templates_dir: Path | None, **values: str) -> str:
    """The word ``key`` in ``lang``, its ``{placeholders}`` filled from ``values``; the site's
    words first when ``templates_dir`` (``settings.site.templates_dir``) is set."""
    text = strings(lang, templates_dir)[key]
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        if templates_dir is None:
            raise  # our own words: a bug
        allowed = ", ".join(f"{{{name}}}" for name in values) or "none"
        why = f"{{{exc.args[0]}}} is no placeholder of it" if isinstance(exc, KeyError) else exc
        raise ConfigError(
            f'{templates_dir / "i18n"}: "{key}" in {lang}, {text!r}: {why} '
            f"(the placeholders it may use: {allowed})"
        ) from None


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
