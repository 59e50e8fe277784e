"""Markdown with YAML front matter: the format for new briefs (see README)."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from briefcast.config import Settings
from briefcast.readers.assemble import Parts
from briefcast.readers.lang import detect, iso639_1
from briefcast.readers.source import BriefError, Source

FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)", re.DOTALL)
# A line "[en]" or "[it]" on its own starts that language's body.
LANG_LINE = re.compile(r"^\[([A-Za-z]{2,3})\]\s*$", re.MULTILINE)
ID_MAX = 200  # store.briefs.id is String(200): PostgreSQL enforces it, SQLite does not


def is_markdown(source: Source) -> bool:
    return source.path.suffix.lower() in {".md", ".markdown"} or bool(
        FRONT_MATTER.match(source.text)
    )


def read_markdown(source: Source, settings: Settings) -> Parts:
    m = FRONT_MATTER.match(source.text)
    meta: dict[str, Any] = {}
    body = source.text
    if m:
        try:
            loaded = yaml.safe_load(m.group(1))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 2}" if mark else ""
            raise BriefError(source.path, f"front matter is not valid YAML{where}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise BriefError(source.path, "front matter must be key: value pairs")
        meta = loaded or {}
        body = source.text[m.end() :]

    def lang_code(code: Any) -> str:
        lang = iso639_1(str(code))
        if not lang:
            raise BriefError(source.path, f"unknown language code {code!r}")
        return lang

    def per_language(key: str) -> tuple[str | None, dict[str, str]]:
        value = meta.get(key)
        if value is None:
            return None, {}
        if isinstance(value, dict):
            return None, {lang_code(k): str(v).strip() for k, v in value.items() if v}
        return str(value).strip() or None, {}

    title, titles = per_language("title")
    summary, summaries = per_language("summary")
    declared = meta.get("lang")
    chunks = LANG_LINE.split(body)
    sections: list[tuple[str, list[str]]] = []
    if chunks[0].strip():
        lang = lang_code(declared) if isinstance(declared, str) else detect(chunks[0], settings)
        sections.append((lang, markdown_lines(chunks[0])))
    for code, text in zip(chunks[1::2], chunks[2::2], strict=True):
        sections.append((lang_code(code), markdown_lines(text)))
    if title and isinstance(declared, str) and not titles:
        titles = {lang_code(declared): title}

    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = tags.split(",")
    footer = meta.get("footer") or []
    if isinstance(footer, str):
        footer = footer.splitlines()
    return Parts(
        sections=sections,
        title=title,
        titles=titles,
        summary=summary,
        summaries=summaries,
        date=parse_date(meta.get("date"), source, settings),
        tags=[str(t).strip() for t in tags if str(t).strip()],
        footer=[str(line).strip() for line in footer if str(line).strip()],
        publisher=meta.get("publisher"),
        brief_id=brief_id(meta.get("id"), source),
    )


def brief_id(value: Any, source: Source) -> str | None:
    # YAML reads "id: 2026" as a number and "id: 2026-01-07" as a date; the archive keys
    # briefs by text, and PostgreSQL will not compare text with a number.
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if len(text) > ID_MAX:
        raise BriefError(source.path, f"id longer than {ID_MAX} characters")
    return text


def parse_date(value: Any, source: Source, settings: Settings) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time())
    else:
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise BriefError(source.path, f"date {value!r} is not YYYY-MM-DD [HH:MM]") from None
    return when if when.tzinfo else when.replace(tzinfo=settings.site.tz)


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
