"""Which language a piece of text is in: from an explicit code, or detected."""

from __future__ import annotations

from functools import cache

import pycountry
from py3langid.langid import MODEL_FILE, LanguageIdentifier


def iso639_1(code: str) -> str | None:
    """``ENG``/``eng``/``en``/``FRA``/``fre`` -> ``en``/``fr``; None when no such language."""
    code = code.strip().lower()
    if len(code) == 2:
        lang = pycountry.languages.get(alpha_2=code)
    elif len(code) == 3:
        lang = pycountry.languages.get(alpha_3=code) or pycountry.languages.get(bibliographic=code)
    else:
        lang = None
    return getattr(lang, "alpha_2", None) if lang else None


@cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect(text: str) -> str:
    lang, _ = _identifier().classify(text)
    return str(lang)
