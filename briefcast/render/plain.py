"""A brief's inline markup in plain text: the email's text/plain part.

Links become numbered references, ``Paris [1]``, listed with their addresses at the end (as
Buttondown and most plain-text newsletters do); a link whose text is its address is simply
the address. Footnote references are superscript digits (``¹``), which cannot be mistaken
for the link references; tables are aligned in columns for a monospace reader.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from briefcast.brief import Block, Span

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
# The email's text part's width (render.email wraps it): a wider table is shown one row at a
# time.
TEXT_WIDTH = 72


def superscript(number: int) -> str:
    return str(number).translate(_SUPERSCRIPT)


class References:
    """The links of one email edition, numbered in reading order (one number per address)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def number(self, url: str) -> int:
        if url not in self.urls:
            self.urls.append(url)
        return self.urls.index(url) + 1

    def _span(self, span: Span) -> str:
        if span.note:
            return superscript(span.note)
        if span.image:
            label = f"[Image: {span.text}]" if span.text else "[Image]"
            return f"{label} [{self.number(span.href)}]"
        if not span.href or span.text.strip() in (span.href, span.href.removeprefix("mailto:")):
            return span.text
        # The reference follows the link's text; trailing spaces stay outside it.
        text = span.text.rstrip()
        return f"{text} [{self.number(span.href)}]{span.text[len(text) :]}"

    def spans(self, spans: Iterable[Span]) -> str:
        return "".join(self._span(span) for span in spans)

    def text(self, block: Block) -> str:
        return self.spans(block.inline)

    def table(self, block: Block) -> str:
        """Columns padded to their widest cell, a rule under the header; a table too wide
        for the text part is written one row at a time, each cell under its header."""
        rows = [[self.spans(cell) for cell in row] for row in block.rows]
        if not rows:
            return ""
        columns = max(len(row) for row in rows)
        rows = [row + [""] * (columns - len(row)) for row in rows]
        widths = [max(_width(row[i]) for row in rows) for i in range(columns)]
        if sum(widths) + 2 * (columns - 1) > TEXT_WIDTH:
            head, *body = rows
            return "\n\n".join(
                "\n".join(f"{h}: {cell}" if h else cell for h, cell in zip(head, row, strict=True))
                for row in body
            )
        lines = [
            "  ".join(_pad(cell, w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)


def _width(text: str) -> int:
    """Columns a monospace font gives the text: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
