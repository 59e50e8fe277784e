"""What the editor checks before sending: one index.html per brief, and the same
previews as Prefect artifacts (markdown and a table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from briefcast.config import Settings
from briefcast.i18n import long_datetime
from briefcast.render.templating import environment

if TYPE_CHECKING:
    from briefcast.channel import Channel, Outputs, Row


_AUTOESCAPE = select_autoescape(["html", "j2"])


def _env() -> Environment:
    # Always ours: the preview is the editor's page, not the site's.
    return environment("preview", autoescape=_AUTOESCAPE)


def fragment(template: str, **context: Any) -> Markup:
    """A channel's part of the preview page, from ``templates/preview/<template>``."""
    return Markup(_env().get_template(template).render(**context))


def build_index(outputs: Outputs, channels: Sequence[Channel], settings: Settings) -> str:
    """The editor's page: the brief, then each channel's part, in the channels' order."""
    brief = outputs.brief
    sections = [
        (ch.name, ch.title, Markup(ch.preview_html(outputs.of(ch.name), brief, settings)))
        for ch in channels
    ]
    return (
        _env()
        .get_template("index.html.j2")
        .render(
            brief=brief,
            date=long_datetime(brief.date, "en") if brief.date else "undated",
            sections=sections,
        )
    )


def preview_rows(outputs: Outputs, channels: Sequence[Channel]) -> list[Row]:
    """One row per thing that would be sent, every channel: for the Prefect table artifact."""
    return [
        {"channel": ch.name, **row}
        for ch in channels
        for row in ch.preview_rows(outputs.of(ch.name))
    ]


def preview_markdown(outputs: Outputs, channels: Sequence[Channel]) -> str:
    """The same rows as Markdown, one heading per channel: for the Prefect markdown artifact."""
    brief = outputs.brief
    lines = [
        f"# {brief.title}",
        "",
        f"`{brief.id}` · languages: {', '.join(brief.languages)} · "
        f"tags: {', '.join(brief.tags) or '—'}",
    ]
    for ch in channels:
        lines += ["", f"## {ch.title}", ""]
        for row in ch.preview_rows(outputs.of(ch.name)):
            limit = f"/{row['limit']}" if row.get("limit") else ""
            quoted = "\n  > ".join(str(row.get("text", "")).splitlines())
            lines.append(f"- **{row.get('target', '')}** ({row.get('length', '')}{limit})")
            lines.append(f"  > {quoted}")
    return "\n".join(lines) + "\n"
