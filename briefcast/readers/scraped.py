"""A page copied from the publisher's site: find the article, drop the page around it.

The article is anchored by its ``DD-MM-YYYY HH:MM`` timestamp: the line before it is the
title, then come the publisher, the comma-separated tags, the title again, the standfirst
and the marked sections, closed by the disclaimer. Navigation, newsletter prompts, the
run-on list of other headlines, social links and the site footer are all outside that span.
"""

from __future__ import annotations

import re

from briefcast.config import Settings
from briefcast.readers.assemble import Parts, calendar_date, has_markers, split_marked
from briefcast.readers.blocks import clean_lines, split_footer
from briefcast.readers.lang import detect
from briefcast.readers.source import Source

TIMESTAMP = re.compile(r"^(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2})$")
PUBLISHER_MAX_WORDS = 4


def find_timestamp(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        if i > 0 and TIMESTAMP.match(line):
            return i
    return None


def is_scraped_page(text: str) -> bool:
    return find_timestamp(clean_lines(text)) is not None


def read_scraped(source: Source, settings: Settings) -> Parts:
    lines = clean_lines(source.text)
    ts = find_timestamp(lines)
    assert ts is not None, "read_scraped needs is_scraped_page"
    title = lines[ts - 1]
    stamp = TIMESTAMP.match(lines[ts])
    assert stamp is not None, "find_timestamp matched this line"
    day, month, year, hour, minute = (int(g) for g in stamp.groups())
    date = calendar_date(source, settings, year, month, day, hour, minute)

    rest = lines[ts + 1 :]
    publisher = None
    if rest and "," not in rest[0] and len(rest[0].split()) <= PUBLISHER_MAX_WORDS:
        publisher = rest.pop(0)
    tags: list[str] = []
    if rest and "," in rest[0] and rest[0] != title:
        tags = [t.strip(" -") for t in rest.pop(0).split(",") if t.strip(" -")]
    if rest and rest[0] == title:
        rest.pop(0)

    # What follows the disclaimer is the site's own footer, never part of the brief.
    body, footer, _site_footer = split_footer(rest, within=len(rest))
    if not footer:
        body = drop_trailing_chrome(body)
    summary = None
    if has_markers(body):
        preamble, sections = split_marked(body, settings)
        summary = " ".join(preamble) or None
    else:
        sections = [(detect(" ".join(body), settings), body)]
    return Parts(
        sections=sections,
        title=title,
        date=date,
        tags=tags,
        summary=summary,
        footer=footer,
        publisher=publisher,
    )


def drop_trailing_chrome(lines: list[str]) -> list[str]:
    """Social links and copyright lines: short, unpunctuated, after the last paragraph."""
    end = len(lines)
    while end and (len(lines[end - 1].split()) <= 6 and not lines[end - 1].endswith(".")):
        end -= 1
    return lines[:end]
