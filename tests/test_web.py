"""The brief's web page: one per language, the target of "view in browser" and of feed items."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from lxml import html as lxml_html

from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.config import Settings, SiteSettings
from briefcast.render.web import build_page, build_pages

ROME = ZoneInfo("Europe/Rome")
BASE = "https://briefs.example.org"
SCRIPT = '<script>alert("x")</script>'


def settings(languages: tuple[str, ...] = ("en", "it")) -> Settings:
    # Everything given here, so neither config/briefcast.toml nor the environment leaks in.
    return Settings(site=SiteSettings(name="Test Brief", base_url=BASE, languages=list(languages)))


def section(lang: str, title: str, *texts: tuple[BlockKind, str]) -> Section:
    return Section(lang=lang, title=title, blocks=tuple(Block(k, t) for k, t in texts))


P, H, LI, Q = BlockKind.PARAGRAPH, BlockKind.SUBHEADING, BlockKind.LIST_ITEM, BlockKind.QUOTE

BILINGUAL = Brief(
    id="2026-01-07-rome",
    title="Rome and Brussels",
    date=datetime(2026, 1, 7, 9, 30, tzinfo=ROME),
    tags=("EU", "Italy"),
    footer=("Not investment advice.", "© Europolitiche"),
    sections=(
        section(
            "en",
            "Rome and Brussels",
            (P, "The budget talks resume."),
            (H, "What changes"),
            (LI, "Deficit path"),
            (LI, "Pension reform"),
            (P, f"A note with {SCRIPT} in it."),
            (Q, "We will see."),
            (LI, "A second list"),
        ),
        section(
            "it",
            "Roma e Bruxelles",
            (P, "Riprendono i negoziati sul bilancio."),
            (H, "Cosa cambia"),
            (LI, "Percorso del deficit"),
            (LI, "Riforma delle pensioni"),
        ),
    ),
)
ENGLISH_ONLY = Brief(
    id="2026-01-05-only-english",
    title="Only in English",
    date=datetime(2026, 1, 5, 18, 0, tzinfo=ROME),
    sections=(section("en", "Only in English", (P, "English text only.")),),
)


def doc(page: str) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(page)


@pytest.fixture(scope="module")
def en() -> lxml_html.HtmlElement:
    return doc(build_page(BILINGUAL, settings(), "en"))


@pytest.fixture(scope="module")
def it() -> lxml_html.HtmlElement:
    return doc(build_page(BILINGUAL, settings(), "it"))


def test_page_is_a_complete_html5_document() -> None:
    page = build_page(BILINGUAL, settings(), "en")
    assert page.startswith('<!DOCTYPE html>\n<html lang="en"')
    assert page.rstrip().endswith("</html>")
    tree = doc(page)
    assert tree.find("head/meta[@charset]").get("charset") == "utf-8"
    assert "width=device-width" in tree.find("head/meta[@name='viewport']").get("content")
    assert tree.find("head/style") is not None  # the inline stylesheet


def test_structure(en: lxml_html.HtmlElement) -> None:
    assert en.get("lang") == "en"
    assert en.findtext("head/title") == "Rome and Brussels · Test Brief"
    assert [h.text_content() for h in en.iter("h1")] == ["Rome and Brussels"]
    assert [h.text_content() for h in en.iter("h2")] == ["What changes"]
    body = en.find_class("body")[0]
    lists = body.findall("ul")
    # Consecutive list items make one list; an item after other blocks starts another.
    assert [[li.text for li in ul] for ul in lists] == [
        ["Deficit path", "Pension reform"],
        ["A second list"],
    ]
    assert [q.text_content() for q in body.iter("blockquote")] == ["We will see."]
    tags = en.find_class("tags")[0]
    assert [t.text_content() for t in tags] == ["EU", "Italy"]
    # Each tag links to its archive on the public site.
    assert [a.get("href") for a in tags.iter("a")] == [
        f"{BASE}/en/tags/eu/",
        f"{BASE}/en/tags/italy/",
    ]
    disclaimer = en.find_class("disclaimer")[0]
    assert [p.text for p in disclaimer] == ["Not investment advice.", "© Europolitiche"]


def test_script_in_the_brief_is_text_not_a_script(en: lxml_html.HtmlElement) -> None:
    page = build_page(BILINGUAL, settings(), "en")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert list(en.iter("script")) == []
    assert SCRIPT in en.find_class("body")[0].text_content()


def test_dates_as_each_language_writes_them(
    en: lxml_html.HtmlElement, it: lxml_html.HtmlElement
) -> None:
    assert en.find(".//time").text == "January 7, 2026"
    assert it.find(".//time").text == "7 gennaio 2026"
    assert it.find(".//time").get("datetime") == "2026-01-07T09:30:00+01:00"
    assert "Pubblicato" in it.find_class("meta")[0].text_content()


def test_italian_page_shows_the_italian_text(it: lxml_html.HtmlElement) -> None:
    assert it.get("lang") == "it"
    assert it.find(".//article").get("lang") == "it"
    assert it.findtext(".//h1") == "Roma e Bruxelles"
    assert [h.text for h in it.iter("h2")] == ["Cosa cambia"]
    assert not it.find_class("note")


def test_links_to_other_languages_and_feeds(
    en: lxml_html.HtmlElement, it: lxml_html.HtmlElement
) -> None:
    nav = en.find(".//nav")
    assert [(a.get("href"), a.get("hreflang"), a.text) for a in nav.iter("a")] == [
        (f"{BASE}/it/2026-01-07-rome/", "it", "Read in Italian")
    ]
    assert [a.text for a in it.find(".//nav").iter("a")] == ["Leggi in inglese"]
    assert en.find("head/link[@rel='canonical']").get("href") == f"{BASE}/en/2026-01-07-rome/"
    hreflangs = {
        link.get("hreflang"): link.get("href")
        for link in en.findall("head/link[@rel='alternate'][@hreflang]")
    }
    assert hreflangs == {"en": f"{BASE}/en/2026-01-07-rome/", "it": f"{BASE}/it/2026-01-07-rome/"}
    feeds = {
        link.get("type"): link.get("href")
        for link in it.findall("head/link[@rel='alternate'][@type]")
    }
    assert feeds == {
        "application/atom+xml": f"{BASE}/it/atom.xml",
        "application/rss+xml": f"{BASE}/it/rss.xml",
        "application/feed+json": f"{BASE}/it/feed.json",
    }


def test_missing_language_says_so_and_shows_what_exists() -> None:
    page = doc(build_page(ENGLISH_ONLY, settings(), "it"))
    assert page.get("lang") == "it"
    note = page.find_class("note")[0].text_content()
    assert note == "Questo brief non è disponibile in italiano. Eccolo in inglese."
    article = page.find(".//article")
    assert article.get("lang") == "en"  # the text shown is English, and says so
    assert page.findtext(".//h1") == "Only in English"
    # The brief's one paragraph is its standfirst (it has no summary), printed once.
    assert article.find_class("standfirst")[0].text_content().strip() == "English text only."
    assert article.text_content().count("English text only.") == 1
    # Search engines are sent to the real page; no link to a version that does not exist.
    assert page.find("head/link[@rel='canonical']").get("href") == (
        f"{BASE}/en/2026-01-05-only-english/"
    )
    assert [a.get("hreflang") for a in page.find(".//nav").iter("a")] == ["en"]
    assert page.find(".//time").text == "5 gennaio 2026"


def test_build_pages_covers_every_site_language() -> None:
    pages = build_pages(ENGLISH_ONLY, settings())
    assert list(pages) == ["en", "it"]
    assert not doc(pages["en"]).find_class("note")
    assert doc(pages["it"]).find_class("note")


def test_a_new_language_is_only_data() -> None:
    # No German words file exists: words fall back to English, dates still come out German.
    pages = build_pages(BILINGUAL, settings(("en", "it", "de")))
    de = doc(pages["de"])
    assert de.get("lang") == "de"
    assert de.find(".//time").text == "7. Januar 2026"
    assert de.find(".//article").get("lang") == "en"
    assert de.find_class("note")


def test_brief_without_any_text() -> None:
    empty = Brief(id="x", title="Title only", date=None, sections=())
    page = doc(build_page(empty, settings(), "it"))
    assert page.find_class("note")[0].text_content() == "Questo brief non ha ancora un testo."
    assert page.findtext(".//h1") == "Title only"
    assert page.find(".//time") is None
