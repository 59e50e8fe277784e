"""The editor's pages in a real browser: Debian's headless Chromium, driven by Playwright,
against ``briefcast serve`` on a loopback port, approving through a fake approve callable that
runs in the served app and records its calls.

The editor logs in, sees the waiting briefs, opens a preview, approves one and reads the
confirmation; a brief edited on disk since its preview is refused with the approval's own
line. The login page and the list (waiting briefs; and sends under way, with the reloading
turned off) have no violation axe-core finds with its default rules, light and dark.

Without Chromium the module is skipped, unless ``BRIEFCAST_REQUIRE_CHROMIUM=1``; without
axe-core the pages are used but not checked (then skipped), unless ``BRIEFCAST_REQUIRE_AXE=1``
(as in tests/test_browser.py, whose fixtures and helpers this module uses).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from serve_helpers import serve_settings, uvicorn_server
from smtp_servers import HOST, free_port
from test_browser import AXE, AXE_REQUIRED, axe_source, axe_violations, browser, page, shots
from test_editor import (
    NAME,
    PASSWORD,
    SEEDS,
    Editor,
    FakeApprove,
    previewed_review,
    waiting_review,
)

from briefcast import editors, reviews, subscribers
from briefcast.posting import PostRef
from briefcast.posting.thread import encode_ref
from briefcast.send_ledger import SendKey, SendLedger
from briefcast.serve import create_app
from briefcast.store import Store

__all__ = ["axe_source", "browser", "page", "shots"]  # the fixtures, from test_browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Editor]:
    tmp = tmp_path_factory.mktemp("editor-browser")
    (tmp / "public").mkdir()
    settings = serve_settings(tmp / "public", tmp / "b.db", free_port())
    store = Store(settings.database.url)
    editors.add(store, NAME, PASSWORD)
    fake = FakeApprove(store)
    app = create_app(settings, store, approve=fake)
    try:
        with uvicorn_server(app) as port:
            yield Editor(f"http://{HOST}:{port}", port, app, settings, store, tmp, fake)
    finally:
        store.engine.dispose()


def log_in(served: Editor, page: Page) -> None:
    page.goto(served.url + "/editor/")  # not logged in: the login page
    assert page.url == served.url + "/editor/login"
    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Briefs to approve")


def no_violations(page: Page, source: str | None) -> None:
    found = {}
    for scheme in ("light", "dark") if source else ():
        page.emulate_media(color_scheme=scheme)
        if violations := axe_violations(page, source):
            found[scheme] = violations
    page.emulate_media(color_scheme="light")
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert scroll <= width, f"{page.url} scrolls sideways: {scroll} px wide"


def test_an_editor_approves_one_brief_and_is_refused_another(
    served: Editor, page: Page, axe_source: str | None
) -> None:
    first = waiting_review(served, SEEDS[1])
    second = waiting_review(served, SEEDS[2])

    log_in(served, page)
    for review in (first, second):
        section = page.locator("section", has=page.get_by_role("heading", name=review.brief_id))
        expect(section).to_contain_text("waiting")

    # The preview opens, styled by its own inline CSS, its email in a frame.
    page.get_by_role("link", name=f"Open the preview of {first.brief_id}").click()
    assert page.url.endswith(f"/editor/preview/{first.brief_id}/{first.digest}/index.html")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Preview of brief \d+"))
    frame = page.frame_locator("iframe")
    expect(frame.locator("p")).to_have_text("The English edition")
    page.go_back()

    page.get_by_role("button", name=f"Approve {first.brief_id}").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Approved {first.brief_id}: it is being sent now."
    )
    assert served.fake.calls == [(first.brief_id, None, NAME)]

    # The second brief is edited after its preview: its approval is refused, in one line.
    brief = Path(second.path)
    brief.write_text(brief.read_text("utf-8") + "\nEdited after the preview.\n", "utf-8")
    with pytest.raises(reviews.Changed) as expected:
        reviews.check(second, served.settings)
    page.goto(served.url + "/editor/?refresh=off")  # a send is under way: no reloading now
    page.get_by_role("button", name=f"Approve {second.brief_id}").click()
    expect(page.get_by_role("alert")).to_have_text(str(expected.value))
    assert served.fake.calls == [(first.brief_id, None, NAME)]
    state = reviews.get(served.store, second.flow_run_id)
    assert state is not None and state.state == "waiting"

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Editor login")
    page.goto(served.url + "/editor/")
    assert page.url == served.url + "/editor/login"


def test_login_and_list_pass_axe(served: Editor, page: Page, axe_source: str | None) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(served.url + "/editor/login")
    no_violations(page, axe_source)
    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("Wrong name or password.")
    no_violations(page, axe_source)  # the page with its error

    waiting_review(served, SEEDS[3])
    reviews.record_failed(  # a brief dropped into the inbox that could not be read
        served.store,
        flow_run_id="run-unreadable",
        path=served.tmp / "inbox" / "unreadable.md",
        reason="unreadable.md: front matter: unknown key 'autor'",
    )
    log_in(served, page)
    page.goto(served.url + "/editor/?refresh=off")
    expect(page.get_by_role("button", name=re.compile("^Approve ")).first).to_be_visible()
    failed = page.locator("section", has=page.get_by_role("heading", name="unreadable.md"))
    expect(failed).to_contain_text("unreadable.md: front matter: unknown key 'autor'")
    no_violations(page, axe_source)
    if axe_source is None:
        pytest.skip(
            f"axe-core not found at {AXE} (`make test` gets it); set {AXE_REQUIRED}=1 to fail"
        )


# Each email frame's own height and its content's, as the page's script left them.
FRAMES = """() => [...document.querySelectorAll("iframe[srcdoc]")].map(f => ({
  title: f.title, height: f.clientHeight,
  content: f.contentDocument.documentElement.scrollHeight,
  scrolls: f.contentDocument.documentElement.scrollHeight > f.contentWindow.innerHeight,
  shown: f.getBoundingClientRect().right <= document.documentElement.clientWidth + 0.5,
}))"""


def test_the_preview_fits_any_screen_and_approves(
    served: Editor, page: Page, axe_source: str | None, shots: Path
) -> None:
    review = previewed_review(served, SEEDS[0])
    log_in(served, page)
    url = f"{served.url}/editor/preview/{review.brief_id}/index.html"
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(url)
        page.wait_for_load_state("load")
        frames = page.evaluate(FRAMES)
        # Three views (desktop, phone, dark) of each of the three editions.
        assert len(frames) == 9, frames
        for frame in frames:
            assert frame["height"] >= frame["content"] and not frame["scrolls"], frame
            assert frame["shown"], frame  # scaled down, not cut off at the right
        page.screenshot(path=shots / f"editor-preview-{width}.png", full_page=True)
        no_violations(page, axe_source)
    # Opened from disk (no server, no CSP) the frames are fitted the same way: srcdoc
    # frames share the page's origin even there.
    page.goto(Path(review.preview, "index.html").as_uri())
    page.wait_for_load_state("load")
    for frame in page.evaluate(FRAMES):
        assert frame["height"] >= frame["content"] and frame["shown"], frame
    assert page.locator("form").count() == 0  # the Approve form is the server's only
    page.goto(url)
    page.wait_for_load_state("load")
    # The footer of each edition is inside its frame's visible height.
    footer = page.frame_locator("iframe[title='en edition, phone']").get_by_text("Unsubscribe")
    expect(footer).to_be_visible()
    form = page.locator("form.approve")
    expect(form).to_contain_text(review.digest)
    form.get_by_role("button", name="Approve this preview").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Approved {review.brief_id}: it is being sent now."
    )
    assert served.fake.calls[-1] == (review.brief_id, None, NAME)
    if axe_source is None:
        pytest.skip(
            f"axe-core not found at {AXE} (`make test` gets it); set {AXE_REQUIRED}=1 to fail"
        )


def test_the_list_with_reach_and_history_fits_and_passes_axe(
    served: Editor, page: Page, axe_source: str | None, shots: Path
) -> None:
    waiting = previewed_review(served, SEEDS[2])
    sent = waiting_review(served, SEEDS[3])
    later = waiting_review(served, SEEDS[4])  # approved for tomorrow: its send can be moved
    reviews.set_state(
        served.store,
        later.flow_run_id,
        "scheduled",
        approved_by=NAME,
        send_at=datetime.now(UTC) + timedelta(days=1),
    )
    reviews.note_send_run(served.store, later.flow_run_id, "send-run")
    reviews.set_state(served.store, sent.flow_run_id, "sent", approved_by=NAME)
    subscribers.add(served.store, "reader@example.org", "it", settings=served.settings)
    ledger = SendLedger(served.store)
    key = SendKey(sent.brief_id, "mastodon", "acct", "mastodon-en-1of1")
    assert ledger.record_attempt(key) is not None
    ledger.record_sent(key, encode_ref(PostRef(id="9", url="https://social.example/@a/9")))
    log_in(served, page)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(served.url + "/editor/?refresh=off")
        section = page.locator("section", has=page.get_by_role("heading", name=waiting.title or ""))
        expect(section).to_contain_text("edition it: 1 subscriber")
        expect(section.get_by_role("button", name=re.compile("^Send me a test"))).to_be_visible()
        expect(section.get_by_role("button", name=re.compile("^Discard"))).to_be_visible()
        scheduled = page.locator("section", has=page.get_by_role("heading", name=later.brief_id))
        expect(scheduled.get_by_label(re.compile("^New send time"))).to_be_visible()
        expect(scheduled.get_by_role("button", name=re.compile("^Cancel the send"))).to_be_visible()
        history = page.get_by_role("table", name=f"Sends of {sent.brief_id}")
        expect(history.get_by_role("link", name="mastodon-en-1of1")).to_have_attribute(
            "href", "https://social.example/@a/9"
        )
        page.screenshot(path=shots / f"editor-list-{width}.png", full_page=True)
        no_violations(page, axe_source)
    if axe_source is None:
        pytest.skip(
            f"axe-core not found at {AXE} (`make test` gets it); set {AXE_REQUIRED}=1 to fail"
        )
