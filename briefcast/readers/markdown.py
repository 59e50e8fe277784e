"""Markdown with YAML front matter: the format for new briefs (see README)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.footnote import footnote_plugin

from briefcast.brief import IMAGE_SCHEMES, Block, BlockKind, Span, safe_href, spans_text
from briefcast.config import Settings
from briefcast.readers.assemble import Parts
from briefcast.readers.front_matter import (
    FrontMatter,
    FrontMatterError,
    Lines,
    PerLanguage,
    PerLanguageLines,
    footer_lines,
    parse_front_matter,
    tag_list,
)
from briefcast.readers.lang import detect, iso639_1
from briefcast.readers.source import BriefError, Source

FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)", re.DOTALL)
# A line "[en]" or "[it]" on its own starts that language's body.
LANG_LINE = re.compile(r"^\[([A-Za-z]{2,3})\]\s*$", re.MULTILINE)


def is_markdown(source: Source) -> bool:
    return source.path.suffix.lower() in {".md", ".markdown"} or bool(
        FRONT_MATTER.match(source.text)
    )


def read_markdown(source: Source, settings: Settings) -> Parts:
    m = FRONT_MATTER.match(source.text)
    meta = FrontMatter()
    body = source.text
    if m:
        try:
            meta = parse_front_matter(m.group(1))
        except FrontMatterError as exc:
            raise BriefError(source.path, str(exc)) from None
        body = source.text[m.end() :]

    def lang_code(code: str) -> str:
        lang = iso639_1(code)
        if not lang:
            raise BriefError(source.path, f"unknown language code {code[:20]!r}")
        return lang

    def per_language(value: str | PerLanguage | None) -> tuple[str | None, dict[str, str]]:
        if isinstance(value, dict):
            return None, {lang_code(k): v.strip() for k, v in value.items() if v and v.strip()}
        return (value or "").strip() or None, {}

    title, titles = per_language(meta.title)
    summary, summaries = per_language(meta.summary)
    declared = meta.lang
    # Each language's text with the file line it starts on (for the refusals' "line N").
    body_line = source.text[: len(source.text) - len(body)].count("\n") + 1
    marks = list(LANG_LINE.finditer(body))
    sections: list[tuple[str, list[str] | tuple[Block, ...]]] = []
    head = body[: marks[0].start()] if marks else body
    if head.strip():
        lang = lang_code(declared) if declared else detect(head, settings)
        sections.append((lang, markdown_blocks(head, source.path, body_line)))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        line = body_line + body[: mark.end()].count("\n")
        blocks = markdown_blocks(body[mark.end() : end], source.path, line)
        sections.append((lang_code(mark.group(1)), blocks))
    if title and declared and not titles:
        titles = {lang_code(declared): title}

    # Per language: each section shows its own; the brief's tags are all of them (tag pages).
    tags_in = _per_language_lines(meta.tags, tag_list, lang_code)
    footers = _per_language_lines(meta.footer, footer_lines, lang_code)
    when = meta.date
    return Parts(
        sections=sections,
        title=title,
        titles=titles,
        summary=summary,
        summaries=summaries,
        date=when if when is None or when.tzinfo else when.replace(tzinfo=settings.site.tz),
        tags=list(dict.fromkeys(t for tags in tags_in.values() for t in tags)),
        footer=footers.pop("", []),
        publisher=(meta.publisher or "").strip() or None,
        brief_id=(meta.id or "").strip() or None,
        byline=(meta.byline or "").strip() or None,
        section_tags={lang: tags for lang, tags in tags_in.items() if lang},
        section_footers=footers,
        to_everyone=meta.audience == "everyone",
        link=meta.link,
    )


def _per_language_lines(
    value: Lines | PerLanguageLines | None,
    split: Callable[[Lines | None], list[str]],
    lang_code: Callable[[str], str],
) -> dict[str, list[str]]:
    """{"": lines} for one value for every language, else {lang: lines} per language."""
    if isinstance(value, dict):
        return {lang_code(k): split(v) for k, v in value.items() if split(v)}
    return {"": split(value)}


# CommonMark with GitHub's tables and footnotes: the constructs an analytical brief uses.
# Raw HTML is never markup here: html_inline/html_block tokens are kept as text and escaped.
_md = MarkdownIt("commonmark").enable("table").use(footnote_plugin)
# Every link is parsed as one, so that a link to javascript:, data: or a relative path shows
# as its text alone (Span drops a target that is not http(s) or mailto) rather than as the
# Markdown source that markdown-it leaves when it refuses a target.
_md.validateLink = lambda url: True  # type: ignore[method-assign]
# A footnote reference the plugin did not resolve is left in the text as written.
_LOOSE_NOTE = re.compile(r"\[\^[^\]\s]{1,40}\]")


class _Item:
    """A list item being read: its number (0 in a bullet list) and its spans so far."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.spans: list[Span] = []


