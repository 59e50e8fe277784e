"""The public site's own pages: each language's archive (newest first, in pages of
``layout.PAGE_SIZE``), each tag's archive, and the root page that sends a visitor to a
language. The briefs' pages are ``render.web``'s and the feeds ``render.feeds``'.

Pure: entries and settings in, ``(path, HTML)`` out; ``briefcast.site`` writes them. As for
the brief's page, every word comes from templates/i18n and every date from babel, and
nothing depends on when the site is built: the same archive gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from briefcast.brief import Brief
from briefcast.config import Settings, SiteSettings
from briefcast.i18n import language_name, long_date, t
from briefcast.render import layout
from briefcast.render.web import Link, _direction, _env

Page = tuple[str, str]  # (path of the file inside the site, its HTML)


@dataclass(frozen=True, slots=True)
class Entry:
    """What an archive page shows of a brief: light enough to hold the whole archive."""

    id: str
    date: datetime
    tags: tuple[str, ...]
    texts: tuple[tuple[str, str, str], ...]  # (language, title, summary), each it is written in

    @classmethod
    def of(cls, brief: Brief) -> Entry:
        if brief.date is None:  # the store dates every brief it archives
            raise ValueError(f"brief {brief.id!r} has no date")
        texts = tuple(
            (code, brief.title_in(code), brief.summary_in(code)) for code in brief.languages
        )
        return cls(brief.id, brief.date, brief.tags, texts)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(code for code, _title, _summary in self.texts)

    def text(self, lang: str) -> tuple[str, str]:
        """Title and summary in ``lang`` (a language the brief is written in)."""
        return next((title, summary) for code, title, summary in self.texts if code == lang)


@dataclass(frozen=True, slots=True)
class Tag:
    slug: str
    name: str  # as the newest brief carrying it writes it


def tags_of(entries: Iterable[Entry]) -> dict[str, Tag]:
    """Every tag with a page, by slug, in slug order. Tags that differ only in case or
    accents ("EU", "eu") share one slug and one page; a tag with no slug gets none."""
    found: dict[str, Tag] = {}
    for entry in entries:  # newest first: the first spelling met is the newest
        for name in entry.tags:
            slug = layout.tag_slug(name)
            if slug and slug not in found:
                found[slug] = Tag(slug, name)
    return dict(sorted(found.items()))


def archive_pages(
    entries: Sequence[Entry],
    settings: Settings,
    lang: str,
    *,
    tag: Tag | None = None,
    elsewhere: Collection[str] = (),
) -> list[Page]:
    """The archive of ``lang`` (of ``tag`` in ``lang`` when given): the entries written in
    ``lang``, newest first as given, ``layout.PAGE_SIZE`` a page. ``elsewhere``: the other
    languages that have this archive too (a tag's may not), for the hreflang links; the
    language switch leads to the language's own archive otherwise."""
    site = settings.site
    words_from = site.templates_dir
    folder = layout.tag_folder(tag.slug) if tag else ""
    listed = [e for e in entries if lang in e.languages]
    size = layout.PAGE_SIZE
    pages = max(1, -(-len(listed) // size))
    if tag:
        heading = t(lang, "site_tagged", templates_dir=words_from, tag=tag.name)
        feed_title = t(
            lang, "site_tag_feed_title", templates_dir=words_from, site=site.name, tag=tag.name
        )
    else:
        heading = t(lang, "site_archive", templates_dir=words_from)
        feed_title = t(lang, "feed_title", templates_dir=words_from, site=site.name)
    description = t(lang, "feed_subtitle", templates_dir=words_from)
    languages = [code for code in site.languages if code == lang or code in elsewhere]
    switch = [
        Link(
            layout.url(site, layout.home(code, folder if code in languages else "")),
            language_name(code, code),
            lang=code,
        )
        for code in site.languages
    ]
    feeds = [
        Link(layout.url(site, layout.feed(lang, kind, folder)), label, type=layout.FEED_TYPES[kind])
        for kind, label in (("atom", "Atom"), ("rss", "RSS"), ("json", "JSON Feed"))
    ]
    template = _env(words_from).get_template("archive.html.j2")
    out = []
    for number in range(1, pages + 1):
        page_text = t(
            lang, "site_page_of", templates_dir=words_from, page=str(number), pages=str(pages)
        )
        here = layout.listing(lang, number, folder)
        # Page 1 of each language is the same archive; later pages have no equivalent.
        alternates = (
            [Link(layout.url(site, layout.home(code, folder)), "", lang=code) for code in languages]
            if number == 1
            else []
        )
        if number == 1 and not tag:
            alternates.append(Link(layout.url(site), "", lang="x-default"))
        html = template.render(
            lang=lang,
            dir=_direction(lang),
            site_name=site.name,
            home_url=layout.url(site, layout.home(lang)),
            title=heading if number == 1 else f"{heading} ({page_text})",
            heading=heading,
            description=description,
            canonical=layout.url(site, here),
            alternates=alternates,
            og_locale=layout.og_locale(lang),
            og_locale_alternates=[layout.og_locale(c) for c in languages if c != lang],
            switch=switch,
            items=[_item(e, site, lang) for e in listed[(number - 1) * size : number * size]],
            page_text=page_text,
            pages=pages,
            prev_url=layout.url(site, layout.listing(lang, number - 1, folder))
            if number > 1
            else "",
            next_url=(
                layout.url(site, layout.listing(lang, number + 1, folder)) if number < pages else ""
            ),
            feeds=feeds,
            feed_title=feed_title,
            subscribe_url=site.subscribe_link(lang),
            words=_words(lang, words_from),
        )
        out.append((here + layout.INDEX, html))
    return out


def root_page(settings: Settings) -> str:
    """``index.html`` at the root: a link to each language and an immediate refresh to the
    first (a server that reads Accept-Language can do better: briefcast serve does)."""
    site = settings.site
    first = site.languages[0]
    languages = [
        Link(layout.url(site, layout.home(code)), language_name(code, code), lang=code)
        for code in site.languages
    ]
    choose = dict.fromkeys(
        t(code, "site_choose_language", templates_dir=site.templates_dir) for code in site.languages
    )
    return (
        _env(site.templates_dir)
        .get_template("root.html.j2")
        .render(
            lang=first,
            dir=_direction(first),
            site_name=site.name,
            target=layout.url(site, layout.home(first)),
            root_url=layout.url(site),
            languages=languages,
            choose=" · ".join(choose),
            og_locale=layout.og_locale(first),
            subscribe_url=site.subscribe_link(first),
            words=_words(first, site.templates_dir),
        )
    )


def _item(entry: Entry, site: SiteSettings, lang: str) -> dict[str, Any]:
    title, summary = entry.text(lang)
    return {
        "url": site.brief_url(entry.id, lang),
        "title": title,
        "summary": summary,
        "date_iso": entry.date.isoformat(),
        "date_text": long_date(entry.date, lang),
        "tags": [Link(layout.tag_url(site, lang, tag), tag) for tag in entry.tags],
    }


def _words(lang: str, templates_dir: Path | None) -> dict[str, str]:
    keys = (
        "tags",
        "follow_feeds",
        "follow_feeds_how",
        "subscribe_link",
        "site_newer",
        "site_older",
        "site_nothing_yet",
        "site_language",
    )
    return {key: t(lang, key, templates_dir=templates_dir) for key in keys}
