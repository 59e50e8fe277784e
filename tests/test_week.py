"""An editor's first week, end to end: the CLI, `briefcast up`, `briefcast serve` and Chromium.

A bilingual brief with a link, bold, a numbered list, a table, a footnote and an image goes
into the inbox of a running `briefcast up`; its preview waits; a test send (`--test-to`)
reaches only the editor; the editor logs in on `briefcast serve` in Chromium, sees the brief
by its title beside a broken brief with its reason, and approves it there. Every subscriber
of aiosmtpd receives it once, in their language, with every link, list item, table cell and
footnote in both the HTML and the text part (parsed from the received messages); the site's
page of the brief links to the subscribe form. `briefcast down` leaves no process.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from lxml import html as lxml_html
from playwright.sync_api import Page, expect
from smtp_servers import Recorder
from test_browser import browser, page
from test_markdown import EN_LINKS, EN_SENTENCES, IT_LINKS, IT_SENTENCES, RICH, check_body_html
from test_workflow import (
    EDITOR,
    EDITOR_PASSWORD,
    _descendants,
    _review,
    _serving,
    fleets,
    relay,
    run,
    smtp,
    up,
    wait_for,
    wait_sent,
)

# the fixtures, from where they are made
__all__ = ["browser", "fleets", "page", "relay", "smtp", "up"]

EDITOR_ADDRESS = "editor@europolitiche.example"
BROKEN = "---\ntitle: A brief\nautor: Ada\n---\nSome text to read.\n"


def drop(inbox: Path, name: str, text: str) -> None:
    """As an editor's program saves: written aside, then moved into the inbox at once."""
    draft = inbox.parent / f".{name}"
    draft.write_text(text, "utf-8")
    os.replace(draft, inbox / name)


def check_text_part(text: str, lang: str) -> None:
    """Every link as a numbered reference, every list item, table cell and footnote."""
    text = text.replace("\r\n", "\n")
    refs = dict(re.findall(r"^\[(\d+)\] (\S+)$", text, re.M))
    flat = re.sub(r" \[\d+\]", "", " ".join(text.split()))  # the references left out
    for href, label in (EN_LINKS if lang == "en" else IT_LINKS).items():
        n = next(k for k, v in refs.items() if v == href)
        assert f"{label} [{n}]" in " ".join(text.split()), (label, n)
    for sentence in EN_SENTENCES if lang == "en" else IT_SENTENCES:
        assert flat.count(sentence) == 1, (lang, sentence)
    assert re.search(r"^2\. ", text, re.M) and re.search(r"^¹ ", text, re.M)
    if lang == "en":
        assert re.search(r"^Britain \[\d+\] +1,500$", text, re.M), text
    for syntax in ("**", "](", "[^", "|---", "!["):
        assert syntax not in text, syntax


@pytest.mark.own_up  # it stops `briefcast up` itself
@pytest.mark.parametrize("up", [{"WORKERS": "1", "SEND_BATCH": "250"}], indirect=True)
def test_an_editors_week(up: dict, smtp: tuple[Recorder, int], page: Page) -> None:
    recorder, _port = smtp
    env, cwd = up["env"], up["cwd"]
    url = env["BRIEFCAST_DATABASE__URL"]
    inbox = cwd / "inbox"
    drop(inbox, "rich.md", RICH)
    drop(inbox, "broken.md", BROKEN)
    waiting = wait_for("the review of rich", lambda: _review(url, "rich"), 180)
    failed = wait_for("the failed review", lambda: _review(url, "broken.md", "failed"), 120)
    assert "autor" in failed.detail

    # A test send, through --test-to: only the editor gets it.
    tested = run("publish", inbox / "rich.md", "--test-to", EDITOR_ADDRESS, env=env, cwd=cwd)
    assert tested.returncode == 0, tested.stderr
    assert {m.rcpt_to for m in recorder.received} == {EDITOR_ADDRESS}
    recorder.received.clear()

    with _serving(env, cwd) as (site, _proc):
        page.goto(site + "/editor/login")
        page.get_by_label("Name").fill(EDITOR)
        page.get_by_label("Password").fill(EDITOR_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Briefs to approve")
        expect(page.locator("body")).to_contain_text("Paris agrees on a force")  # its title
        broken = page.locator("section.state-failed")
        expect(broken).to_contain_text("broken.md")
        expect(broken).to_contain_text("autor")
        # The first approval of a `serve` process imports Prefect and asks the fleet's server
        # to resume the run: several seconds on a loaded CI machine, more than the page's
        # 10 s default once (Playwright's own default is 30 s).
        page.get_by_role("button", name="Approve rich").first.click(timeout=30_000)
        expect(page.get_by_role("status")).to_contain_text("Approved rich")
        wait_sent(up, "rich")
    assert _review(url, "rich", "sent").digest == waiting.digest

    # Every subscriber once, in their language, every construct in both parts.
    by_rcpt: dict[str, list] = {}
    for received in recorder.received:
        by_rcpt.setdefault(received.rcpt_to, []).append(received.message)
    assert by_rcpt and all(len(m) == 1 for m in by_rcpt.values())
    seen: set[str] = set()
    for rcpt, (message,) in sorted(by_rcpt.items())[:30]:
        number = int(re.search(r"reader(\d+)@", rcpt)[1])  # type: ignore[index]
        edition = ("en", "it", "both")[number % 3]
        langs = ("en", "it") if edition == "both" else (edition,)
        assert message["Content-Language"] == ", ".join(langs), rcpt
        html = message.get_body(("html",)).get_content()
        doc = lxml_html.document_fromstring(html)
        text = message.get_body(("plain",)).get_content()
        for lang in langs:
            part = doc.get_element_by_id(f"brief-{lang}") if edition == "both" else doc
            check_body_html(part, lang)
            check_text_part(text, lang)
        seen.add(edition)
    assert seen == {"en", "it", "both"}

    # The site: the brief's page, with the way to subscribe in its language.
    public = Path(env["BRIEFCAST_SITE__PUBLIC_DIR"])
    for lang in ("en", "it"):
        page_html = lxml_html.document_fromstring(
            (public / lang / "rich" / "index.html").read_text("utf-8")
        )
        hrefs = [a.get("href") or "" for a in page_html.iter("a")]
        assert any("/subscribe" in h and f"lang={lang}" in h for h in hrefs), hrefs

    # `briefcast down`: nothing of up's is left.
    everything = _descendants(up["state"]["pid"]) | {up["state"]["pid"]}
    stopped = run("down", env=env, cwd=cwd, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    alive = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    assert not everything & alive, everything & alive
