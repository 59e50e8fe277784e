"""The public side in a real browser: Debian's headless Chromium, driven by Playwright, against
``briefcast serve`` on a loopback port (one server and one browser for the module) over a site
published from the seed briefs, with an aiosmtpd relay for the confirmation email.

- A visitor subscribes through the form, follows the emailed link, confirms, then changes
  their edition and unsubscribes from the page their newsletter links to.
- Each page (the archive in both languages, its second page, a tag's archive, a brief in
  each language and one without a translation, the subscribe form with and without errors,
  the confirmation page and its answer, the preference center, the 404 page) has no
  violation Deque's axe-core finds with its default rules (WCAG 2 A and AA, best
  practices), in the light and in the dark colour scheme; does not scroll sideways at
  375 px; and is saved as screenshots 375 and 1280 px wide (and 375 dark), in the folder
  the module prints (``BRIEFCAST_SCREENSHOTS_DIR`` when set).

Without Chromium the module is skipped, unless ``BRIEFCAST_REQUIRE_CHROMIUM=1`` (CI) makes
that a failure; without axe-core (``make test`` installs it with npm in .cache/axe) the pages
are checked and photographed, then skipped, unless ``BRIEFCAST_REQUIRE_AXE=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from delivery_helpers import ROOT, SECRET, add_subscribers, subscriber_rows
from playwright.sync_api import Browser, Page, sync_playwright
from serve_helpers import Served, serve_settings, status_of, uvicorn_server, wait_for
from smtp_servers import HOST, Recorder, free_port, smtp_server

from briefcast import pipeline, site, subscribers
from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.delivery import tokens
from briefcast.render import layout
from briefcast.serve import create_app, signing
from briefcast.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(os.environ.get("BRIEFCAST_AXE", ROOT / ".cache/axe/node_modules/axe-core/axe.min.js"))
AXE_REQUIRED = "BRIEFCAST_REQUIRE_AXE"
ROME = ZoneInfo("Europe/Rome")
WIDTHS = (375, 1280)
VISITOR = "visitor@example.org"


# --- the server, the site, the browser -----------------------------------------------------


def older_briefs(count: int) -> list[Brief]:
    """Enough briefs, older than the seeds, for the archive to have a second page."""
    return [
        Brief(
            id=f"older-{i}",
            title=f"Older brief {i}",
            date=datetime(2025, 1, 1, 9, 0, tzinfo=ROME) + timedelta(days=i),
            sections=tuple(
                Section(
                    lang,
                    (Block(BlockKind.PARAGRAPH, f"Brief {i} ({lang})."),),
                    title=f"Older brief {i} ({lang})",
                    summary=f"What brief {i} says ({lang}).",
                )
                for lang in ("en", "it")
            ),
            tags=("archivio",),
            digest=f"older-{i}",
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """briefcast serve over the seed briefs, published; its base URL the server's own, so
    the site's links and the emailed confirmation link lead back to it."""
    tmp = tmp_path_factory.mktemp("browser")
    recorder = Recorder()
    port = free_port()
    with smtp_server(recorder) as smtp_port:
        url = f"http://{HOST}:{port}"
        settings = serve_settings(tmp / "public", tmp / "b.db", smtp_port, base_url=url)
        store = Store(settings.database.url)
        try:
            briefs = pipeline.read(sorted((ROOT / "seeds").iterdir()), settings)
            start = datetime(2026, 1, 5, 9, 0, tzinfo=ROME)
            dated = [b.dated(start + timedelta(days=i)) for i, b in enumerate(briefs)]
            store.archive([*dated, *older_briefs(layout.PAGE_SIZE)], published=True, tz=ROME)
            site.update_site(store, settings)  # no WebSub hub set: nothing is pinged
            app = create_app(settings)
            with uvicorn_server(app, port):
                yield Served(url, port, app, settings, store, settings.site.public_dir, recorder)
        finally:
            store.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("BRIEFCAST_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"chromium not found at {CHROMIUM} and BRIEFCAST_REQUIRE_CHROMIUM=1")
        pytest.skip(f"chromium not found at {CHROMIUM}; set BRIEFCAST_REQUIRE_CHROMIUM=1 to fail")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies) for each test, English first."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    wanted = os.environ.get("BRIEFCAST_SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def axe_source() -> str | None:
    """axe.min.js; None when missing (the pages' other checks still run, then the test is
    skipped), unless BRIEFCAST_REQUIRE_AXE=1."""
    if AXE.is_file():
        return AXE.read_text("utf-8")
    if os.environ.get(AXE_REQUIRED) == "1":
        pytest.fail(f"axe-core not found at {AXE} and {AXE_REQUIRED}=1 (`make test` gets it)")
    return None


