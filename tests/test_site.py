"""The public site: built whole from the published archive, swapped in whole, once per run.

End to end through the CLI (``publish --send --channels feed,web``), then in process: the
tree, the pages' metadata and links, tags and their feeds, confinement, the swap as a reader
sees it, idempotence and recovery through the send ledger, WebSub pings to a loopback hub."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import feedparser
import pytest
from lxml import etree
from lxml import html as lxml_html
from test_cli import SEEDS, briefcast, one_line_error

from briefcast import site
from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.config import DatabaseSettings, FeedSettings, Settings, SiteSettings, load_settings
from briefcast.errors import ConfigError
from briefcast.render import layout
from briefcast.safe_io import OutsideFolder, write_inside
from briefcast.send_ledger import SendKey, SendLedger
from briefcast.store import Store
from briefcast.websub import Pings

ROME = ZoneInfo("Europe/Rome")
BASE = "https://briefs.example.org"
ATOM_RNG = Path(__file__).parent / "data" / "atom.rng"
ATOM = "{http://www.w3.org/2005/Atom}"
FEEDS = ("rss.xml", "atom.xml", "feed.json")
SECRET = "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET"


# --- helpers ------------------------------------------------------------------------------


def make_settings(tmp_path: Path, hub: str | None = None) -> Settings:
    # Everything given here, so neither config/briefcast.toml nor the environment leaks in.
    return Settings(
        site=SiteSettings(
            name="Test Brief",
            base_url=BASE,
            languages=["en", "it"],
            author="Test Desk",
            public_dir=tmp_path / "public",
        ),
        feeds=FeedSettings(websub_hub=hub),
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'b.db'}"),
    )


def make(
    id: str, when: datetime, langs: tuple[str, ...] = ("en", "it"), tags: tuple[str, ...] = ()
) -> Brief:
    sections = tuple(
        Section(
            lang,
            (Block(BlockKind.PARAGRAPH, f"{id} text in {lang}."),),
            title=f"{id} title in {lang}",
            summary=f"{id} summary in {lang}",
        )
        for lang in langs
    )
    return Brief(id=id, title=id, date=when, sections=sections, tags=tags, digest=f"sha-{id}")


def day(n: int) -> datetime:
    return datetime(2026, 1, 1, 9, tzinfo=ROME) + timedelta(days=n)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store(settings.database.url) as store:
        yield store


def publish(store: Store, *briefs: Brief) -> None:
    store.archive(briefs, published=True, tz=ROME)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (through its symlink), by path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


def served(settings: Settings, url: str) -> Path:
    """The file that answers ``url``."""
    assert url.startswith(BASE + "/"), url
    path = url.removeprefix(BASE + "/")
    return settings.site.public_dir / (
        path + "index.html" if path.endswith("/") or not path else path
    )


def page(path: Path) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(path.read_text("utf-8"))


def meta(doc: lxml_html.HtmlElement, name: str) -> list[str]:
    found = doc.xpath(f"//head/meta[@property='{name}' or @name='{name}']/@content")
    return [str(value) for value in found]


def beside(settings: Settings) -> list[str]:
    """What is beside public_dir that is briefcast's site (not the database)."""
    parent = settings.site.public_dir.parent
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(("public", ".public")))


# --- through the CLI ------------------------------------------------------------------------


BRIEF_2 = """---
id: later-brief
title:
  en: A later brief
  it: Un brief successivo
date: 2026-02-01 10:00
tags: [ucraina, "../../x", "🇪🇺"]
summary:
  en: What happened later.
  it: Cosa è successo dopo.
---
[en]
Later, more happened.

[it]
Più tardi, è successo altro.
"""


def beside_public(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("b.db"))


