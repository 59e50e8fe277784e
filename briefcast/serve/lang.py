"""Which of the site's languages a visitor reads, from their browser's Accept-Language."""

from __future__ import annotations

from collections.abc import Sequence

_MAX_ITEMS = 32  # a header is a few languages; the rest of a longer one is not read


def pick(header: str | None, languages: Sequence[str]) -> str:
    """The site language the header prefers most (``it-IT`` counts as ``it``, ``*`` as the
    first language); the first language when it names none of them."""
    best, best_q = languages[0], 0.0
    if not header:
        return best
    for item in header.split(",")[:_MAX_ITEMS]:
        tag, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if not 0 < q <= 1 or q <= best_q:  # ties: the one named first
            continue
        code = tag.strip().lower().partition("-")[0]
        if code == "*":
            best, best_q = languages[0], q
        elif code in languages:
            best, best_q = code, q
    return best
