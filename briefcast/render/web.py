"""One HTML page per brief per language: the "view in browser" link and every feed item's link.

Pure: a brief and settings in, the page as a string out. Languages are data: every
word comes from templates/i18n, every date from babel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from jinja2 import Environment
from markupsafe import Markup, escape

from briefcast.brief import Brief, Section
from briefcast.config import Settings
from briefcast.i18n import language_name, long_date, t
from briefcast.render import layout
from briefcast.render.blocks import block_html, render_blocks
from briefcast.render.templating import environment


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    label: str
    lang: str = ""
    type: str = ""


def _env(templates_dir: Path | None) -> Environment:
    # autoescape=True, not select_autoescape: the file ends in .j2, not .html.
    return environment("web", templates_dir, autoescape=True)


def build_pages(brief: Brief, settings: Settings) -> dict[str, str]:
    """The page in every language of the site, keyed by language code."""
    return {lang: build_page(brief, settings, lang) for lang in settings.site.languages}


def build_page(brief: Brief, settings: Settings, lang: str) -> str:
    """The brief's page in ``lang``; without text in ``lang``, it says so and shows what exists."""
    site = settings.site
    words_from = site.templates_dir
    section = _shown_section(brief, lang, site.languages)
    text_lang = section.lang if section else lang
    note = _missing_note(lang, section, words_from)
    own_url = site.brief_url(brief.id, lang)
    # A page standing in for a missing translation points search engines at the real one.
    canonical = site.brief_url(brief.id, text_lang) if text_lang in site.languages else own_url
    # Only languages the brief is written in: a link must lead to text in that language.
    written = [code for code in site.languages if brief.section(code) is not None]
    versions = [
        Link(
            site.brief_url(brief.id, code),
            t(lang, "jump_to", templates_dir=words_from, language=language_name(code, lang)),
            lang=code,
        )
        for code in written
        if code != lang
    ]
    alternates = [Link(site.brief_url(brief.id, code), "", lang=code) for code in written]
    # Each tag links to its archive on the public site (a tag with no slug, to nothing).
    tags = brief.tags_in(text_lang)
    tag_links = [Link(layout.tag_url(site, lang, tag), tag) for tag in tags]
    feeds = [
        Link(site.feed_url(lang, "atom"), "Atom", type=layout.FEED_TYPES["atom"]),
        Link(site.feed_url(lang, "rss"), "RSS", type=layout.FEED_TYPES["rss"]),
        Link(site.feed_url(lang, "json"), "JSON Feed", type=layout.FEED_TYPES["json"]),
    ]
    template = _env(site.templates_dir).get_template("page.html.j2")
    return template.render(
        lang=lang,
        dir=_direction(lang),
        text_lang=text_lang,
        text_dir=_direction(text_lang),
        site_name=site.name,
        home_url=layout.url(site, layout.home(lang)),  # the archive in the page's language
        canonical=canonical,
        title=brief.title_in(text_lang),
        summary=brief.summary_in(text_lang),
        standfirst=_standfirst(brief, text_lang),
        date_iso=brief.date.isoformat() if brief.date else "",
        date_text=long_date(brief.date, lang) if brief.date else "",
        tags=tags,
        byline=(
            t(lang, "byline", templates_dir=words_from, name=brief.byline) if brief.byline else ""
        ),
        author=brief.byline or site.author,
        tag_links=tag_links,
        og_locale=layout.og_locale(lang),
        og_locale_alternates=[layout.og_locale(code) for code in written if code != lang],
        body=render_blocks(brief.body_in(section.lang)) if section else Markup(""),
        footer=brief.footer_in(text_lang),
        note=note,
        versions=versions,
        alternates=alternates,
        feeds=feeds,
        feed_title=t(lang, "feed_title", templates_dir=words_from, site=site.name),
        subscribe_url=site.subscribe_link(lang),
        words={
            key: t(lang, key, templates_dir=words_from)
            for key in (
                "published",
                "tags",
                "other_languages",
                "follow_feeds",
                "follow_feeds_how",
                "subscribe_link",
            )
        },
    )


def _standfirst(brief: Brief, lang: str) -> Markup:
    """The standfirst as the page shows it: the lede's links and emphasis kept."""
    lede = brief.standfirst_block(lang)
    return block_html(lede) if lede else Markup(escape(brief.summary_in(lang)))


def _shown_section(brief: Brief, lang: str, site_languages: list[str]) -> Section | None:
    """The section in ``lang``, else the first in the site's order of languages, else any."""
    for code in (lang, *site_languages):
        section = brief.section(code)
        if section is not None:
            return section
    return brief.sections[0] if brief.sections else None


def _missing_note(lang: str, shown: Section | None, templates_dir: Path | None) -> str:
    if shown is None:
        return t(lang, "no_text", templates_dir=templates_dir)
    if shown.lang == lang:
        return ""
    return t(
        lang,
        "missing_language",
        templates_dir=templates_dir,
        missing=language_name(lang, lang),
        available=language_name(shown.lang, lang),
    )


@cache
def _direction(lang: str) -> str:
    try:
        return Locale.parse(lang).text_direction
    except (ValueError, LookupError, UnknownLocaleError):
        return "ltr"
