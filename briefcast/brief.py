"""The Brief: what every reader produces and every builder consumes.

A Brief checks itself when made, whoever makes it (a reader, the archive, a test): its id is
a slug, so it is safe as a folder name, a URL path and a Prefect artifact key; its one-line
fields (titles, summaries, tags, publisher, footer lines) hold no line breaks, control or
bidi-override characters; no text holds characters XML or UTF-8 cannot carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

# Lower-case ASCII letters and digits in dash-separated words: "paris-summit-2026".
ID_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
ID_MAX = 80
ID_RULE = (
    f"an id is lower-case letters a-z, digits and single dashes between them, at most "
    f"{ID_MAX} characters (e.g. paris-summit-2026)"
)

# Never valid in XML 1.0 or as UTF-8: C0/C1 controls (tab and line feed aside), lone
# surrogates (YAML's "\ud800" makes one), U+FFFE and U+FFFF.
_UNCARRIABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# In a one-line field, besides those: line and paragraph breaks of every kind become spaces,
# and bidi embeddings, overrides and isolates go (they can make a subject read backwards).
_BREAKS = re.compile(r"[\t\n\x0b\x0c\r\x85\u2028\u2029]+")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


class InvalidBrief(ValueError):
    """A Brief that breaks a rule above; readers add the file's name."""


def check_id(value: str) -> str:
    if len(value) > ID_MAX or not ID_PATTERN.fullmatch(value):
        raise InvalidBrief(f"id {value[: ID_MAX + 20]!r} is not valid: {ID_RULE}")
    return value


def clean_text(text: str) -> str:
    """Body text: characters no output can carry removed, line structure kept."""
    return _UNCARRIABLE.sub("", text)


def one_line(text: str) -> str:
    """A title, summary or tag: one line, single spaces, nothing invisible that steers it."""
    text = _BIDI.sub("", _UNCARRIABLE.sub("", _BREAKS.sub(" ", text)))
    return " ".join(text.split())


def _one_line_or_none(text: str | None) -> str | None:
    return (one_line(text) or None) if text is not None else None


def after_headline(text: str, headline: str) -> str:
    """``text`` less the headline it opens with (whole words only: "Paris" is not the start
    of "Parisians"), or all of it when it does not open with the headline."""
    if not headline or not text.startswith(headline):
        return text
    rest = text[len(headline) :]
    return rest.strip() if not rest or rest[0].isspace() else text


class BlockKind(StrEnum):
    PARAGRAPH = "paragraph"
    SUBHEADING = "subheading"
    LIST_ITEM = "list_item"
    QUOTE = "quote"


@dataclass(frozen=True, slots=True)
class Block:
    kind: BlockKind
    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(self.text))


@dataclass(frozen=True, slots=True)
class Section:
    """The brief's text in one language (ISO 639-1 code, e.g. ``en``, ``it``)."""

    lang: str
    blocks: tuple[Block, ...]
    title: str | None = None
    summary: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", _one_line_or_none(self.title))
        object.__setattr__(self, "summary", _one_line_or_none(self.summary))

    @property
    def lede(self) -> str:
        """The first paragraph: the teaser when the section has no summary."""
        for block in self.blocks:
            if block.kind is BlockKind.PARAGRAPH:
                return block.text
        return self.blocks[0].text if self.blocks else ""


@dataclass(frozen=True, slots=True)
class Brief:
    id: str
    title: str
    date: datetime | None  # timezone-aware; None when the brief states none
    sections: tuple[Section, ...]
    tags: tuple[str, ...] = ()
    summary: str | None = None  # standfirst not tied to one section's language
    footer: tuple[str, ...] = ()  # disclaimer lines, shown after the body in every language
    publisher: str | None = None
    source: str = ""  # file name it was read from
    digest: str = ""  # sha256 of the source bytes
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # The brief states no date: ``date`` is when it was first seen, given by ``dated``.
    date_assigned: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        check_id(self.id)
        set_ = object.__setattr__
        set_(self, "title", one_line(self.title))
        set_(self, "summary", _one_line_or_none(self.summary))
        set_(self, "publisher", _one_line_or_none(self.publisher))
        set_(self, "tags", tuple(t for t in map(one_line, self.tags) if t))
        set_(self, "footer", tuple(line for line in map(one_line, self.footer) if line))

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(s.lang for s in self.sections)

    def section(self, lang: str) -> Section | None:
        for s in self.sections:
            if s.lang == lang:
                return s
        return None

    def title_in(self, lang: str) -> str:
        s = self.section(lang)
        return (s.title if s and s.title else None) or self.title

    def summary_in(self, lang: str) -> str:
        """Standfirst for ``lang``: the section's own, else the brief's, else the lede (less
        its first sentence when that sentence is already the headline)."""
        s = self.section(lang)
        if s and s.summary:
            return s.summary
        if self.summary:
            return self.summary
        if not s:
            return ""
        return after_headline(s.lede, self.title_in(lang))

    def body_in(self, lang: str) -> tuple[Block, ...]:
        """The section's blocks as printed under the standfirst: without the lede when the
        standfirst is made from it, and without the headline when the lede opens with it
        (an untitled brief's headline is its first sentence), so no sentence is printed
        twice."""
        s = self.section(lang)
        if s is None:
            return ()
        lede = next((b for b in s.blocks if b.kind is BlockKind.PARAGRAPH), None)
        own = s.summary or self.summary
        if lede is None:
            return s.blocks
        if own and lede.text != own:
            rest = after_headline(lede.text, self.title_in(lang))
            if rest == lede.text:
                return s.blocks
            if rest:
                return tuple(replace(b, text=rest) if b is lede else b for b in s.blocks)
        return tuple(b for b in s.blocks if b is not lede)

    def dated(self, when: datetime) -> Brief:
        return self if self.date else replace(self, date=when, date_assigned=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "date": self.date.isoformat() if self.date else None,
            "tags": list(self.tags),
            "summary": self.summary,
            "footer": list(self.footer),
            "publisher": self.publisher,
            "source": self.source,
            "digest": self.digest,
            "sections": [
                {
                    "lang": s.lang,
                    "title": s.title,
                    "summary": s.summary,
                    "blocks": [[b.kind.value, b.text] for b in s.blocks],
                }
                for s in self.sections
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Brief:
        return cls(
            id=d["id"],
            title=d["title"],
            date=datetime.fromisoformat(d["date"]) if d.get("date") else None,
            tags=tuple(d.get("tags", ())),
            summary=d.get("summary"),
            footer=tuple(d.get("footer", ())),
            publisher=d.get("publisher"),
            source=d.get("source", ""),
            digest=d.get("digest", ""),
            sections=tuple(
                Section(
                    lang=s["lang"],
                    title=s.get("title"),
                    summary=s.get("summary"),
                    blocks=tuple(Block(BlockKind(k), t) for k, t in s["blocks"]),
                )
                for s in d["sections"]
            ),
        )
