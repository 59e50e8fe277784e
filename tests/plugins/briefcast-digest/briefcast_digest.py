"""An example briefcast channel: a plain-text digest of each brief, one paragraph per
language, for a desk that pastes briefs into a messaging app. Preview only: it has no
``send``. See briefcast's docs/channels.md."""

from __future__ import annotations

from html import escape
from pathlib import Path

from briefcast.brief import Brief
from briefcast.channel import BuildContext, Row
from briefcast.config import Settings
from briefcast.safe_io import write_inside


class DigestChannel:
    name = "digest"
    title = "Digest"
    order = 100

    def build(self, brief: Brief, ctx: BuildContext) -> str:
        site = ctx.settings.site
        parts = [
            f"{brief.title_in(lang)}\n{brief.summary_in(lang)}\n{site.brief_url(brief.id, lang)}"
            for lang in brief.languages
        ]
        return "\n\n".join(parts) + "\n"

    def preview(self, built: str, folder: Path) -> list[Path]:
        return [write_inside(folder, "digest/digest.txt", built)]

    def preview_html(self, built: str, brief: Brief, settings: Settings) -> str:
        return f'<pre class="digest">{escape(built)}</pre>'

    def preview_rows(self, built: str) -> list[Row]:
        return [{"target": "digest.txt", "text": built, "length": len(built), "limit": 0}]


channel = DigestChannel()
