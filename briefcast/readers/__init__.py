"""Readers: every shape of brief file in, one Brief out.

The shape is chosen by extension and content: Markdown with front matter, a page scraped
from the publisher's site, text with ``EU/ENG - `` language markers, or a plain article.
Boilerplate removal lives here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

from briefcast.brief import Brief
from briefcast.config import Settings
from briefcast.readers.assemble import assemble
from briefcast.readers.markdown import is_markdown, read_markdown
from briefcast.readers.scraped import is_scraped_page, read_scraped
from briefcast.readers.source import BriefError, load_source
from briefcast.readers.text import read_text

__all__ = ["BriefError", "read_brief", "read_briefs"]


def read_brief(path: Path, settings: Settings) -> Brief:
    source = load_source(path, settings.input.max_bytes)
    if is_markdown(source):
        parts = read_markdown(source, settings)
    elif is_scraped_page(source.text):
        parts = read_scraped(source, settings)
    else:
        parts = read_text(source, settings)
    return assemble(source, parts, settings)


def read_briefs(paths: list[Path], settings: Settings) -> list[Brief]:
    """All or nothing: the first bad file raises before anything else happens."""
    return [read_brief(p, settings) for p in paths]
