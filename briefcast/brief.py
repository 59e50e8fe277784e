"""The Brief: what every reader produces and every builder consumes.

A Brief checks itself when made, whoever makes it (a reader, the archive, a test): its id is
a slug, so it is safe as a folder name, a URL path and a Prefect artifact key; its one-line
fields (titles, summaries, tags, publisher, footer lines) hold no line breaks, control or
bidi-override characters; no text holds characters XML or UTF-8 cannot carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
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


def _lines(lines: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(line for line in map(one_line, lines) if line)


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
    ORDERED_ITEM = "ordered_item"  # ``number`` is the item's number
    QUOTE = "quote"
    TABLE = "table"  # ``rows``: the header row first
    IMAGE = "image"  # one image span alone in its paragraph: the text is its alt text
    NOTE = "note"  # a footnote, numbered ``number``, after the section's text


# The only link targets a brief's link may have: anything else (javascript:, data:, a relative
# path that means nothing in an inbox) is shown as its text. Images must be on the web: an
# email carries no relative path, and a mail client fetches only http(s).
LINK_SCHEMES = ("http://", "https://", "mailto:")
IMAGE_SCHEMES = ("http://", "https://")
HREF_MAX = 4096  # twitter-text's (and idna's) longest URL; browsers take more, readers less


def safe_href(href: str, schemes: tuple[str, ...] = LINK_SCHEMES) -> str:
    """``href`` when a reader may follow it, else "" (the span is then plain text)."""
    href = href.strip()
    ok = href.lower().startswith(schemes) and len(href) <= HREF_MAX
    return href if ok and not _UNCARRIABLE.search(href) and not _BREAKS.search(href) else ""


@dataclass(frozen=True, slots=True)
class Span:
    """A run of a block's text with one inline style: Markdown's own constructs, never HTML.

    ``href`` is a checked link target (``safe_href``); an image is a span whose ``text`` is
    its alt text and ``href`` its source; a footnote reference has no text, only ``note``.
    """

    text: str
    href: str = ""
    strong: bool = False
    em: bool = False
    code: bool = False
    image: bool = False
    note: int = 0  # the footnote this span refers to (1, 2, ...); 0: none
    first_ref: bool = True  # the note's first reference (the one its back-link returns to)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "text", clean_text(self.text))
        set_(self, "href", safe_href(self.href, IMAGE_SCHEMES if self.image else LINK_SCHEMES))

    def to_dict(self) -> dict[str, Any]:
        defaults = _SPAN_DEFAULTS
        return {k: v for k in Span.__slots__ if (v := getattr(self, k)) != defaults.get(k)}


# What to_dict leaves out: each field's default, read off the class (written once, there).
_SPAN_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Span) if f.default != MISSING}

Cells = tuple[tuple[Span, ...], ...]


def _cells(block: Block) -> Iterator[Span]:
    return (span for row in block.rows for cell in row for span in cell)


def spans_text(spans: tuple[Span, ...]) -> str:
    """What a reader reads of the spans: their text, footnote references left out."""
    return "".join(s.text for s in spans)


@dataclass(frozen=True, slots=True)
class Block:
    """One paragraph, heading, list item, quote, table, image or footnote of a section.

    ``text`` is always the block's plain text (what social posts, summaries and the
    language detector read); ``spans`` and ``rows``, when given, carry its inline markup.
    """

    kind: BlockKind
    text: str
    spans: tuple[Span, ...] = ()
    rows: tuple[Cells, ...] = ()  # TABLE only
    number: int = 0  # ORDERED_ITEM, NOTE

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(self.text))

    @property
    def inline(self) -> tuple[Span, ...]:
        """The spans to render: the block's own, or its text as one plain span."""
        return self.spans or (Span(self.text),)

    def after(self, rest: str) -> Block:
        """This block less its opening, ``rest`` being what is left of its text: the spans
        are cut the same way, so that a link or emphasis in the rest stays one."""
        if not self.spans:
            return replace(self, text=rest)
        drop = len(self.text) - len(rest)
        spans: list[Span] = []
        for span in self.spans:
            if drop > 0:
                if len(span.text) <= drop:  # wholly in the opening (a note ref there too)
                    drop -= len(span.text)
                    continue
                span = replace(span, text=span.text[drop:].lstrip())
                drop = 0
            spans.append(span)
        return replace(self, text=rest, spans=tuple(spans))

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.spans:
            out["spans"] = [s.to_dict() for s in self.spans]
        if self.rows:
            out["rows"] = [[[s.to_dict() for s in cell] for cell in row] for row in self.rows]
        if self.number:
            out["number"] = self.number
        return out

    @classmethod
    def from_list(cls, item: list[Any]) -> Block:
        kind, text, *more = item
        extra = more[0] if more else {}
        return cls(
            BlockKind(kind),
            text,
            spans=tuple(Span(**s) for s in extra.get("spans", ())),
            rows=tuple(
                tuple(tuple(Span(**s) for s in cell) for cell in row)
                for row in extra.get("rows", ())
            ),
            number=int(extra.get("number", 0)),
        )


