"""Plain lines of prose to typed blocks, and the small text rules all readers share."""

from __future__ import annotations

import re

from briefcast.brief import Block, BlockKind

LIST_MARK = re.compile(r"^\s*(?:[-*•–]|\d{1,2}[.)])\s+")
QUOTE_MARK = re.compile(r"^\s*>\s?")
HEADING_MARK = re.compile(r"^#{1,6}\s+")
CLOSING_QUOTES = "\"'”’»)"
SENTENCE_END = tuple(".,;:!?…")
IMAGE_FILE = re.compile(r"^\S+\.(?:webp|jpe?g|png|gif|svg|avif)$", re.IGNORECASE)
# After the stop and any closing quote: the quote belongs to the sentence it closes (a
# headline cut before it would leave the standfirst opening with a stray '"').
SENTENCE_SPLIT = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"”’»]))\s+(?=[\"“‘«(]?[A-ZÀ-ÖØ-Þ0-9])")

# An inline subheading is a short line that does not end like a sentence,
# often a quoted statement ("“The most difficult steps are ahead of us”").
SUBHEADING_MAX_CHARS = 100
SUBHEADING_MAX_WORDS = 14


def clean_lines(text: str) -> list[str]:
    """Non-empty lines, stripped; image file names left by page scrapers are dropped."""
    lines = []
    for raw in text.split("\n"):
        line = " ".join(raw.split())  # also folds non-breaking spaces
        if line and not IMAGE_FILE.match(line):
            lines.append(line)
    return lines


def is_subheading(line: str) -> bool:
    bare = line.rstrip(CLOSING_QUOTES)
    return (
        len(line) <= SUBHEADING_MAX_CHARS
        and len(line.split()) <= SUBHEADING_MAX_WORDS
        and not bare.endswith(SENTENCE_END)
    )


def to_blocks(lines: list[str]) -> tuple[Block, ...]:
    """One block per line: the briefs write one paragraph per line."""
    blocks: list[Block] = []
    for i, line in enumerate(lines):
        if HEADING_MARK.match(line):
            blocks.append(Block(BlockKind.SUBHEADING, HEADING_MARK.sub("", line, count=1)))
        elif LIST_MARK.match(line):
            blocks.append(Block(BlockKind.LIST_ITEM, LIST_MARK.sub("", line, count=1)))
        elif QUOTE_MARK.match(line):
            blocks.append(Block(BlockKind.QUOTE, QUOTE_MARK.sub("", line, count=1)))
        elif 0 < i < len(lines) - 1 and is_subheading(line):
            blocks.append(Block(BlockKind.SUBHEADING, line))
        else:
            blocks.append(Block(BlockKind.PARAGRAPH, line))
    return tuple(blocks)


def first_sentence(text: str) -> str:
    return SENTENCE_SPLIT.split(text.strip(), maxsplit=1)[0]


def headline_from(text: str, max_chars: int = 100) -> str:
    """A title for a brief that has none: its first sentence, cut at a word if too long."""
    sentence = first_sentence(text)
    if len(sentence) <= max_chars:
        return sentence
    cut = sentence[: max_chars - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-–—") + "…"


def split_footer(lines: list[str], within: int = 6) -> tuple[list[str], list[str], list[str]]:
    """Find a footnote-style disclaimer (``…brief*`` / ``*This contribution…``) among the
    last ``within`` lines: (body before it, the disclaimer, whatever follows it)."""
    for i in range(len(lines) - 1, max(-1, len(lines) - 1 - within), -1):
        if lines[i].startswith("*"):
            start = i - 1 if i > 0 and lines[i - 1].endswith("*") else i
            return lines[:start], lines[start : i + 1], lines[i + 1 :]
    return lines, [], []


def has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)