# --- the visitor's way through ------------------------------------------------------------


def test_subscribe_confirm_change_the_edition_and_leave(served: Served, page: Page) -> None:
    page.goto(served.url + "/subscribe")
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_label("Email address").fill(VISITOR)
    page.get_by_label("Italian", exact=True).check()
    page.get_by_role("button", name="Subscribe").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"

    (mail,) = wait_for(served.recorder, VISITOR)
    text = mail.message.get_body(("plain",)).get_content()
    link = re.search(re.escape(served.url) + r"/confirm/\S+", text)
    assert link, text
    page.goto(link[0])
    assert page.locator("html").get_attribute("lang") == "it"  # the edition asked for
    assert status_of(served, VISITOR) == ("it", "pending")  # following the link is not enough
    page.get_by_role("button", name="Conferma l'iscrizione").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Sei iscritto"
    assert status_of(served, VISITOR) == ("it", "active")

    # The page the newsletter's unsubscribe link opens: /u/<the subscriber's token>.
    sub_id = subscriber_rows(served.store)[VISITOR][0]
    manage = f"{served.url}/u/{tokens.sign(SECRET, sub_id)}"
    page.goto(manage)
    assert page.locator("html").get_attribute("lang") == "it"
    assert page.get_by_label("Italiano", exact=True).is_checked()
    page.get_by_label("Inglese", exact=True).check()
    page.get_by_role("button", name="Salva").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Saved"  # now in English
    assert status_of(served, VISITOR) == ("en", "active")

    page.goto(manage)
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_role("button", name="Unsubscribe").click()
    assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
    assert status_of(served, VISITOR) == ("en", "unsubscribed")


def test_a_reader_reaches_subscribe_from_a_brief_page_in_its_language(
    served: Served, page: Page
) -> None:
    # The browser prefers English; the Italian "view in browser" page leads to the Italian form.
    page.goto(newest_brief(served, "it"))
    assert page.locator("html").get_attribute("lang") == "it"
    page.get_by_role("link", name="Iscriviti via email").click()
    assert page.url == f"{served.url}/subscribe?lang=it"
    assert page.locator("html").get_attribute("lang") == "it"
    assert page.get_by_role("heading", level=1).inner_text().startswith("Iscriviti")
    assert page.get_by_role("button", name="Iscriviti").is_visible()


# --- every page: axe-core, no sideways scrolling, screenshots -------------------------------


BILINGUAL = "Ukraine's Western allies agree on key security guarantees in Paris"  # seed 001


def newest_brief(served: Served, lang: str) -> str:
    """The address of the newest brief in ``lang``, from the site's own feed."""
    feed = json.loads((served.public / lang / "feed.json").read_bytes())
    return str(feed["items"][0]["url"])


def confirmation_link(served: Served, email: str, edition: str) -> str:
    """The link the confirmation email would carry, for a new address."""
    sub = subscribers.add_pending(served.store, email, edition, settings=served.settings)
    token = signing.confirmation(SECRET.encode(), sub.id, sub.email, edition, 3600)
    return f"{served.url}/confirm/{token}"


def open_page(served: Served, page: Page, name: str) -> None:
    """Brings the page called ``name`` up in the browser, as a visitor reaches it."""
    if name in ("archive-en", "archive-it"):
        page.goto(f"{served.url}/{name[-2:]}/")
    elif name == "archive-en-2":
        page.goto(f"{served.url}/en/")
        page.locator("a[rel=next]").click()
        assert "Page 2 of 2" in page.inner_text("main")
    elif name == "tag-it":
        page.goto(f"{served.url}/it/")
        page.get_by_role("link", name="volenterosi", exact=True).first.click()
        assert page.get_by_role("heading", level=1).inner_text() == "Con il tag “volenterosi”"
    elif name == "not-found":
        page.goto(f"{served.url}/en/nowhere/")
    elif name in ("brief-en", "brief-it"):  # a brief in both languages, from the archive
        page.goto(f"{served.url}/{name[-2:]}/")
        page.get_by_role("link", name=BILINGUAL).click()
        assert page.locator("article").get_attribute("lang") == name[-2:]
    elif name == "brief-untranslated":  # an English brief's Italian page: it says so
        page.goto(newest_brief(served, "en").replace(f"{served.url}/en/", f"{served.url}/it/"))
        assert page.locator("html").get_attribute("lang") == "it"
        assert page.locator("article").get_attribute("lang") == "en"
    elif name == "subscribe":
        page.goto(served.url + "/subscribe")
    elif name == "subscribe-errors":
        page.goto(served.url + "/subscribe")
        page.get_by_label("Email address").fill("not an address")
        page.get_by_role("button", name="Subscribe").click()
        assert page.locator("#email-error").is_visible()
    elif name in ("confirm", "confirmed"):
        page.goto(confirmation_link(served, f"{name}@example.org", "it"))
        if name == "confirmed":
            page.get_by_role("button").click()
            assert page.get_by_role("heading", level=1).inner_text() == "Sei iscritto"
    elif name == "preferences":
        add_subscribers(served.store, 1, start=7)  # reader7@: 7 % 3 == 1, Italian
        sub_id = subscriber_rows(served.store)["reader7@example.org"][0]
        page.goto(f"{served.url}/u/{tokens.sign(SECRET, sub_id)}")
    else:
        raise AssertionError(name)


