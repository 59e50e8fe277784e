"""Web channel: one page per brief per language (the "view in browser" target)."""

from __future__ import annotations

from pathlib import Path

from briefcast.brief import Brief
from briefcast.channel import BuildContext, Row
from briefcast.config import Settings
from briefcast.render.preview import fragment
from briefcast.render.web import build_pages
from briefcast.safe_io import write_inside
from briefcast.site import SiteSends

Pages = dict[str, str]  # language -> page


class WebChannel(SiteSends):
    """Sent as a part of the public site (``[site] public_dir``): ``briefcast.site``."""

    name = "web"
    title = "Web pages"
    part = "pages"  # in the send ledger
    order = 40

    def build(self, brief: Brief, ctx: BuildContext) -> Pages:
        return build_pages(brief, ctx.settings)

    def preview(self, built: Pages, folder: Path) -> list[Path]:
        return [write_inside(folder, f"web/{lang}.html", html) for lang, html in built.items()]

    def preview_html(self, built: Pages, brief: Brief, settings: Settings) -> str:
        return fragment("web.html.j2", pages=built, brief=brief, site=settings.site)

    def preview_rows(self, built: Pages) -> list[Row]:
        return [
            {"target": lang, "text": f"web/{lang}.html", "length": len(html), "limit": 0}
            for lang, html in built.items()
        ]


channel = WebChannel()