def tree(folder: Path) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in files(folder).items()}


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_publish_send_feed_and_web_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET, raising=False)  # the email channel's; not needed here
    monkeypatch.setenv("BRIEFCAST_SITE__BASE_URL", BASE)
    public = tmp_path / "public"
    first = SEEDS[1]  # 001: bilingual, dated 7 January 2026
    second = tmp_path / "later.md"
    second.write_text(BRIEF_2, "utf-8")

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        result = briefcast(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result

    cli("publish", first, "--send", "--channels", "feed,web")
    assert public.is_symlink() and os.readlink(public) == ".public.v1"
    site_v1 = tree(public)
    (seed,) = {p.split("/")[1] for p in site_v1 if p.count("/") == 2 and "/tags/" not in p}
    for lang in ("en", "it"):
        for name in (*FEEDS, "index.html", f"{seed}/index.html"):
            assert f"{lang}/{name}" in site_v1, name
    assert "index.html" in site_v1
    assert any(p.startswith("en/tags/ucraina/") for p in site_v1)
    # Every public page links to serve's /subscribe in the page's language (the default).
    for path, (lang, links) in subscribe_links(public).items():
        assert [href for href, _ in links] == [f"{BASE}/subscribe?lang={lang}"], path
    with Store(f"sqlite:///{tmp_path / 'b.db'}") as store:
        records = SendLedger(store).for_brief(seed)
    assert [(r.key.channel, r.key.target, r.key.part, r.status) for r in records] == [
        ("feed", "site", "feeds", "sent"),
        ("web", "site", "pages", "sent"),
    ]
    assert {r.remote_id for r in records} == {".public.v1"}

    # A second brief: both in the archive and the feeds, newest first.
    cli("publish", second, "--send", "--channels", "feed,web")
    assert os.readlink(public) == ".public.v2"
    for lang in ("en", "it"):
        listing = page(public / lang / "index.html")
        links = listing.xpath("//ol[@class='archive']//h2/a/@href")
        assert links == [f"{BASE}/{lang}/later-brief/", f"{BASE}/{lang}/{seed}/"]
        parsed = feedparser.parse((public / lang / "atom.xml").read_bytes())
        assert [e.link for e in parsed.entries] == links
        json_feed = json.loads((public / lang / "feed.json").read_bytes())
        assert [item["url"] for item in json_feed["items"]] == links
    # The hostile tag stayed inside: slug "x"; the flag has no slug and no page.
    assert (public / "en" / "tags" / "x" / "index.html").is_file()
    assert beside_public(tmp_path) == [
        ".public.state.json",
        ".public.v1",  # replaced a moment ago: removed a minute after
        ".public.v2",
        "later.md",
        "out",
        "public",
    ]
    site_v2 = tree(public)

    # The same publish again: byte-identical, and no new version.
    cli("publish", second, "--send", "--channels", "feed,web")
    assert os.readlink(public) == ".public.v2"
    assert tree(public) == site_v2
    assert not list(tmp_path.glob(".public.staging-*"))

    # A dry run never touches the public site (nor the versions beside it).
    before = beside_public(tmp_path)
    cli("publish", first, second, "--channels", "feed,web")
    assert os.readlink(public) == ".public.v2" and tree(public) == site_v2
    assert beside_public(tmp_path) == before


def test_send_refuses_a_public_dir_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "mine.txt").write_text("someone's file")
    result = briefcast("publish", SEEDS[1], "--send", "--channels", "feed,web", cwd=tmp_path)
    line = one_line_error(result)
    assert "[site] public_dir" in line and "did not make" in line and "nothing was sent" in line
    assert (tmp_path / "public" / "mine.txt").read_text() == "someone's file"
    assert not (tmp_path / "b.db").exists()  # nothing archived


# --- the tree -------------------------------------------------------------------------------


def test_the_whole_site_is_written(settings: Settings, store: Store) -> None:
    publish(
        store,
        make("bilingual", day(2), tags=("EU",)),
        make("english", day(1), ("en",), tags=("EU", "Solo")),
    )
    update = site.update_site(store, settings)
    assert update.swapped and update.version == ".public.v1"
    expected = {"index.html"}
    for lang in ("en", "it"):
        expected |= {f"{lang}/{name}" for name in (*FEEDS, "index.html")}
        expected |= {f"{lang}/bilingual/index.html", f"{lang}/english/index.html"}
        expected |= {f"{lang}/tags/eu/{name}" for name in (*FEEDS, "index.html")}
    expected |= {f"en/tags/solo/{name}" for name in (*FEEDS, "index.html")}  # no Italian brief
    assert set(files(settings.site.public_dir)) == expected
    assert update.files == len(expected) and len(update.changed) == len(expected)


def test_every_link_on_the_site_leads_to_a_file_of_it(settings: Settings, store: Store) -> None:
    publish(
        store,
        make("bilingual", day(2), tags=("EU", "Città")),
        make("english", day(1), ("en",), tags=("eu",)),
    )
    site.update_site(store, settings)
    public = settings.site.public_dir
    checked = 0
    # The subscribe link leads to briefcast serve's page, not to a file (test_browser.py
    # follows it); test_every_public_page_links_to_subscribe_in_its_language checks it.
    subscribe = {settings.site.subscribe_link(lang) for lang in settings.site.languages}
    for path in public.rglob("*.html"):
        doc = page(path)
        for href in doc.xpath("//a/@href | //link/@href"):
            if href.startswith(BASE) and href not in subscribe:
                assert served(settings, href).is_file(), (path, href)
                checked += 1
    assert checked > 50


