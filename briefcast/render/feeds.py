"""RSS 2.0, Atom 1.0 and JSON Feed 1.1 for one language, from the archive of briefs.

Pure: briefs and settings in, bytes out; the caller writes the files. Rebuilding
from the same briefs gives the same bytes (no build time anywhere), so the files'
ETags only change when a brief does and readers get their 304s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from briefcast.brief import Block, Brief, Section, after_headline
from briefcast.config import Settings
from briefcast.i18n import t
from briefcast.render import layout
from briefcast.render.blocks import render_blocks, render_footer
from briefcast.render.feedgen_adapter import FeedDoc, FeedItem, render_atom, render_rss

JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"

# The date of a feed with no items: fixed, because now() would change the bytes on
# every rebuild of an empty archive.
EMPTY_FEED_DATE = datetime(1970, 1, 1, tzinfo=UTC)

# Characters XML 1.0 forbids (lxml refuses them outright). Text pasted from Word
# carries some, e.g. \x0b for a manual line break; one of them must not sink a feed.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class FeedSet:
    lang: str
    rss: bytes  # RSS 2.0
    atom: bytes  # Atom 1.0
    json: bytes  # JSON Feed 1.1


def build_feeds(
    briefs: Sequence[Brief],
    settings: Settings,
    lang: str,
    *,
    folder: str = "",
    title: str | None = None,
    home_url: str | None = None,
) -> FeedSet:
    """The three feeds of ``lang``: its newest briefs, at most ``feeds.max_items``.

    ``folder`` is where they are served under ``<lang>/`` ("" for the language's own feeds,
    ``tags/<slug>/`` for a tag's: see ``render.layout``), so each self link is the URL the
    feed is served at; ``title`` and ``home_url`` replace the language feed's."""
    doc = feed_doc(briefs, settings, lang, title=title, home_url=home_url)
    site = settings.site
    urls = {kind: layout.url(site, layout.feed(lang, kind, folder)) for kind in layout.FEED_FILES}
    return FeedSet(
        lang=lang,
        rss=render_rss(doc, urls["rss"]),
        atom=render_atom(doc, urls["atom"]),
        json=render_json(doc, urls["json"]),
    )


def select_briefs(briefs: Sequence[Brief], lang: str, limit: int) -> list[Brief]:
    """Briefs with text in ``lang``, newest first; same date: by id, so order never wobbles."""
    chosen = [b for b in briefs if b.section(lang) is not None]
    for brief in chosen:
        if brief.date is None or brief.date.tzinfo is None:
            # The store dates every brief; a missing or naive date here is a bug
            # upstream, and guessing one would put a wrong date in readers' feeds.
            raise ValueError(f"brief {brief.id!r} has no timezone-aware date")
    by_id = sorted(chosen, key=lambda b: (b.id, b.digest))
    return sorted(by_id, key=_date, reverse=True)[:limit]  # stable: ties keep id order


def feed_doc(
    briefs: Sequence[Brief],
    settings: Settings,
    lang: str,
    *,
    title: str | None = None,
    home_url: str | None = None,
) -> FeedDoc:
    """What the three formats say, once, so they cannot disagree."""
    site = settings.site
    items = tuple(
        _item(b, settings, lang) for b in select_briefs(briefs, lang, settings.feeds.max_items)
    )
    if title is None:
        title = t(lang, "feed_title", templates_dir=site.templates_dir, site=site.name)
    return FeedDoc(
        lang=lang,
        title=_xml_safe(title),
        subtitle=_xml_safe(t(lang, "feed_subtitle", templates_dir=site.templates_dir)),
        home_url=home_url or site.base_url.rstrip("/") + "/",
        author=_xml_safe(site.author),
        updated=max((i.updated for i in items), default=EMPTY_FEED_DATE),
        items=items,
        hub=settings.feeds.websub_hub,
    )


def render_json(doc: FeedDoc, self_url: str) -> bytes:
    """JSON Feed 1.1 (feedgen has none). Sorted keys and fixed indent: stable bytes."""
    feed: dict[str, Any] = {
        "version": JSONFEED_VERSION,
        "title": doc.title,
        "description": doc.subtitle,
        "home_page_url": doc.home_url,
        "feed_url": self_url,
        "language": doc.lang,
        "authors": [{"name": doc.author}],
        "items": [_json_item(item, doc.lang) for item in doc.items],
    }
    if doc.hub:
        feed["hubs"] = [{"type": "WebSub", "url": doc.hub}]
    text = json.dumps(feed, ensure_ascii=False, indent=2, sort_keys=True)
    return (text + "\n").encode("utf-8")


def _json_item(item: FeedItem, lang: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": item.id,
        "url": item.url,
        "title": item.title,
        "summary": item.summary,  # plain text, per the spec
        "content_html": item.content_html,
        "date_published": item.published.isoformat(),
        "date_modified": item.updated.isoformat(),
        "authors": [{"name": item.author}],
        "language": lang,
    }
    if item.tags:
        out["tags"] = list(item.tags)
    return out


def _item(brief: Brief, settings: Settings, lang: str) -> FeedItem:
    section = brief.section(lang)
    assert section is not None and brief.date is not None  # select_briefs saw to both
    url = settings.site.brief_url(brief.id, lang)
    content = render_blocks(_article(section, brief.title_in(lang)))
    if footer := brief.footer_in(lang):
        content += "\n" + render_footer(footer)
    return FeedItem(
        # The page URL: stable across rebuilds, unique per language, and a permalink.
        id=url,
        url=url,
        title=_xml_safe(brief.title_in(lang)),
        summary=_xml_safe(brief.summary_in(lang)),
        content_html=_xml_safe(str(content)),
        published=brief.date,
        updated=brief.date,
        tags=tuple(_xml_safe(tag) for tag in brief.tags_in(lang)),
        author=_xml_safe(brief.byline or settings.site.author),
    )


def _article(section: Section, title: str) -> tuple[Block, ...]:
    """The whole text under the headline: the first paragraph less the headline when it
    opens with it (an untitled brief's headline is its first sentence, and readers show
    the entry's title above its content)."""
    lede = section.lede_block
    rest = after_headline(lede.text, title) if lede else ""
    return tuple(b.after(rest) if b is lede else b for b in section.blocks if b is not lede or rest)


def _date(brief: Brief) -> datetime:
    assert brief.date is not None
    return brief.date


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub("", text)
