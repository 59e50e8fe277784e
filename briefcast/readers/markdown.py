"""Markdown with YAML front matter: the format for new briefs (see README)."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from briefcast.config import Settings
from briefcast.readers.assemble import Parts
from briefcast.readers.front_matter import (
    FrontMatter,
    FrontMatterError,
    PerLanguage,
    parse_front_matter,
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
    chunks = LANG_LINE.split(body)
    sections: list[tuple[str, list[str]]] = []
    if chunks[0].strip():
        lang = lang_code(declared) if declared else detect(chunks[0], settings)
        sections.append((lang, markdown_lines(chunks[0])))
    for code, text in zip(chunks[1::2], chunks[2::2], strict=True):
        sections.append((lang_code(code), markdown_lines(text)))
    if title and declared and not titles:
        titles = {lang_code(declared): title}

    tags = meta.tags.split(",") if isinstance(meta.tags, str) else meta.tags or []
    footer = meta.footer.splitlines() if isinstance(meta.footer, str) else meta.footer or []
    when = meta.date
    return Parts(
        sections=sections,
        title=title,
        titles=titles,
        summary=summary,
        summaries=summaries,
        date=when if when is None or when.tzinfo else when.replace(tzinfo=settings.site.tz),
        tags=[t.strip() for t in tags if t.strip()],
        footer=[line.strip() for line in footer if line.strip()],
        publisher=(meta.publisher or "").strip() or None,
        brief_id=(meta.id or "").strip() or None,
        to_everyone=meta.audience == "everyone",
    )


_md = MarkdownIt("commonmark")


def markdown_lines(text: str) -> list[str]:
    """Markdown to the one-block-per-line text the block rules read: ``## x`` stays a
    short unpunctuated line, list items get "- ", quotes "> "; inline markup becomes text."""
    lines: list[str] = []
    prefix = ""
    tokens = _md.parse(text)
    for i, tok in enumerate(tokens):
        if tok.type == "bullet_list_open" or tok.type == "ordered_list_open":
            prefix = "- "
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            prefix = ""
        elif tok.type == "blockquote_open":
            prefix = "> "
        elif tok.type == "blockquote_close":
            prefix = ""
        elif tok.type == "inline":
            heading = tokens[i - 1].type == "heading_open"
            content = plain_text(tok.children or [])
            # "## " keeps a heading a heading even when it ends in "?" or runs long.
            lines.append("## " + content if heading else prefix + content)
        elif tok.type in ("html_block", "code_block", "fence"):
            lines.extend(line for line in tok.content.splitlines() if line.strip())
    return lines


def plain_text(children: list[Token]) -> str:
    out = []
    for child in children:
        if child.type in ("text", "code_inline", "html_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
    return " ".join("".join(out).split())