def markdown_blocks(text: str, path: Path, first_line: int = 1) -> tuple[Block, ...]:
    """Markdown to typed blocks: headings, paragraphs, list items (numbered in ``1.``
    lists), quotes, tables, images alone in their paragraph, and footnotes (numbered in
    order of first reference, after the text). ``first_line`` is the text's line in the file,
    for the one-line refusals (an image not on the web, a footnote never defined or used)."""
    blocks: list[Block] = []
    notes: dict[int, list[Span]] = {}
    lists: list[list[int]] = []  # per open list: [ordered, next number]
    items: list[_Item] = []
    rows: list[list[tuple[Span, ...]]] | None = None
    quote = heading = 0
    note: int | None = None
    labels: set[str] = set()  # of the notes referenced (the plugin drops the others)
    line = first_line

    def emit(item: _Item) -> None:
        if item.spans:
            spans = _tidy(item.spans)
            kind = BlockKind.ORDERED_ITEM if item.number else BlockKind.LIST_ITEM
            blocks.append(Block(kind, spans_text(spans), spans, number=item.number))
            item.spans = []

    for tok in _md.parse(text):
        if tok.map:
            line = first_line + tok.map[0]
        kind = tok.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            ordered = kind == "ordered_list_open"
            lists.append([int(ordered), int(tok.attrs.get("start", 1)) if ordered else 0])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            if items:  # a list inside an item: the item's own text comes first
                emit(items[-1])
            number = lists[-1][1] if lists and lists[-1][0] else 0
            if number:
                lists[-1][1] += 1
            items.append(_Item(number))
        elif kind == "list_item_close":
            emit(items.pop())
        elif kind == "blockquote_open":
            quote += 1
        elif kind == "blockquote_close":
            quote -= 1
        elif kind == "heading_open":
            heading = 1
        elif kind == "heading_close":
            heading = 0
        elif kind == "table_open":
            rows = []
        elif kind == "tr_open" and rows is not None:
            rows.append([])
        elif kind == "table_close" and rows is not None:
            table = tuple(tuple(row) for row in rows if row)
            text_ = "\n".join(" · ".join(spans_text(c) for c in row) for row in table)
            blocks.append(Block(BlockKind.TABLE, text_, rows=table))
            rows = None
        elif kind == "footnote_open":
            note = int(tok.meta["id"])
            notes[note] = []
            labels.add(str(tok.meta["label"]))
        elif kind == "footnote_close":
            note = None
        elif kind == "inline":
            spans = _spans(tok.children or [], path, line)
            if rows is not None and rows:
                rows[-1].append(_tidy(spans))
            elif note is not None:
                notes[note] += [Span(" "), *spans] if notes[note] else spans
            elif items:
                items[-1].spans += [Span(" "), *spans] if items[-1].spans else spans
            elif tidy := _tidy(spans):
                if heading:
                    block_kind = BlockKind.SUBHEADING
                elif quote:
                    block_kind = BlockKind.QUOTE
                elif len(tidy) == 1 and tidy[0].image:
                    block_kind = BlockKind.IMAGE
                else:
                    block_kind = BlockKind.PARAGRAPH
                blocks.append(Block(block_kind, spans_text(tidy), tidy))
        elif kind in ("html_block", "code_block", "fence"):
            # Shown as text, a paragraph per line: a brief's HTML is never markup.
            blocks.extend(
                Block(BlockKind.PARAGRAPH, " ".join(t.split()))
                for t in tok.content.splitlines()
                if t.strip()
            )
    for number, spans in sorted(notes.items()):
        tidy = _tidy(spans)
        blocks.append(Block(BlockKind.NOTE, spans_text(tidy), tidy, number=number + 1))
    _check_notes(text, labels, path, first_line)
    return tuple(blocks)


