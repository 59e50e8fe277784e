"""A section's blocks as simple HTML, shared by the web page, the feeds and the email.

A brief's text is never trusted as markup: every string (text, link target, alt text) is
escaped here, quotes included, so no value can leave its attribute; the result is ``Markup``
so Jinja's autoescape does not escape it a second time. The only elements written are the
ones below: Markdown's own constructs (links, emphasis, lists, tables, images, footnotes).

Footnote anchors carry a ``prefix`` so that two languages in one email keep distinct ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup, escape

from briefcast.brief import Block, BlockKind, Span


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive blocks of one kind: a list's items, a quote's paragraphs, the notes."""

    kind: BlockKind
    blocks: tuple[Block, ...]

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(b.text for b in self.blocks)


# Kinds whose consecutive blocks read as one element (one <ul>, one <blockquote>);
# paragraphs and subheadings always stand alone.
_GROUPED = frozenset({BlockKind.LIST_ITEM, BlockKind.ORDERED_ITEM, BlockKind.QUOTE, BlockKind.NOTE})
# Images never wider than the column, whatever their own size (email clients that ignore
# max-width, Outlook on Windows, show them at their size: an editor sizes them for the web).
IMAGE_STYLE = "display:block; max-width:100%; height:auto; border:0;"


def group_blocks(blocks: Iterable[Block]) -> list[Run]:
    """Blocks as runs, for templates (e.g. the email's) that lay each kind out themselves."""
    runs: list[Run] = []
    for block in blocks:
        if runs and block.kind in _GROUPED and runs[-1].kind is block.kind:
            runs[-1] = Run(block.kind, (*runs[-1].blocks, block))
        else:
            runs.append(Run(block.kind, (block,)))
    return runs


def _span_html(span: Span, prefix: str) -> str:
    if span.note:
        anchor = f' id="{escape(prefix)}fnref-{span.note}"' if span.first_ref else ""
        return (
            f'<sup class="fn-ref"><a href="#{escape(prefix)}fn-{span.note}"{anchor}>'
            f"{span.note}</a></sup>"
        )
    if span.image:
        return f'<img src="{escape(span.href)}" alt="{escape(span.text)}" style="{IMAGE_STYLE}">'
    html = str(escape(span.text))
    if span.code:
        html = f"<code>{html}</code>"
    if span.em:
        html = f"<em>{html}</em>"
    if span.strong:
        html = f"<strong>{html}</strong>"
    if span.href:
        html = f'<a href="{escape(span.href)}">{html}</a>'
    return html


def inline_html(spans: Iterable[Span], prefix: str = "") -> Markup:
    """A block's text with its links, emphasis, images and footnote references."""
    return Markup("".join(_span_html(span, prefix) for span in spans))


def block_html(block: Block, prefix: str = "") -> Markup:
    return inline_html(block.inline, prefix)


def table_html(block: Block, prefix: str = "") -> Markup:
    """A table with header cells; wrapped so that a wide one scrolls instead of widening the
    page or the email."""
    head, *body = block.rows or ((),)
    th = "".join(f'<th scope="col">{inline_html(cell, prefix)}</th>' for cell in head)
    rows = "".join(
        "<tr>" + "".join(f"<td>{inline_html(cell, prefix)}</td>" for cell in row) + "</tr>"
        for row in body
    )
    return Markup(
        f'<div class="table-wrap"><table class="data"><thead><tr>{th}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def notes_html(blocks: Iterable[Block], prefix: str = "") -> Markup:
    """The footnotes, numbered as referenced, each with a link back to its reference."""
    items = "".join(
        f'<li id="{escape(prefix)}fn-{b.number}" value="{b.number}">{block_html(b, prefix)} '
        f'<a class="fn-back" href="#{escape(prefix)}fnref-{b.number}">&#8617;</a></li>'
        for b in blocks
    )
    return Markup(f'<div class="notes"><ol>{items}</ol></div>')


def _paragraphs(blocks: Iterable[Block], prefix: str) -> str:
    return "".join(f"<p>{block_html(b, prefix)}</p>" for b in blocks)


def render_run(run: Run, *, heading_level: int = 2, prefix: str = "") -> Markup:
    first = run.blocks[0]
    if run.kind is BlockKind.SUBHEADING:
        return Markup(f"<h{heading_level}>{block_html(first, prefix)}</h{heading_level}>")
    if run.kind is BlockKind.LIST_ITEM:
        items = "".join(f"<li>{block_html(b, prefix)}</li>" for b in run.blocks)
        return Markup(f"<ul>{items}</ul>")
    if run.kind is BlockKind.ORDERED_ITEM:
        items = "".join(f'<li value="{b.number}">{block_html(b, prefix)}</li>' for b in run.blocks)
        return Markup(f'<ol start="{first.number}">{items}</ol>')
    if run.kind is BlockKind.QUOTE:
        return Markup(f"<blockquote>{_paragraphs(run.blocks, prefix)}</blockquote>")
    if run.kind is BlockKind.TABLE:
        return table_html(first, prefix)
    if run.kind is BlockKind.NOTE:
        return notes_html(run.blocks, prefix)
    if run.kind is BlockKind.IMAGE:
        return Markup(f'<p class="figure">{block_html(first, prefix)}</p>')
    return Markup(_paragraphs(run.blocks, prefix))


def render_blocks(
    blocks: Iterable[Block], *, heading_level: int = 2, sep: str = "\n", prefix: str = ""
) -> Markup:
    """``<p>``, ``<h2>``, one ``<ul>``/``<ol>`` per list, one ``<blockquote>`` per quote,
    tables, images, and the footnotes as a numbered list after the text."""
    return Markup(sep).join(
        render_run(run, heading_level=heading_level, prefix=prefix) for run in group_blocks(blocks)
    )


def render_footer(lines: Iterable[str]) -> Markup:
    """The disclaimer lines, as small print after the body."""
    return Markup("").join(Markup("<p><small>{}</small></p>").format(line) for line in lines)