def axe_violations(page: Page, source: str) -> list[dict[str, object]]:
    """What axe-core finds wrong on the page as it is now, with its default rules (WCAG 2.x
    A and AA, best practices); the first few nodes of each violation, for the message."""
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        # Through the DevTools protocol, which the pages' CSP (script-src 'none') allows.
        page.evaluate(source)
    results = page.evaluate("async () => await axe.run(document)")
    assert results["passes"], "axe-core checked nothing"
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [(n["target"], n["failureSummary"]) for n in v["nodes"][:5]],
        }
        for v in results["violations"]
    ]


PAGES = [
    "archive-en",
    "archive-en-2",
    "archive-it",
    "tag-it",
    "brief-en",
    "brief-it",
    "brief-untranslated",
    "subscribe",
    "subscribe-errors",
    "confirm",
    "confirmed",
    "preferences",
    "not-found",
]


@pytest.mark.parametrize("name", PAGES)
def test_page_passes_axe_fits_a_phone_and_is_photographed(
    served: Served, page: Page, shots: Path, axe_source: str | None, name: str
) -> None:
    open_page(served, page, name)
    found: dict[str, list[dict[str, object]]] = {}
    for scheme in ("light", "dark") if axe_source else ():
        page.emulate_media(color_scheme=scheme)
        if violations := axe_violations(page, axe_source):
            found[scheme] = violations
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        page.emulate_media(color_scheme="light")
        page.screenshot(path=shots / f"{name}-{width}.png", full_page=True)
        if width == min(WIDTHS):
            scroll = page.evaluate("() => document.documentElement.scrollWidth")
            assert scroll <= width, f"{name} scrolls sideways at {width} px: {scroll} px wide"
            page.emulate_media(color_scheme="dark")
            page.screenshot(path=shots / f"{name}-{width}-dark.png", full_page=True)
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)
    if axe_source is None:
        pytest.skip(
            f"axe-core not found at {AXE} (`make test` gets it); set {AXE_REQUIRED}=1 to fail"
        )


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_brief_text_runs_nothing_in_the_preview_opened_from_disk(
    page: Page, tmp_path: Path
) -> None:
    """A title that broke out of mjml's aria-label ran its handler in the preview's email
    frames, opened from disk (file://, no CSP)."""
    from test_cli import briefcast

    handler = "top.ran=1"  # short: the subject (and so the title mjml copies) is cut at 77
    title = f'Summit" tabindex="0" autofocus onfocus="{handler}" x="'
    meta = f"---\nid: hostile\nlang: en\ntitle: {json.dumps(title)}\n---\nSome text.\n"
    (tmp_path / "hostile.md").write_text(meta, "utf-8")
    result = briefcast("publish", "hostile.md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page.goto((tmp_path / "out" / "hostile" / "index.html").as_uri())
    page.wait_for_load_state("load")
    labels = page.evaluate(
        """() => [...document.querySelectorAll("iframe[srcdoc]")].map(f => {
          const outer = f.contentDocument.querySelector("[role=article]");
          outer.focus();  // what autofocus or a reader's Tab would do
          return outer.getAttribute("aria-label");
        })"""
    )
    assert page.evaluate("() => window.ran") is None
    # The title is the label, as text (cut to the subject's length).
    assert labels and all(label.startswith('Summit" tabindex="0"') for label in labels), labels