def _spans(children: list[Token], path: Path, line: int) -> list[Span]:
    """An inline token's children as spans: text, emphasis, links, images, note refs."""
    spans: list[Span] = []
    strong = em = 0
    hrefs: list[str] = []
    for child in children:
        kind = child.type
        href = hrefs[-1] if hrefs else ""
        style = partial(Span, strong=strong > 0, em=em > 0, href=href)
        if kind in ("text", "html_inline"):
            if m := _LOOSE_NOTE.search(child.content):
                raise BriefError(
                    path, f"line {line}: footnote {m[0]} is never defined ([{m[0][1:-1]}]: …)"
                )
            spans.append(style(child.content))
        elif kind == "code_inline":
            spans.append(style(child.content, code=True))
        elif kind in ("softbreak", "hardbreak"):
            spans.append(style(" "))
        elif kind == "strong_open":
            strong += 1
        elif kind == "strong_close":
            strong -= 1
        elif kind == "em_open":
            em += 1
        elif kind == "em_close":
            em -= 1
        elif kind == "link_open":
            hrefs.append(str(child.attrs.get("href", "")))
        elif kind == "link_close" and hrefs:
            hrefs.pop()
        elif kind == "image":
            src = str(child.attrs.get("src", ""))
            if not safe_href(src, IMAGE_SCHEMES):
                raise BriefError(
                    path,
                    f"line {line}: image {src[:80]!r} is not an http(s) address; an email "
                    "shows only images on the web (https://…)",
                )
            alt = " ".join(child.content.split())
            spans.append(Span(alt, href=src, image=True))
        elif kind == "footnote_ref":
            first = int(child.meta.get("subId", 0)) == 0
            spans.append(Span("", note=int(child.meta["id"]) + 1, first_ref=first))
    return spans


def _tidy(spans: list[Span]) -> tuple[Span, ...]:
    """Whitespace folded to single spaces across spans, none at the ends; neighbours of one
    style merged."""
    out: list[Span] = []
    for span in spans:
        text = span.text if span.image else re.sub(r"\s+", " ", span.text)
        if not span.image and out and out[-1].text.endswith(" ") and text.startswith(" "):
            text = text[1:]
        if not out and not span.image:
            text = text.lstrip()
        if not text and not span.image and not span.note:
            continue
        span = replace(span, text=text)
        prev = out[-1] if out else None
        if (
            prev
            and not (span.image or prev.image or span.note or prev.note)
            and (replace(prev, text="") == replace(span, text=""))
        ):
            out[-1] = replace(prev, text=prev.text + text)
        else:
            out.append(span)
    while out and not out[-1].image and not out[-1].note and out[-1].text.endswith(" "):
        last = replace(out[-1], text=out[-1].text.rstrip())
        out[-1:] = [last] if last.text else []
    return tuple(out)


def _check_notes(text: str, labels: set[str], path: Path, first_line: int) -> None:
    """A footnote defined but never referenced, or defined twice, is dropped by Markdown:
    refused instead, naming it."""
    defined = re.findall(r"^ {0,3}\[\^([^\]\s]{1,40})\]:", text, re.MULTILINE)
    unused = next((label for label in defined if label not in labels), None)
    twice = next((label for label in defined if defined.count(label) > 1), None)
    label = unused or twice
    if label is None:
        return
    lines = text.splitlines()
    at = [i for i, t in enumerate(lines) if t.lstrip().startswith(f"[^{label}]:")]
    why = "is never referenced in the text" if unused else "is defined twice"
    raise BriefError(
        path,
        f"line {first_line + at[-1 if twice and not unused else 0]}: footnote [^{label}] {why}",
    )
