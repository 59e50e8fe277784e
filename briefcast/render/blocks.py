"""A section's blocks as simple HTML, shared by the web page, the feeds and the email.

A brief's text is never trusted as markup: every string is escaped here, and the
result is ``Markup`` so Jinja's autoescape does not escape it a second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from briefcast.brief import Block, BlockKind


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive blocks of one kind: a list's items, a quote's paragraphs."""

    kind: BlockKind
    texts: tuple[str, ...]


# Kinds whose consecutive blocks read as one element (one <ul>, one <blockquote>);
# paragraphs and subheadings always stand alone.
_GROUPED = frozenset({BlockKind.LIST_ITEM, BlockKind.QUOTE})


def group_blocks(blocks: Iterable[Block]) -> list[Run]:
    """Blocks as runs, for templates (e.g. the email's) that lay each kind out themselves."""
    runs: list[Run] = []
    for block in blocks:
        if runs and block.kind in _GROUPED and runs[-1].kind is block.kind:
            runs[-1] = Run(block.kind, (*runs[-1].texts, block.text))
        else:
            runs.append(Run(block.kind, (block.text,)))
    return runs


def _paragraphs(texts: Sequence[str]) -> str:
    return "".join(f"<p>{escape(text)}</p>" for text in texts)


def render_run(run: Run, *, heading_level: int = 2) -> Markup:
    if run.kind is BlockKind.SUBHEADING:
        return Markup(f"<h{heading_level}>{escape(run.texts[0])}</h{heading_level}>")
    if run.kind is BlockKind.LIST_ITEM:
        items = "".join(f"<li>{escape(text)}</li>" for text in run.texts)
        return Markup(f"<ul>{items}</ul>")
    if run.kind is BlockKind.QUOTE:
        return Markup(f"<blockquote>{_paragraphs(run.texts)}</blockquote>")
    return Markup(_paragraphs(run.texts))


def render_blocks(blocks: Iterable[Block], *, heading_level: int = 2, sep: str = "\n") -> Markup:
    """``<p>``, ``<h2>``, one ``<ul>`` per list, one ``<blockquote>`` per quote."""
    return Markup(sep).join(
        render_run(run, heading_level=heading_level) for run in group_blocks(blocks)
    )


def render_footer(lines: Iterable[str]) -> Markup:
    """The disclaimer lines, as small print after the body."""
    return Markup("").join(Markup("<p><small>{}</small></p>").format(line) for line in lines)
