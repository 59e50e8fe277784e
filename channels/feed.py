"""Feed channel: RSS 2.0, Atom 1.0 and JSON Feed 1.1 per language."""

from __future__ import annotations

from pathlib import Path

from briefcast.brief import Brief
from briefcast.channel import BuildContext, Row
from briefcast.config import Settings
from briefcast.render.feeds import FeedSet, build_feeds
from briefcast.render.layout import FEED_FILES
from briefcast.render.preview import fragment
from briefcast.safe_io import write_inside
from briefcast.site import SiteSends


class FeedChannel(SiteSends):
    """Sent as a part of the public site (``[site] public_dir``): ``briefcast.site``."""

    name = "feed"
    title = "Feeds"
    part = "feeds"  # in the send ledger
    order = 20

    def build(self, brief: Brief, ctx: BuildContext) -> list[FeedSet]:
        """The site's feeds as they will be with this run's briefs: the same for every brief
        of the run, so built once."""
        return ctx.once("feeds", lambda: self._build_all(ctx))

    @staticmethod
    def _build_all(ctx: BuildContext) -> list[FeedSet]:
        return [
            build_feeds([*ctx.archive(lang), *ctx.briefs], ctx.settings, lang)
            for lang in ctx.settings.site.languages
        ]

    def preview(self, built: list[FeedSet], folder: Path) -> list[Path]:
        return [
            write_inside(folder, f"feed/{feeds.lang}/{name}", getattr(feeds, kind))
            for feeds in built
            for kind, name in FEED_FILES.items()
        ]

    def preview_html(self, built: list[FeedSet], brief: Brief, settings: Settings) -> str:
        return fragment("feed.html.j2", feeds=built, site=settings.site)

    def preview_rows(self, built: list[FeedSet]) -> list[Row]:
        return [
            {
                "target": feeds.lang,
                "text": ", ".join(FEED_FILES.values()),
                "length": len(feeds.atom),
                "limit": 0,
            }
            for feeds in built
        ]


channel = FeedChannel()
