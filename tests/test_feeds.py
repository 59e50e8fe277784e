"""Feeds: RSS 2.0, Atom 1.0 (validated against RFC 4287's RELAX NG) and JSON Feed 1.1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest
from lxml import etree

from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.config import FeedSettings, Settings, SiteSettings
from briefcast.render.feeds import EMPTY_FEED_DATE, FeedSet, build_feeds

ROME = ZoneInfo("Europe/Rome")
ATOM_RNG = Path(__file__).parent / "data" / "atom.rng"
ATOM_NS = {"a": "http://www.w3.org/2005/Atom"}
CONTENT_NS = "{http://purl.org/rss/1.0/modules/content/}encoded"
BASE = "https://briefs.example.org"
SCRIPT = '<script>alert("x")</script>'


def settings(max_items: int = 50) -> Settings:
    # Everything given here, so neither config/briefcast.toml nor the environment leaks in.
    return Settings(
        site=SiteSettings(
            name="Test Brief", base_url=BASE, languages=["en", "it"], author="Test Desk"
        ),
        feeds=FeedSettings(max_items=max_items),
    )


def p(text: str) -> Block:
    return Block(BlockKind.PARAGRAPH, text)


def brief(
    id: str,
    when: datetime,
    langs: tuple[str, ...] = ("en",),
    *,
    blocks: tuple[Block, ...] | None = None,
    summary: str | None = None,
    tags: tuple[str, ...] = (),
) -> Brief:
    sections = tuple(
        Section(
            lang=lang,
            title=f"{id} title in {lang}",
            summary=summary,
            blocks=blocks or (p(f"{id} text in {lang}."),),
        )
        for lang in langs
    )
    return Brief(
        id=id,
        title=f"{id} title",
        date=when,
        sections=sections,
        tags=tags,
        footer=("Not investment advice.",),
    )


BILINGUAL = brief(
    "2026-01-07-bilingual",
    datetime(2026, 1, 7, 9, 30, tzinfo=ROME),
    ("en", "it"),
    tags=("EU", "Italy"),
    blocks=(
        p("First paragraph."),
        Block(BlockKind.SUBHEADING, "What changes"),
        Block(BlockKind.LIST_ITEM, "one"),
        Block(BlockKind.LIST_ITEM, "two"),
        Block(BlockKind.QUOTE, "A quote."),
    ),
)
ENGLISH_ONLY = brief("2026-01-05-english-only", datetime(2026, 1, 5, 18, 0, tzinfo=ROME))
SCRIPTED = brief(
    "2026-01-06-scripted",
    datetime(2026, 1, 6, 8, 0, tzinfo=UTC),
    summary=f"Summary {SCRIPT}",
    blocks=(p("Harmless opening."), p(f"Then {SCRIPT} and <b>bold</b> & more.")),
)
ITALIAN_ONLY = brief("2026-01-08-solo-italiano", datetime(2026, 1, 8, 7, 0, tzinfo=ROME), ("it",))
ARCHIVE = [ENGLISH_ONLY, BILINGUAL, ITALIAN_ONLY, SCRIPTED]


def many(n: int) -> list[Brief]:
    start = datetime(2025, 1, 1, 12, tzinfo=ROME)
    return [brief(f"b{i:03d}", start + timedelta(days=i)) for i in range(n)]


def url(lang: str, id: str) -> str:
    return f"{BASE}/{lang}/{id}/"


@pytest.fixture(scope="module")
def en() -> FeedSet:
    return build_feeds(ARCHIVE, settings(), "en")


@pytest.fixture(scope="module")
def it() -> FeedSet:
    return build_feeds(ARCHIVE, settings(), "it")


@pytest.fixture(scope="module")
def atom_schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(ATOM_RNG)))


# --- parsing: RSS and Atom with feedparser ---------------------------------------


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_parses_cleanly_newest_first(en: FeedSet, kind: str) -> None:
    d = feedparser.parse(getattr(en, kind))
    assert not d.bozo, d.get("bozo_exception")
    assert d.version == {"rss": "rss20", "atom": "atom10"}[kind]
    assert d.feed.language == "en"
    assert d.feed.title == "Test Brief (English)"
    assert [e.link for e in d.entries] == [
        url("en", "2026-01-07-bilingual"),
        url("en", "2026-01-06-scripted"),
        url("en", "2026-01-05-english-only"),
    ]
    assert [e.id for e in d.entries] == [e.link for e in d.entries]
    first = d.entries[0]
    assert first.title == "2026-01-07-bilingual title in en"
    assert [t.term for t in first.tags] == ["EU", "Italy"]
    assert first.author == "Test Desk"
    published = datetime(2026, 1, 7, 9, 30, tzinfo=ROME)
    assert datetime(*first.published_parsed[:6], tzinfo=UTC) == published
    assert "First paragraph." in first.summary
    assert "<h2>What changes</h2>" in first.content[0].value


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_other_language_keeps_only_its_briefs(it: FeedSet, kind: str) -> None:
    d = feedparser.parse(getattr(it, kind))
    assert not d.bozo
    assert d.feed.language == "it"
    assert d.feed.title == "Test Brief (italiano)"
    assert [e.link for e in d.entries] == [
        url("it", "2026-01-08-solo-italiano"),
        url("it", "2026-01-07-bilingual"),
    ]
    assert d.entries[1].title == "2026-01-07-bilingual title in it"


def test_feed_links(en: FeedSet) -> None:
    rss = etree.fromstring(en.rss).find("channel")
    assert rss.findtext("link") == BASE + "/"  # feedgen's "last link added" trap
    assert rss.findtext("language") == "en"
    self_link = rss.find("{http://www.w3.org/2005/Atom}link")
    assert self_link.get("rel") == "self"
    assert self_link.get("href") == f"{BASE}/en/rss.xml"

    atom = etree.fromstring(en.atom)
    assert atom.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    links = {link.get("rel"): link.get("href") for link in atom.findall("a:link", ATOM_NS)}
    assert links == {"self": f"{BASE}/en/atom.xml", "alternate": BASE + "/"}

    feed = json.loads(en.json)
    assert feed["feed_url"] == f"{BASE}/en/feed.json"
    assert feed["home_page_url"] == BASE + "/"


def test_feed_date_is_newest_item_not_build_time(en: FeedSet) -> None:
    newest = datetime(2026, 1, 7, 9, 30, tzinfo=ROME)
    atom = etree.fromstring(en.atom)
    assert datetime.fromisoformat(atom.findtext("a:updated", namespaces=ATOM_NS)) == newest
    last_build = etree.fromstring(en.rss).findtext("channel/lastBuildDate")
    assert parsedate_to_datetime(last_build) == newest


def test_cap_keeps_the_newest(atom_schema: etree.RelaxNG) -> None:
    archive = many(60)
    feeds = build_feeds(archive, settings(), "en")
    expected = [url("en", f"b{i:03d}") for i in range(59, 9, -1)]
    for kind in ("rss", "atom"):
        d = feedparser.parse(getattr(feeds, kind))
        assert not d.bozo
        assert [e.link for e in d.entries] == expected
    assert [item["url"] for item in json.loads(feeds.json)["items"]] == expected
    assert atom_schema.validate(etree.fromstring(feeds.atom)), atom_schema.error_log


def test_cap_follows_settings() -> None:
    feeds = build_feeds(many(10), settings(max_items=3), "en")
    assert len(json.loads(feeds.json)["items"]) == 3
    assert len(feedparser.parse(feeds.atom).entries) == 3


def test_same_date_orders_by_id() -> None:
    when = datetime(2026, 2, 1, 9, tzinfo=ROME)
    briefs = [brief(id, when) for id in ("c", "a", "b")]
    one = build_feeds(briefs, settings(), "en")
    other = build_feeds(list(reversed(briefs)), settings(), "en")
    assert one == other
    assert [i["id"] for i in json.loads(one.json)["items"]] == [url("en", x) for x in "abc"]


# --- Atom against RFC 4287's schema ------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "it"])
def test_atom_validates_against_rfc4287(atom_schema: etree.RelaxNG, lang: str) -> None:
    feeds = build_feeds(ARCHIVE, settings(), lang)
    assert atom_schema.validate(etree.fromstring(feeds.atom)), atom_schema.error_log


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint not installed")
def test_atom_validates_with_xmllint(en: FeedSet, tmp_path: Path) -> None:
    feed = tmp_path / "atom.xml"
    feed.write_bytes(en.atom)
    result = subprocess.run(
        ["xmllint", "--noout", "--relaxng", str(ATOM_RNG), str(feed)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "validates" in result.stderr


# --- determinism -----------------------------------------------------------------


def test_rebuild_is_byte_identical() -> None:
    first = build_feeds(ARCHIVE, settings(), "en")
    time.sleep(1)  # a build-time stamp anywhere would show up as a difference
    again = build_feeds(list(reversed(ARCHIVE)), settings(), "en")
    assert first.rss == again.rss
    assert first.atom == again.atom
    assert first.json == again.json


def test_empty_archive_is_valid_and_dated_deterministically(atom_schema: etree.RelaxNG) -> None:
    first = build_feeds([], settings(), "en")
    time.sleep(1)
    assert build_feeds([], settings(), "en") == first
    for kind in ("rss", "atom"):
        d = feedparser.parse(getattr(first, kind))
        assert not d.bozo
        assert d.entries == []
    atom = etree.fromstring(first.atom)
    assert atom_schema.validate(atom), atom_schema.error_log
    assert datetime.fromisoformat(atom.findtext("a:updated", namespaces=ATOM_NS)) == (
        EMPTY_FEED_DATE
    )
    last_build = etree.fromstring(first.rss).findtext("channel/lastBuildDate")
    assert parsedate_to_datetime(last_build) == EMPTY_FEED_DATE
    assert json.loads(first.json)["items"] == []


# --- JSON Feed 1.1 ---------------------------------------------------------------
# feedparser 6.0 (the newest release) reads no JSON Feed, so the spec's rules are
# checked here by hand: https://www.jsonfeed.org/version/1.1/


def test_json_feed_follows_the_1_1_spec(en: FeedSet) -> None:
    feed = json.loads(en.json)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == "Test Brief (English)"
    assert feed["language"] == "en"
    assert feed["authors"] == [{"name": "Test Desk"}]
    assert [item["id"] for item in feed["items"]] == [
        url("en", "2026-01-07-bilingual"),
        url("en", "2026-01-06-scripted"),
        url("en", "2026-01-05-english-only"),
    ]
    for item in feed["items"]:
        assert {"id", "url", "title", "content_html", "summary", "date_published", "language"} <= (
            item.keys()
        )
        assert isinstance(item["id"], str)
        assert item["url"].startswith("https://")
        assert item["language"] == "en"
        # RFC 3339: a full date-time with an offset.
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)", item["date_published"]
        )
    first = feed["items"][0]
    assert datetime.fromisoformat(first["date_published"]) == datetime(
        2026, 1, 7, 9, 30, tzinfo=ROME
    )
    assert first["tags"] == ["EU", "Italy"]
    assert first["summary"] == "First paragraph."
    assert first["content_html"].startswith("<p>First paragraph.</p>")
    assert en.json.endswith(b"\n")


def test_content_renders_blocks(en: FeedSet) -> None:
    html = json.loads(en.json)["items"][0]["content_html"]
    assert "<h2>What changes</h2>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html  # consecutive items: one list
    assert "<blockquote><p>A quote.</p></blockquote>" in html
    assert "<small>Not investment advice.</small>" in html


# --- a brief's text is never markup -------------------------------------------------


def test_script_is_escaped_in_every_format(en: FeedSet) -> None:
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    for raw in (en.rss, en.atom):
        assert b"<script" not in raw.lower()

    rss_item = etree.fromstring(en.rss).findall("channel/item")[1]
    assert rss_item.findtext("link") == url("en", "2026-01-06-scripted")
    assert escaped in rss_item.findtext(CONTENT_NS)
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in rss_item.findtext(CONTENT_NS)
    # RSS <description> is HTML to readers, so the summary goes out escaped too.
    assert rss_item.findtext("description") == f"Summary {escaped}"

    entry = etree.fromstring(en.atom).findall("a:entry", ATOM_NS)[1]
    content = entry.find("a:content", ATOM_NS)
    assert content.get("type") == "html"
    assert escaped in content.text
    assert entry.find("a:summary", ATOM_NS).text == f"Summary {escaped}"

    item = json.loads(en.json)["items"][1]
    assert escaped in item["content_html"]
    assert "<script" not in item["content_html"]
    # JSON Feed's summary is plain text by spec: the characters stay as written.
    assert item["summary"] == f"Summary {SCRIPT}"

    for kind in ("rss", "atom"):
        html = feedparser.parse(getattr(en, kind)).entries[1].content[0].value
        assert "&lt;script&gt;" in html
        assert "<script" not in html


def test_characters_xml_forbids_do_not_break_the_feeds(atom_schema: etree.RelaxNG) -> None:
    # Word writes \x0b for a manual line break; lxml refuses it outright.
    b = brief("2026-03-01-word", datetime(2026, 3, 1, tzinfo=ROME), blocks=(p("a\x0bb\x00c"),))
    feeds = build_feeds([b], settings(), "en")
    assert not feedparser.parse(feeds.rss).bozo
    assert atom_schema.validate(etree.fromstring(feeds.atom))
    assert json.loads(feeds.json)["items"][0]["content_html"].startswith("<p>abc</p>")


def test_undated_brief_is_refused() -> None:
    naive = Brief(id="naive", title="t", date=datetime(2026, 1, 9), sections=ENGLISH_ONLY.sections)
    missing = Brief(id="none", title="t", date=None, sections=ENGLISH_ONLY.sections)
    for bad in (naive, missing):
        with pytest.raises(ValueError, match=bad.id):
            build_feeds([bad], settings(), "en")


def test_only_the_adapter_imports_feedgen() -> None:
    package = Path(__file__).parent.parent / "briefcast"
    importers = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if re.search(r"^\s*(from|import)\s+feedgen\b", path.read_text("utf-8"), re.MULTILINE)
    }
    assert importers == {"render/feedgen_adapter.py"}
