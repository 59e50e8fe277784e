"""The one module that imports feedgen (lightly maintained, pinned): RSS 2.0 and Atom 1.0.

The rest of briefcast describes a feed with the plain dataclasses below; only this
file knows feedgen's API and its traps, so replacing feedgen means rewriting this
file alone. The traps, measured on feedgen 1.0.0:

- it stamps ``now()`` into the feed's and every entry's ``updated`` (and RSS
  ``lastBuildDate``) unless they are set, which breaks byte-identical rebuilds and
  HTTP 304s: every date below is set explicitly;
- the RSS channel ``<link>`` is the *last* link added, and the RSS
  ``<atom:link rel="self">`` the first self link: self goes first, the site last;
- ``add_entry`` prepends unless ``order="append"``;
- RSS ``<author>`` needs an e-mail address, so the author goes in ``dc:creator``;
- its default generator string carries feedgen's version: we name ourselves;
- an Atom *entry's* link loses rel/type/hreflang (the loop variable is shadowed):
  harmless, as rel defaults to alternate, but don't count on those attributes;
- RSS gets only the first ``rel="self"`` of the links as ``<atom:link>``: a WebSub hub
  (``rel="hub"``) is added to the RSS channel by :class:`_Generator` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem
from markupsafe import escape

from briefcast.render.layout import FEED_TYPES

GENERATOR = "briefcast"
ATOM_NS = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True, slots=True)
class FeedItem:
    id: str
    url: str
    title: str  # plain text
    summary: str  # plain text
    content_html: str  # HTML in which the brief's own text is already escaped
    published: datetime  # timezone-aware
    updated: datetime
    tags: tuple[str, ...]
    author: str


@dataclass(frozen=True, slots=True)
class FeedDoc:
    lang: str
    title: str
    subtitle: str
    home_url: str
    author: str
    updated: datetime  # timezone-aware; never now(), see above
    items: tuple[FeedItem, ...]  # in the order readers should see them
    hub: str | None = None  # a WebSub hub: <link rel="hub"> in both formats


def render_rss(doc: FeedDoc, self_url: str) -> bytes:
    return _generator(doc, self_url, FEED_TYPES["rss"]).rss_str(pretty=True)


def render_atom(doc: FeedDoc, self_url: str) -> bytes:
    return _generator(doc, self_url, FEED_TYPES["atom"]).atom_str(pretty=True)


class _Generator(FeedGenerator):
    """feedgen's generator, with the WebSub hub in RSS as ``<atom:link rel="hub">`` right
    after the self link (feedgen writes only the self link there)."""

    hub: str | None = None

    def _create_rss(self, extensions: bool = True) -> Any:
        feed, doc = super()._create_rss(extensions=extensions)
        if self.hub:
            channel = feed.find("channel")
            link = xml_elem(f"{{{ATOM_NS}}}link", channel, href=self.hub, rel="hub")
            channel.find(f"{{{ATOM_NS}}}link").addnext(link)  # moved after the self link
        return feed, doc


def _generator(doc: FeedDoc, self_url: str, self_type: str) -> FeedGenerator:
    fg = _Generator()
    fg.hub = doc.hub
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(self_url)
    fg.title(doc.title)
    fg.subtitle(doc.subtitle)
    fg.language(doc.lang)
    fg.author(name=doc.author)
    fg.generator(GENERATOR)
    fg.updated(doc.updated)
    # Order matters: RSS takes its channel <link> from the last link added.
    fg.link(href=self_url, rel="self", type=self_type)
    if doc.hub:  # Atom only: see _Generator for RSS
        fg.link(href=doc.hub, rel="hub")
    fg.link(href=doc.home_url, rel="alternate", type="text/html")
    for item in doc.items:
        _fill_entry(fg.add_entry(order="append"), item, doc.lang)
    return fg


def _fill_entry(fe: FeedEntry, item: FeedItem, lang: str) -> None:
    # guid() sets the Atom id too; the URL is a permalink, so RSS may say so.
    fe.guid(item.id, permalink=item.id == item.url)
    fe.title(item.title)
    fe.link(href=item.url, rel="alternate", type="text/html", hreflang=lang)
    fe.published(item.published)
    fe.updated(item.updated)
    # summary() also fills RSS <description>, which readers render as HTML: a plain
    # "<script>" there would come alive, so the summary goes out escaped, as html.
    fe.summary(str(escape(item.summary)), type="html")
    # content() becomes <content:encoded> in RSS.
    fe.content(item.content_html, type="html")
    fe.author(name=item.author)
    fe.dc.dc_creator(item.author)
    for tag in item.tags:
        fe.category(term=tag)
