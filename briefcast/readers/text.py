"""Plain-text briefs: marked bilingual text (``EU/ENG - ``) and plain articles."""

from __future__ import annotations

import re

from briefcast.config import Settings
from briefcast.readers.assemble import Parts, calendar_date, split_marked
from briefcast.readers.blocks import clean_lines, split_footer
from briefcast.readers.lang import detect
from briefcast.readers.source import Source

# " date 2025-03-11 The coalition…": a date stamped ahead of the first paragraph.
LEADING_DATE = re.compile(r"^\s*date\s+(\d{4})-(\d{2})-(\d{2})\s+", re.IGNORECASE)


def read_text(source: Source, settings: Settings) -> Parts:
    text = source.text
    date = None
    m = LEADING_DATE.match(text)
    if m:
        date = calendar_date(source, settings, *(int(g) for g in m.groups()))
        text = text[m.end() :]
    body, footer, after = split_footer(clean_lines(text))
    footer += after
    preamble, sections = split_marked(body, settings)
    if preamble:
        # Unmarked text is one section in whatever language it is written in.
        sections.insert(0, (detect(" ".join(preamble), settings), preamble))
    return Parts(sections=sections, date=date, footer=footer)
