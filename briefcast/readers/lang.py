"""Which language a piece of text is in: from an explicit code, or detected."""

from __future__ import annotations

from functools import cache

import pycountry
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

from briefcast.config import Settings


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
def _detector(candidates: tuple[str, ...]) -> LanguageDetector:
    # Only the candidate languages' models are loaded, in low-accuracy mode: ~30 MB
    # instead of the ~150 MB a model of every language costs (the sender shares the process).
    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in candidates]
    return LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode().build()


def detect(text: str, settings: Settings) -> str:
    """The most likely language of ``text`` among the site's languages and
    ``input.detect_languages``; the site's first language when nothing is recognisable."""
    candidates = tuple(dict.fromkeys([*settings.site.languages, *settings.input.detect_languages]))
    found = _detector(candidates).detect_language_of(text)
    return found.iso_code_639_1.name.lower() if found else candidates[0]
