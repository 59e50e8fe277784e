"""Web channel: one page per brief per language (the "view in browser" target)."""

from __future__ import annotations

from pathlib import Path

from briefcast import site
from briefcast.brief import Brief
from briefcast.channel import BuildContext, Outputs, Row
from briefcast.config import Settings
from briefcast.render.preview import fragment
from briefcast.render.web import build_pages
from briefcast.safe_io import write_inside
from briefcast.site import SiteSummary

Pages = dict[str, str]  # language -> page


class WebChannel:
    name = "web"
    title = "Web pages"
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

    def check_ready(self, settings: Settings) -> None:
        site.check_ready(settings)

    def send(self, outputs: Outputs, settings: Settings, *, resend_unknown: bool) -> SiteSummary:
        """Publish on the public site (``[site] public_dir``): the whole site is rebuilt
        from the published archive, the pages included, and swapped in once per run, and the
        brief's publication is recorded once in the send ledger (``briefcast.site``). A
        rebuild cannot make a second copy, so ``resend_unknown`` changes nothing here."""
        return site.publish_brief(outputs.brief.id, self.name, "pages", settings)


channel = WebChannel()
