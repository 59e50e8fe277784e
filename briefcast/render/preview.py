"""What the editor checks before sending: one index.html per brief, and the same
previews as Prefect artifacts (markdown and a table)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, select_autoescape

from briefcast.config import TEMPLATES_DIR, Settings
from briefcast.i18n import long_datetime

if TYPE_CHECKING:
    from briefcast.pipeline import Edition


@cache
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR / "preview"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_index(edition: Edition, channels: Sequence[str], settings: Settings) -> str:
    brief = edition.brief
    return (
        _env()
        .get_template("index.html.j2")
        .render(
            brief=brief,
            date=long_datetime(brief.date, "en") if brief.date else "undated",
            channels=list(channels),
            emails=edition.emails,
            feeds=edition.feeds,
            social=edition.social,
            pages=edition.pages,
            site=settings.site,
        )
    )


def preview_rows(edition: Edition) -> list[dict[str, str | int]]:
    """One row per thing that would be sent: for the Prefect table artifact."""
    rows: list[dict[str, str | int]] = []
    for mail in edition.emails:
        rows.append(
            {
                "channel": "email",
                "target": f"edition {mail.edition}",
                "text": mail.subject,
                "length": len(mail.html.encode("utf-8")),
                "limit": 102 * 1024,
            }
        )
    for post in edition.social:
        for i, (text, length) in enumerate(zip(post.posts, post.lengths, strict=True), 1):
            rows.append(
                {
                    "channel": post.network,
                    "target": f"{post.lang} post {i}/{len(post.posts)}",
                    "text": text,
                    "length": length,
                    "limit": post.limit,
                }
            )
    for feeds in edition.feeds:
        rows.append(
            {
                "channel": "feed",
                "target": feeds.lang,
                "text": "rss.xml, atom.xml, feed.json",
                "length": len(feeds.atom),
                "limit": 0,
            }
        )
    return rows


def preview_markdown(edition: Edition) -> str:
    brief = edition.brief
    lines = [
        f"# {brief.title}",
        "",
        f"`{brief.id}` · languages: {', '.join(brief.languages)} · "
        f"tags: {', '.join(brief.tags) or '—'}",
        "",
    ]
    if edition.emails:
        lines += ["## Email", ""]
        lines += [f"- **{m.edition}**: {m.subject} — _{m.preheader}_" for m in edition.emails]
        lines.append("")
    if edition.social:
        lines += ["## Social", ""]
        for post in edition.social:
            for text, length in zip(post.posts, post.lengths, strict=True):
                quoted = "\n> ".join(text.splitlines())
                lines += [
                    f"**{post.network} · {post.lang}** ({length}/{post.limit})",
                    "",
                    f"> {quoted}",
                    "",
                ]
    return "\n".join(lines)