@dataclass(frozen=True, slots=True)
class Section:
    """The brief's text in one language (ISO 639-1 code, e.g. ``en``, ``it``)."""

    lang: str
    blocks: tuple[Block, ...]
    title: str | None = None
    summary: str | None = None
    tags: tuple[str, ...] = ()  # this language's own, when the brief gives tags per language
    footer: tuple[str, ...] = ()  # likewise the disclaimer

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", _one_line_or_none(self.title))
        object.__setattr__(self, "summary", _one_line_or_none(self.summary))
        object.__setattr__(self, "tags", _lines(self.tags))
        object.__setattr__(self, "footer", _lines(self.footer))

    @property
    def lede(self) -> str:
        """The first paragraph: the teaser when the section has no summary."""
        lede = self.lede_block
        if lede is not None:
            return lede.text
        return self.blocks[0].text if self.blocks else ""

    @property
    def lede_block(self) -> Block | None:
        return next((b for b in self.blocks if b.kind is BlockKind.PARAGRAPH), None)


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
    byline: str | None = None  # who wrote it: shown with the date in every channel
    source: str = ""  # file name it was read from
    digest: str = ""  # sha256 of the source bytes
    # Mailed to every subscriber (front matter ``audience: everyone``), not only to those
    # who read a language it is written in (briefcast.delivery.audience).
    to_everyone: bool = False
    link: str | None = None  # social posts' link: "first" (the brief's first) or an address
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # The brief states no date: ``date`` is when it was first seen, given by ``dated``.
    date_assigned: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        check_id(self.id)
        set_ = object.__setattr__
        set_(self, "title", one_line(self.title))
        set_(self, "summary", _one_line_or_none(self.summary))
        set_(self, "publisher", _one_line_or_none(self.publisher))
        set_(self, "byline", _one_line_or_none(self.byline))
        set_(self, "tags", _lines(self.tags))
        set_(self, "footer", _lines(self.footer))

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

    def post_link(self, lang: str, page: str) -> str:
        """What a social post in ``lang`` links to (its card): ``page``, the brief's web
        page, unless the brief chose its first link ("first") or an address of its own."""
        if self.link == "first":
            s = self.section(lang)
            spans = (span for b in (s.blocks if s else ()) for span in (*b.spans, *_cells(b)))
            links = (x.href for x in spans if not x.image and x.href.startswith(IMAGE_SCHEMES))
            return next(links, page)
        return self.link or page

    def tags_in(self, lang: str) -> tuple[str, ...]:
        """The tags shown in ``lang``: its own when given per language, else all of them."""
        s = self.section(lang)
        return s.tags if s and s.tags else self.tags

    def footer_in(self, lang: str) -> tuple[str, ...]:
        s = self.section(lang)
        return s.footer if s and s.footer else self.footer

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
        lede = s.lede_block
        own = s.summary or self.summary
        if lede is None:
            return s.blocks
        if own and lede.text != own:
            rest = after_headline(lede.text, self.title_in(lang))
            if rest == lede.text:
                return s.blocks
            if rest:
                return tuple(b.after(rest) if b is lede else b for b in s.blocks)
        return tuple(b for b in s.blocks if b is not lede)

    def standfirst_block(self, lang: str) -> Block | None:
        """The lede, when it is the standfirst word for word: shown with its links and
        emphasis (a standfirst of the brief's own is one line of plain text)."""
        s = self.section(lang)
        if s is None or s.summary or self.summary:
            return None
        lede = s.lede_block
        return lede if lede is not None and self.summary_in(lang) == lede.text else None

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
            "byline": self.byline,
            "to_everyone": self.to_everyone,
            "link": self.link,
            "source": self.source,
            "digest": self.digest,
            "sections": [
                {
                    "lang": s.lang,
                    "title": s.title,
                    "summary": s.summary,
                    "tags": list(s.tags),
                    "footer": list(s.footer),
                    # [kind, text] as before inline markup was kept; a third item, when
                    # there is one, holds the spans, rows and number (Block.extra).
                    "blocks": [
                        [b.kind.value, b.text, *([x] if (x := b.extra()) else [])] for b in s.blocks
                    ],
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
            byline=d.get("byline"),
            to_everyone=bool(d.get("to_everyone", False)),
            link=d.get("link"),
            source=d.get("source", ""),
            digest=d.get("digest", ""),
            sections=tuple(
                Section(
                    lang=s["lang"],
                    title=s.get("title"),
                    summary=s.get("summary"),
                    tags=tuple(s.get("tags", ())),
                    footer=tuple(s.get("footer", ())),
                    blocks=tuple(Block.from_list(b) for b in s["blocks"]),
                )
                for s in d["sections"]
            ),
        )
