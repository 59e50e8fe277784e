"""The Brief: what every reader produces and every builder consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any


class BlockKind(StrEnum):
    PARAGRAPH = "paragraph"
    SUBHEADING = "subheading"
    LIST_ITEM = "list_item"
    QUOTE = "quote"


@dataclass(frozen=True, slots=True)
class Block:
    kind: BlockKind
    text: str


@dataclass(frozen=True, slots=True)
class Section:
    """The brief's text in one language (ISO 639-1 code, e.g. ``en``, ``it``)."""

    lang: str
    blocks: tuple[Block, ...]
    title: str | None = None
    summary: str | None = None

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
        """Standfirst for ``lang``: the section's own, else the brief's, else the lede."""
        s = self.section(lang)
        if s and s.summary:
            return s.summary
        if self.summary:
            return self.summary
        return s.lede if s else ""

    def dated(self, when: datetime) -> Brief:
        return self if self.date else replace(self, date=when)

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