def subscribe_links(public: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Each public page's language and its subscribe links (href, text), by path."""
    found = {}
    for path in sorted(public.rglob("*.html")):
        doc = page(path)
        links = [
            (a.get("href"), a.text_content().strip()) for a in doc.xpath("//a[@class='subscribe']")
        ]
        found[path.relative_to(public).as_posix()] = (doc.get("lang"), links)
    return found


def test_every_public_page_links_to_subscribe_in_its_language(
    settings: Settings, store: Store
) -> None:
    publish(
        store,
        make("bilingual", day(2), tags=("EU",)),
        make("english", day(1), ("en",)),
    )
    site.update_site(store, settings)
    pages = subscribe_links(settings.site.public_dir)
    words = {"en": "Subscribe by email", "it": "Iscriviti via email"}
    # The root, both archives and their tag pages, every brief page (the "view in browser"
    # page), the English brief's Italian page included.
    assert {
        "index.html",
        "en/index.html",
        "it/index.html",
        "en/tags/eu/index.html",
        "en/bilingual/index.html",
        "it/bilingual/index.html",
        "en/english/index.html",
        "it/english/index.html",
    } <= set(pages)
    for path, (lang, links) in pages.items():
        assert links == [(f"{BASE}/subscribe?lang={lang}", words[lang])], path
    # The feeds' readers are told how to follow them, in the page's language.
    how = page(settings.site.public_dir / "it" / "index.html").xpath("//footer//p[@class='how']")
    assert [p.text for p in how] == ["Copia l'indirizzo di un feed nel tuo lettore di feed."]


def test_subscribe_link_elsewhere_or_none(tmp_path: Path, settings: Settings) -> None:
    elsewhere = settings.model_copy(
        update={
            "site": settings.site.model_copy(
                update={"subscribe_url": "https://lists.example.net/join?l={lang}"}
            )
        }
    )
    with Store(settings.database.url) as store:
        publish(store, make("bilingual", day(2)))
        site.update_site(store, elsewhere)
        pages = subscribe_links(settings.site.public_dir)
        assert len(pages) >= 5
        for path, (lang, links) in pages.items():
            assert [href for href, _ in links] == [f"https://lists.example.net/join?l={lang}"], path

        nowhere = settings.model_copy(
            update={"site": settings.site.model_copy(update={"subscribe_url": ""})}
        )
        site.update_site(store, nowhere)
        pages = subscribe_links(settings.site.public_dir)
        assert len(pages) >= 5
        assert all(links == [] for _lang, links in pages.values())


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/subscribe", "not an absolute http(s) URL"),
        ("https://lists.example.net/{language}", "{language}: only {lang} may be in braces"),
        ("https://lists.example.net/{", "only {lang} may be in braces"),
        ("javascript:alert(1)", "not an absolute http(s) URL"),
    ],
)
def test_subscribe_url_setting_is_checked(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv("BRIEFCAST_SITE__SUBSCRIBE_URL", value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "subscribe_url" in str(exc.value) and why in str(exc.value)
    assert "\n" not in str(exc.value)


def test_brief_pages_have_hreflang_open_graph_twitter_and_a_language_switch(
    settings: Settings, store: Store
) -> None:
    publish(store, make("bilingual", day(2), tags=("EU",)))
    site.update_site(store, settings)
    en = page(served(settings, f"{BASE}/en/bilingual/"))
    url = settings.site.brief_url("bilingual", "en")
    hreflang = dict(
        zip(
            en.xpath("//head/link[@rel='alternate'][@hreflang]/@hreflang"),
            en.xpath("//head/link[@rel='alternate'][@hreflang]/@href"),
            strict=True,
        )
    )
    assert hreflang == {"en": url, "it": f"{BASE}/it/bilingual/"}
    assert meta(en, "og:type") == ["article"]
    assert meta(en, "og:title") == ["bilingual title in en"]
    assert meta(en, "og:description") == ["bilingual summary in en"]
    assert meta(en, "og:url") == [url]
    assert meta(en, "og:site_name") == ["Test Brief"]
    assert meta(en, "og:locale") == ["en_US"]
    assert meta(en, "og:locale:alternate") == ["it_IT"]
    assert meta(en, "twitter:card") == ["summary"]
    assert meta(en, "twitter:title") == ["bilingual title in en"]
    assert meta(en, "twitter:description") == ["bilingual summary in en"]
    switch = en.xpath("//header//nav//a")
    assert [(a.get("href"), a.get("hreflang")) for a in switch] == [(f"{BASE}/it/bilingual/", "it")]
    assert en.xpath("//ul[@class='tags']//a/@href") == [f"{BASE}/en/tags/eu/"]


def test_archive_pages_have_hreflang_open_graph_and_a_language_switch(
    settings: Settings, store: Store
) -> None:
    publish(store, make("bilingual", day(2)))
    site.update_site(store, settings)
    it = page(served(settings, f"{BASE}/it/"))
    assert it.get("lang") == "it"
    assert it.findtext(".//h1") == "Tutti i brief"
    hreflang = it.xpath("//head/link[@rel='alternate'][@hreflang]")
    assert {link.get("hreflang"): link.get("href") for link in hreflang} == {
        "en": f"{BASE}/en/",
        "it": f"{BASE}/it/",
        "x-default": f"{BASE}/",
    }
    assert meta(it, "og:type") == ["website"]
    assert meta(it, "og:url") == [f"{BASE}/it/"]
    assert meta(it, "og:locale") == ["it_IT"]
    assert meta(it, "twitter:card") == ["summary"]
    switch = it.xpath("//header//nav//a")
    assert [(a.text, a.get("href"), a.get("aria-current")) for a in switch] == [
        ("English", f"{BASE}/en/", None),
        ("italiano", f"{BASE}/it/", "page"),
    ]
    root = page(settings.site.public_dir / "index.html")
    assert root.xpath("//meta[@http-equiv='refresh']/@content") == [f"0; url={BASE}/en/"]
    assert root.xpath("//main//a/@href") == [f"{BASE}/en/", f"{BASE}/it/"]


def test_archive_is_newest_first_in_pages(settings: Settings, store: Store) -> None:
    count = layout.PAGE_SIZE * 2 + 5
    publish(store, *(make(f"b{i:02d}", day(i), ("en",)) for i in range(count)))
    site.update_site(store, settings)
    newest_first = [f"b{i:02d}" for i in reversed(range(count))]
    pages = [f"{BASE}/en/", f"{BASE}/en/page/2/", f"{BASE}/en/page/3/"]
    shown = []
    for number, url in enumerate(pages):
        doc = page(served(settings, url))
        shown += [h.rstrip("/").rsplit("/", 1)[-1] for h in doc.xpath("//ol//h2/a/@href")]
        prev = doc.xpath("//head/link[@rel='prev']/@href")
        nxt = doc.xpath("//head/link[@rel='next']/@href")
        assert prev == ([pages[number - 1]] if number else [])
        assert nxt == ([pages[number + 1]] if number < 2 else [])
        assert doc.xpath("//head/link[@rel='canonical']/@href") == [url]
    assert shown == newest_first
    assert not served(settings, f"{BASE}/en/page/4/").exists()
    # Italian has none: an archive that says so, and empty but valid feeds.
    it = page(served(settings, f"{BASE}/it/"))
    assert it.find_class("note")[0].text_content() == "Ancora nessun brief pubblicato."
    assert feedparser.parse(served(settings, f"{BASE}/it/atom.xml").read_bytes()).entries == []


# --- tags -----------------------------------------------------------------------------------


def test_tag_pages_and_feeds(settings: Settings, store: Store) -> None:
    publish(
        store,
        make("newest", day(3), tags=("EU", "Città")),
        make("middle", day(2), ("en",), tags=("eu",)),  # another spelling, the same slug
        make("untagged", day(1)),
    )
    site.update_site(store, settings)
    tag_page = page(served(settings, f"{BASE}/en/tags/eu/"))
    assert tag_page.findtext(".//h1") == "Tagged “EU”"  # as the newest brief writes it
    assert tag_page.xpath("//ol//h2/a/@href") == [f"{BASE}/en/newest/", f"{BASE}/en/middle/"]
    it_tag = page(served(settings, f"{BASE}/it/tags/eu/"))
    assert it_tag.xpath("//ol//h2/a/@href") == [f"{BASE}/it/newest/"]
    assert served(settings, f"{BASE}/en/tags/citta/").is_file()

    schema = etree.RelaxNG(etree.parse(str(ATOM_RNG)))
    for lang, ids in (("en", ["newest", "middle"]), ("it", ["newest"])):
        folder = f"{BASE}/{lang}/tags/eu/"
        urls = [f"{BASE}/{lang}/{i}/" for i in ids]
        atom = served(settings, folder + "atom.xml").read_bytes()
        rss = served(settings, folder + "rss.xml").read_bytes()
        for raw in (atom, rss):
            parsed = feedparser.parse(raw)
            assert not parsed.bozo, parsed.get("bozo_exception")
            assert [e.link for e in parsed.entries] == urls
        root = etree.fromstring(atom)
        assert schema.validate(root), schema.error_log
        links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
        assert links == {"self": folder + "atom.xml", "alternate": folder}
        channel = etree.fromstring(rss).find("channel")
        assert channel.find(f"{ATOM}link").get("href") == folder + "rss.xml"
        feed = json.loads(served(settings, folder + "feed.json").read_bytes())
        assert feed["feed_url"] == folder + "feed.json"
        assert feed["home_page_url"] == folder
        assert [item["url"] for item in feed["items"]] == urls
    assert (
        feedparser.parse(served(settings, f"{BASE}/en/tags/eu/atom.xml").read_bytes()).feed.title
        == "Test Brief (English): EU"
    )


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint not installed")
def test_every_atom_feed_validates_with_xmllint(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, hub="https://hub.example.org/")
    with Store(settings.database.url) as store:
        publish(store, make("a", day(1), tags=("EU",)), make("b", day(2), ("it",)))
        site.update_site(store, settings)
    feeds = sorted(str(p) for p in settings.site.public_dir.rglob("atom.xml"))
    assert len(feeds) == 4
    result = subprocess.run(
        ["xmllint", "--noout", "--relaxng", str(ATOM_RNG), *feeds],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_hostile_tags_stay_inside(settings: Settings, store: Store) -> None:
    hostile = ("../../x", "..", "/etc/passwd", "a/../../b", "🇪🇺", "\\..\\y")
    publish(store, make("brief", day(1), tags=hostile))
    update = site.update_site(store, settings)
    version = settings.site.public_dir.parent / update.version
    assert all(
        path.resolve().is_relative_to(version) for path in settings.site.public_dir.rglob("*")
    )
    slugs = sorted(p.name for p in (settings.site.public_dir / "en" / "tags").iterdir())
    assert slugs == ["a-b", "etc-passwd", "x", "y"]
    outside = {p.name for p in settings.site.public_dir.parent.iterdir()}
    assert outside == {"public", ".public.v1", ".public.state.json", "b.db", "b.db.sending"} | {
        name for name in outside if name.startswith("b.db-")
    }
    # The tag without a slug is shown, unlinked.
    tags = page(served(settings, f"{BASE}/en/brief/")).find_class("tags")[0]
    assert [li.text_content() for li in tags] == list(hostile)
    assert len(tags.xpath(".//a")) == 4
    # And the writer itself refuses a path out of its folder, whatever the layout says.
    with pytest.raises(OutsideFolder):
        write_inside(version, "../escape.html", "x")


# --- swapped in whole, once -----------------------------------------------------------------


def test_a_reader_sees_the_old_site_or_the_new_never_half(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(store, make("a00", day(0), ("en",)))
    site.update_site(store, settings)
    en = settings.site.public_dir / "en"
    seen: list[tuple[str, ...]] = []
    errors: list[OSError] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(tuple(sorted(os.listdir(en))))
                (en / "atom.xml").read_bytes()
                (en / "index.html").read_bytes()
            except OSError as exc:
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    versions = []
    try:
        for i in range(1, 9):
            publish(store, make(f"a{i:02d}", day(i), ("en",)))
            versions.append(site.update_site(store, settings).version)
    finally:
        stop.set()
        reader.join()
    assert not errors
    assert versions == [f".public.v{n}" for n in range(2, 10)]
    complete = {
        tuple(
            sorted(
                [
                    "atom.xml",
                    "feed.json",
                    "index.html",
                    "rss.xml",
                    *(f"a{j:02d}" for j in range(n + 1)),
                ]
            )
        )
        for n in range(9)
    }
    assert seen and set(seen) <= complete  # every listing is a whole version's
    # The versions replaced stay a while, for readers that resolved the link just before;
    # no staging folder, no stray link.
    retired = [f".public.v{n}" for n in range(1, 9)]
    assert beside(settings) == [".public.state.json", *retired, ".public.v9", "public"]
    assert os.readlink(settings.site.public_dir) == ".public.v9"
    monkeypatch.setattr(site, "RETIRE_AFTER_SECONDS", 0.0)  # a minute later
    site.update_site(store, settings)
    assert beside(settings) == [".public.state.json", ".public.v9", "public"]


def test_an_update_with_nothing_new_does_nothing(settings: Settings, store: Store) -> None:
    publish(store, make("a", day(1), tags=("EU",)))
    first = site.update_site(store, settings)
    before = files(settings.site.public_dir)
    again = site.update_site(store, settings)
    assert (again.rebuilt, again.swapped, again.version) == (False, False, ".public.v1")
    # Forgotten what it was built from: rebuilt, the same bytes, and no new version.
    site.places(settings).state.unlink()
    rebuilt = site.update_site(store, settings)
    assert (rebuilt.rebuilt, rebuilt.swapped, rebuilt.version) == (True, False, first.version)
    assert rebuilt.changed == () and rebuilt.removed == 0
    assert files(settings.site.public_dir) == before
    assert beside(settings) == [".public.state.json", ".public.v1", "public"]


def test_once_per_run_through_the_send_ledger(settings: Settings, store: Store) -> None:
    publish(store, make("a", day(1)), make("b", day(2)))
    summaries = [
        site.publish_brief(brief_id, channel, part, settings)
        for channel, part in (("feed", "feeds"), ("web", "pages"))
        for brief_id in ("a", "b")
    ]
    assert [s.update.rebuilt for s in summaries] == [True, False, False, False]
    assert all(s.recorded_now and s.status == "sent" for s in summaries)
    ledger = SendLedger(store)
    for brief_id in ("a", "b"):
        rows = ledger.for_brief(brief_id)
        assert [(r.key, r.status, r.attempts, r.remote_id) for r in rows] == [
            (SendKey(brief_id, "feed", "site", "feeds"), "sent", 1, ".public.v1"),
            (SendKey(brief_id, "web", "site", "pages"), "sent", 1, ".public.v1"),
        ]
    again = site.publish_brief("a", "feed", "feeds", settings)
    assert not again.recorded_now and not again.update.rebuilt
    assert ledger.get(SendKey("a", "feed", "site", "feeds")).attempts == 1
    line = summaries[0].line()
    assert line.startswith("brief a on the site (feed): published; ")
    assert ".public.v1 went live" in line
    assert {"what": "live version", "value": ".public.v1"} in summaries[0].rows()
    assert "published before" in again.line() and "up to date" in again.line()
    # An edited brief, published again, shows on the site though its part was sent before.
    publish(store, replace(make("a", day(1), tags=("Edited",)), digest="sha-a-edited"))
    edited = site.publish_brief("a", "web", "pages", settings)
    assert not edited.recorded_now and edited.update.swapped
    assert served(settings, f"{BASE}/en/tags/edited/").is_file()


def test_a_crashed_run_is_finished_by_the_next(settings: Settings, store: Store) -> None:
    publish(store, make("a", day(1)))
    ledger = SendLedger(store)
    key = SendKey("a", "web", "site", "pages")
    assert ledger.record_attempt(key) is not None  # the run died during its update...
    p = site.places(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    for half in (".public.staging-0123456789ab", ".public.v1"):  # ...leaving half a site
        (p.parent / half / "en").mkdir(parents=True)
        (p.parent / half / "en" / "atom.xml").write_text("<half")
    (p.parent / ".public.link-0123456789ab").symlink_to(".public.v1")
    theirs = [".public.v1.bak", ".publicity", "public.old", ".public.staging-x"]
    for name in theirs:
        (p.parent / name).mkdir()
    summary = site.publish_brief("a", "web", "pages", settings)
    assert summary.recorded_now and summary.update.swapped
    record = ledger.get(key)
    assert (record.status, record.attempts) == ("sent", 2)
    assert beside(settings) == sorted([".public.state.json", ".public.v1", "public", *theirs])
    assert served(settings, f"{BASE}/en/a/").is_file()
    assert b"<half" not in served(settings, f"{BASE}/en/atom.xml").read_bytes()


def test_public_dir_briefcast_did_not_make_is_refused(tmp_path: Path, settings: Settings) -> None:
    public = settings.site.public_dir
    public.mkdir()
    (public / "theirs.html").write_text("theirs")
    with pytest.raises(site.PublicDirError) as caught:
        site.check_ready(settings)
    message = str(caught.value)
    assert message.startswith(f"[site] public_dir {public}: is a folder briefcast did not make")
    assert len(message.splitlines()) == 1
    (public / "theirs.html").unlink()
    site.check_ready(settings)  # an empty folder is fine: it becomes our symlink
    public.rmdir()
    (tmp_path / "elsewhere").mkdir()
    public.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(site.PublicDirError, match=r"is a symlink .* briefcast did not make"):
        site.check_ready(settings)
    public.unlink()
    public.write_text("a file")
    with pytest.raises(site.PublicDirError, match="is a file, not a folder"):
        site.check_ready(settings)
    public.unlink()
    public.mkdir()
    with Store(settings.database.url) as store:
        publish(store, make("a", day(1)))
        site.update_site(store, settings)
    assert os.readlink(public) == ".public.v1"


# --- WebSub ---------------------------------------------------------------------------------


class Hub:
    """A loopback WebSub hub that records the publish pings it is sent."""

    def __init__(self, status: int = 202) -> None:
        self.pings: list[dict[str, list[str]]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hub.pings.append(parse_qs(self.rfile.read(length).decode()))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def urls(self) -> set[str]:
        assert all(ping["hub.mode"] == ["publish"] for ping in self.pings)
        return {url for ping in self.pings for url in ping["hub.url"]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    hub = Hub()
    yield hub
    hub.close()


def test_websub_pings_each_changed_feed(tmp_path: Path, hub: Hub) -> None:
    settings = make_settings(tmp_path, hub=hub.url)
    with Store(settings.database.url) as store:
        publish(store, make("a", day(1), tags=("EU",)))
        first = site.update_site(store, settings)
        every_feed = {
            f"{BASE}/{lang}/{folder}{name}"
            for lang in ("en", "it")
            for folder in ("", "tags/eu/")
            for name in FEEDS
        }
        assert hub.urls() == every_feed == set(first.pinged)
        assert len(hub.pings) == len(every_feed)  # one POST per feed
        assert first.warnings == ()

        # The feeds name the hub, and stay valid.
        public = settings.site.public_dir
        atom = etree.fromstring((public / "en" / "atom.xml").read_bytes())
        assert [link.get("href") for link in atom.findall(f"{ATOM}link[@rel='hub']")] == [hub.url]
        schema = etree.RelaxNG(etree.parse(str(ATOM_RNG)))
        assert schema.validate(atom), schema.error_log
        rss_raw = (public / "en" / "rss.xml").read_bytes()
        channel = etree.fromstring(rss_raw).find("channel")
        assert [(ln.get("rel"), ln.get("href")) for ln in channel.findall(f"{ATOM}link")] == [
            ("self", f"{BASE}/en/rss.xml"),
            ("hub", hub.url),
        ]
        assert not feedparser.parse(rss_raw).bozo
        feed = json.loads((public / "en" / "feed.json").read_bytes())
        assert feed["hubs"] == [{"type": "WebSub", "url": hub.url}]

        # Only what changed: an English brief changes the English feeds alone.
        hub.pings.clear()
        italian = public / "it" / "atom.xml"
        os.utime(italian, (1_000_000_000, 1_000_000_000))
        publish(store, make("b", day(2), ("en",)))
        second = site.update_site(store, settings)
        assert hub.urls() == {f"{BASE}/en/{name}" for name in FEEDS}
        # An unchanged file keeps its time: nginx's ETag and Last-Modified stay, and so 304s.
        assert os.readlink(public) == ".public.v2"
        assert italian.stat().st_mtime == 1_000_000_000
        # Nothing new: no ping.
        hub.pings.clear()
        assert site.update_site(store, settings).pinged == ()
        assert hub.pings == []
        assert second.swapped


def test_a_hub_that_fails_is_a_warning_and_the_site_is_published(tmp_path: Path, hub: Hub) -> None:
    settings = make_settings(tmp_path, hub=hub.url)
    hub.close()  # nobody listens there any more
    with Store(settings.database.url) as store:
        publish(store, make("a", day(1), ("en",)))
        update = site.update_site(store, settings)
    assert update.swapped and update.pinged == ()
    (warning,) = update.warnings
    assert warning.startswith(f"WebSub hub {hub.url} could not be reached")
    assert "6 feed(s) not pinged" in warning  # every feed is new: en and it
    assert served(settings, f"{BASE}/en/a/").is_file()
    summary_line = site.SiteSummary("a", "feed", "sent", True, update).line()
    assert "1 warning(s): WebSub hub" in summary_line


def test_pings_cut_short_by_a_crash_are_made_by_the_next_update(tmp_path: Path, hub: Hub) -> None:
    settings = make_settings(tmp_path, hub=hub.url)

    def killed(_hub: str, _feeds: object) -> Pings:
        raise KeyboardInterrupt  # the process dies after the switch, before its pings

    with Store(settings.database.url) as store:
        publish(store, make("a", day(1), ("en",)))
        with pytest.raises(KeyboardInterrupt):
            site.update_site(store, settings, pinger=killed)
        assert os.readlink(settings.site.public_dir) == ".public.v1"
        assert hub.pings == []
        again = site.update_site(store, settings)
    assert not again.rebuilt
    every_feed = {f"{BASE}/{lang}/{name}" for lang in ("en", "it") for name in FEEDS}
    assert hub.urls() == every_feed == set(again.pinged)


def test_websub_hub_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIEFCAST_FEEDS__WEBSUB_HUB", "ftp://hub.example.org/")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "BRIEFCAST_FEEDS__WEBSUB_HUB: [feeds] websub_hub: "
        '"ftp://hub.example.org/" is not an absolute http(s) URL without a fragment'
    )
    monkeypatch.setenv("BRIEFCAST_FEEDS__WEBSUB_HUB", "https://hub.example.org/")
    assert load_settings().feeds.websub_hub == "https://hub.example.org/"


# --- the store's walk of the archive --------------------------------------------------------


def test_published_briefs_in_keyset_pages(database_url: str) -> None:
    with Store(database_url) as store:
        same = day(5)
        store.archive(
            [make(f"b{i}", same if i in (2, 3, 4) else day(i)) for i in range(7)],
            published=True,
            tz=ROME,
        )
        store.archive([make("draft", day(9))], published=False, tz=ROME)
        expected = ["b6", "b2", "b3", "b4", "b5", "b1", "b0"]  # date, newest first; then id
        for batch in (1, 2, 3, 7, 100):
            assert [b.id for b in store.published_briefs(batch=batch)] == expected
        marks = list(store.published_marks(batch=2))
        assert [m[0] for m in marks] == sorted(expected)
        assert [b.id for b in store.published_by_id(["b0", "b6", "draft", "nope"], batch=1)] == [
            "b6",
            "b0",
        ]


def test_ids_made_from_titles_keep_published_urls_and_stay_unique(tmp_path: Path) -> None:
    from briefcast import pipeline

    settings = make_settings(tmp_path)

    def brief_file(name: str, title: str) -> Path:
        path = tmp_path / name
        path.write_text(f"---\ntitle: {title}\nlang: en\n---\nSome text about {title}.\n")
        return path

    def publish(path: Path) -> str:
        (brief,) = pipeline.archive(
            pipeline.date(pipeline.read([path], settings), settings), settings, dry_run=False
        )
        return brief.id

    def published() -> list[str]:
        with Store(settings.database.url) as store:
            return sorted(b.id for b in store.published_briefs())

    # Published when ids were the title's first 60 characters: published again, it keeps
    # that id (its URL), and the archive still holds it once.
    paris = brief_file("paris.md", "Leaders from 35 countries met in Paris on Tuesday")
    (brief,) = pipeline.read([paris], settings)
    assert brief.id == "leaders-from-35-countries-met"
    before = replace(brief, id="leaders-from-35-countries-met-in-paris-on-tuesday")
    pipeline.archive(pipeline.provisional([before], settings), settings, dry_run=False)
    assert publish(paris) == before.id
    assert published() == [before.id]
    (folder,) = pipeline.run_publish([paris], settings, ["web"], tmp_path / "out")
    assert folder.name == before.id
    preview = (folder / "index.html").read_text("utf-8")
    assert "to choose it, write <code>id: paris-summit-2026</code>" in preview

    # New briefs get the short id; another brief whose short id is taken gets "-2", and
    # each, published again, keeps its own.
    rome = brief_file("rome.md", "Leaders from 35 countries met in Rome")
    berlin = brief_file("berlin.md", "Leaders from 35 countries met in Berlin")
    assert publish(rome) == "leaders-from-35-countries-met"
    assert publish(berlin) == "leaders-from-35-countries-met-2"
    assert (publish(rome), publish(berlin)) == (
        "leaders-from-35-countries-met",
        "leaders-from-35-countries-met-2",
    )
    # Two in one run: unique too.
    both = pipeline.date(
        pipeline.read(
            [
                brief_file("a.md", "Summit in Vienna ends"),
                brief_file("b.md", "Summit in Vienna ends"),
            ],
            settings,
        ),
        settings,
    )
    assert [b.id for b in both] == ["summit-in-vienna-ends", "summit-in-vienna-ends-2"]
