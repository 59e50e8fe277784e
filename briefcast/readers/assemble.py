"""The parts every reader finds, put together into one Brief the same way."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from slugify import slugify

from briefcast.brief import Block, Brief, InvalidBrief, Section, one_line
from briefcast.config import Settings
from briefcast.readers.blocks import has_letters, headline_from, to_blocks
from briefcast.readers.front_matter import YEAR_MAX, YEAR_MIN
from briefcast.readers.lang import detect, iso639_1
from briefcast.readers.source import BriefError, Source

# "EU/ENG - text": the desk's language markers; any ISO 639 code works (EU/FRA, EU/DEU).
MARKER = re.compile(r"^[A-Z]{2,4}/([A-Za-z]{2,3})\s*[-–—:]\s*")


@dataclass
class Parts:
    # (lang, lines) for the readers of plain text; (lang, blocks) for those that parse them
    sections: Sequence[tuple[str, list[str] | tuple[Block, ...]]]
    title: str | None = None
    date: datetime | None = None
    tags: list[str] = field(default_factory=list)
    summary: str | None = None
    footer: list[str] = field(default_factory=list)
    publisher: str | None = None
    brief_id: str | None = None
    titles: dict[str, str] = field(default_factory=dict)  # per language, where given
    summaries: dict[str, str] = field(default_factory=dict)
    byline: str | None = None
    section_tags: dict[str, list[str]] = field(default_factory=dict)  # per language, if given
    section_footers: dict[str, list[str]] = field(default_factory=dict)
    to_everyone: bool = False  # front matter "audience: everyone"
    link: str | None = None  # front matter "link:": "first" or an address


def split_marked(
    lines: list[str], settings: Settings
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Lines before the first marker, and one (lang, lines) per marked section."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in lines:
        m = MARKER.match(line)
        if m:
            rest = line[m.end() :]
            lang = iso639_1(m.group(1)) or detect(rest, settings)
            sections.append((lang, [rest] if rest else []))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return preamble, sections


def has_markers(lines: list[str]) -> bool:
    return any(MARKER.match(line) for line in lines)


def assemble(source: Source, parts: Parts, settings: Settings) -> Brief:
    sections: list[Section] = []
    for lang, lines in parts.sections:
        blocks = lines if isinstance(lines, tuple) else to_blocks(lines)
        if not any(has_letters(b.text) for b in blocks):
            continue
        existing = next((s for s in sections if s.lang == lang), None)
        if existing:  # a language marked twice: one section, in reading order
            sections[sections.index(existing)] = replace(existing, blocks=existing.blocks + blocks)
        else:
            sections.append(Section(lang=lang, blocks=blocks))
    if not sections:
        raise BriefError(source.path, "no usable text")
    order = {lang: i for i, lang in enumerate(settings.site.languages)}
    sections.sort(key=lambda s: order.get(s.lang, len(order)))

    titles = dict(parts.titles)
    summaries = dict(parts.summaries)
    brief_summary = None
    if parts.title:
        titles.setdefault(detect(parts.title, settings), parts.title)
    if parts.summary:
        lang = detect(parts.summary, settings)
        if any(s.lang == lang for s in sections):
            summaries.setdefault(lang, parts.summary)
        else:
            brief_summary = parts.summary
    if not parts.title and not titles:
        # No title anywhere: each language's headline is its own first sentence.
        titles = {s.lang: headline_from(s.lede) for s in sections}
    sections = [
        replace(
            s,
            title=titles.get(s.lang),
            summary=summaries.get(s.lang),
            tags=tuple(parts.section_tags.get(s.lang, ())),
            footer=tuple(parts.section_footers.get(s.lang, ())),
        )
        for s in sections
    ]
    title = (
        parts.title
        or next((s.title for s in sections if s.title), None)
        or headline_from(sections[0].lede)
    )

    if not one_line(title):  # every output needs one: a feed entry, a subject, a page <h1>
        raise BriefError(
            source.path, "the title is empty once line breaks and invisible characters go"
        )
    try:
        made = make_id(title) or f"brief-{source.digest[:12]}"
        return Brief(
            id=parts.brief_id or made,
            title=title,
            date=parts.date,
            sections=tuple(sections),
            tags=tuple(parts.tags),
            summary=brief_summary,
            footer=tuple(parts.footer),
            publisher=parts.publisher,
            byline=parts.byline,
            source=source.path.name,
            digest=source.digest,
            to_everyone=parts.to_everyone,
            link=parts.link,
            # The pipeline settles an id made here against the archive (settle_ids).
            extra={} if parts.brief_id else {ID_FROM_TITLE: legacy_id(title) or made},
        )
    except InvalidBrief as exc:
        raise BriefError(source.path, str(exc)) from None


def calendar_date(
    source: Source,
    settings: Settings,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
) -> datetime:
    """A date written in the text, in the site's time zone; one line when it is impossible
    (month 13, 31 February) or outside the years a brief can carry."""
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise BriefError(source.path, f"date: year {year} is outside {YEAR_MIN}-{YEAR_MAX}")
    try:
        return datetime(year, month, day, hour, minute, tzinfo=settings.site.tz)
    except ValueError as exc:
        stamp = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}"
        raise BriefError(source.path, f"date {stamp} does not exist ({exc})") from None


# Brief.extra's key for an id made from the title: the id the rule before made, which a
# brief published under it keeps (briefcast.pipeline.settle_ids).
ID_FROM_TITLE = "id_from_title"
ID_WORDS = 6
# Words an id does not end on: "met-in-paris-on" reads as cut mid-phrase (English, Italian).
_STOP_EN = "a an and as at by for from in into of on or the to with"
_STOP_IT = (
    "ad al alla alle agli ai col con da dal dalla dei del della delle degli di e ed fra gli "
    "i il in l la le lo d dall dell all nell sull nei nel nella nelle negli o per su sul sulla "
    "sui tra un una uno"
)
STOP_WORDS = frozenset(_STOP_EN.split()) | frozenset(_STOP_IT.split())


def make_id(title: str, max_chars: int = 60) -> str:
    """A short, readable id from the title: its first ID_WORDS words, less the stop words
    they end on, at most max_chars (cut at a word): the brief's URL and out/ folder."""
    # "Ukraine's allies": ukraines-allies, not ukraine-s-allies (a word of its own).
    possessive = re.sub(r"(?<=\w)['’]s\b", "s", title)
    words = [w for w in slugify(possessive).split("-") if w][:ID_WORDS]
    while len(words) > 1 and words[-1] in STOP_WORDS:
        words.pop()
    slug = "-".join(words)
    if len(slug) > max_chars:
        slug = slug[: max_chars + 1].rsplit("-", 1)[0][:max_chars]
    return slug


def legacy_id(title: str, max_chars: int = 60) -> str:
    """The id the rule before made (the title's first 60 characters, cut at a word): briefs
    published under it keep it."""
    slug = slugify(title)
    if len(slug) > max_chars:
        slug = slug[: max_chars + 1].rsplit("-", 1)[0]
    return slug
