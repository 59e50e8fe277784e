"""The editor's pages of ``briefcast serve`` over real HTTP (uvicorn on a loopback port, one
server for the module, the store on SQLite), and the accounts behind them.

Login: required for every page, one generic answer for a wrong name or password, rate
limits, CSRF on every form. The list: a waiting review (recorded as the review flow does,
over a real brief file), approved through a fake approve callable; a brief changed on disk
since its preview, or a digest that is not the waiting preview's, is refused in the
approval's own words. Schedules in the site's time zone. Preview files served to an editor
only, and confined to the review's folder. Logout and expiry end sessions. ``briefcast
editors add/list/remove`` in a child process."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from delivery_helpers import ROOT
from serve_helpers import csrf_of, serve_settings, uvicorn_server
from smtp_servers import HOST, Recorder, free_port
from sqlalchemy import select, update

from briefcast import editors, reviews, subscribers
from briefcast.config import Settings
from briefcast.pipeline import build, provisional, read
from briefcast.posting import PostRef
from briefcast.posting.thread import encode_ref
from briefcast.previews import write_previews
from briefcast.render.preview import APPROVE_SLOT, FIT_SCRIPT, FIT_SCRIPT_CSP
from briefcast.reviews import Review
from briefcast.send_ledger import SendKey, SendLedger
from briefcast.serve import ServeApp, create_app
from briefcast.serve import editor as area
from briefcast.serve.ratelimit import Buckets
from briefcast.store import Store, bounce_reports, deliveries
from briefcast.store import editors as editors_table
from briefcast.store import reviews as reviews_table

SEEDS = sorted((ROOT / "seeds").glob("*.txt"))
NAME = "ada@example.org"
PASSWORD = "correct horse battery staple"
SECURITY = {"content-security-policy", "x-content-type-options", "x-frame-options"}


@dataclass
class FakeApprove:
    """Approves as flows.review_actions.approve does, without Prefect: records the call."""

    store: Store | None = None
    calls: list[tuple[str, datetime | None, str]] = field(default_factory=list)

    def __call__(
        self,
        brief_id: str,
        settings: Settings,
        *,
        send_at: datetime | None,
        by: str,
        digest: str | None = None,
    ) -> Review:
        assert self.store is not None
        review = reviews.waiting_for(self.store, brief_id)
        reviews.set_state(
            self.store, review.flow_run_id, "approved", approved_by=by, send_at=send_at
        )
        self.calls.append((brief_id, send_at, by))
        found = reviews.get(self.store, review.flow_run_id)
        assert found is not None
        return found


@dataclass
class Editor:
    url: str
    port: int
    app: ServeApp
    settings: Settings
    store: Store
    tmp: Path
    fake: FakeApprove


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Editor]:
    tmp = tmp_path_factory.mktemp("editor")
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


@pytest.fixture(autouse=True)
def fresh_limits(served: Editor) -> None:
    """Every test starts with full buckets: they all log in from 127.0.0.1."""
    served.app.editor.fresh_limits()


@pytest.fixture
def client(served: Editor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=20) as c:
        yield c


_reviews = iter(range(1, 10_000))


def waiting_review(served: Editor, seed: Path = SEEDS[1], brief_id: str = "") -> Review:
    """A review as the review flow records it: the brief file (a copy of a seed), its
    preview folder (an index, an email in an iframe, a symlink leading out), its digest."""
    n = next(_reviews)
    folder = served.tmp / f"review-{n}"
    brief = folder / "briefs" / seed.name
    brief.parent.mkdir(parents=True)
    shutil.copyfile(seed, brief)
    preview = folder / "out" / f"brief-{n}"
    (preview / "email").mkdir(parents=True)
    (preview / "index.html").write_text(
        f"<!doctype html><html lang='en'><head><title>Preview {n}</title>"
        "<style>body { color: #111; }</style></head><body><h1>Preview of brief "
        f"{n}</h1><iframe src='email/en.html' title='en edition'></iframe></body></html>\n"
    )
    (preview / "email" / "en.html").write_text("<!doctype html><p>The English edition</p>\n")
    (folder / "secret.txt").write_text("the database password")
    (preview / "leak.txt").symlink_to(folder / "secret.txt")
    (preview / ".hidden").write_text("hidden")
    return reviews.record(
        served.store,
        flow_run_id=f"run-{n}",
        brief_id=brief_id or f"brief-{n}",
        path=brief,
        preview=preview,
        digest=reviews.digest(brief, served.settings),
    )


def previewed_review(served: Editor, seed: Path = SEEDS[1]) -> Review:
    """A review over the dry run's real preview of a copy of ``seed`` (every channel)."""
    n = next(_reviews)
    folder = served.tmp / f"review-{n}"
    brief_file = folder / "briefs" / seed.name
    brief_file.parent.mkdir(parents=True)
    shutil.copyfile(seed, brief_file)
    settings = served.settings
    names = ["email", "web", "feed", "social"]
    briefs = provisional(read([brief_file], settings), settings)
    (preview,) = write_previews(build(briefs, settings, names), names, folder / "out", settings)
    return reviews.record(
        served.store,
        flow_run_id=f"run-{n}",
        brief_id=briefs[0].id,
        path=brief_file,
        preview=preview,
        digest=reviews.digest(brief_file, settings),
        title=briefs[0].title,
    )


def login(client: httpx.Client, name: str = NAME, password: str = PASSWORD) -> httpx.Response:
    csrf = csrf_of(client.get("/editor/login").text)
    return client.post("/editor/login", data={"csrf": csrf, "name": name, "password": password})


def logged_in(client: httpx.Client) -> str:
    r = login(client)
    assert r.status_code == 303 and r.headers["location"] == "/editor/", r.text
    token = client.cookies.get(area.SESSION_COOKIE)
    assert token
    return token


def form_csrf(html: str, action: str) -> str:
    m = re.search(
        rf'<form[^>]*action="{re.escape(action)}">\s*<input type="hidden" name="csrf" '
        r'value="([^"]+)"',
        html,
    )
    assert m, html
    return m[1]


def approve(
    client: httpx.Client, review: Review, digest: str | None = None, send_at: str = ""
) -> httpx.Response:
    page = client.get("/editor/").text
    return client.post(
        "/editor/approve",
        data={
            "csrf": form_csrf(page, "/editor/approve"),
            "brief_id": review.brief_id,
            "digest": review.digest if digest is None else digest,
            "send_at": send_at,
        },
    )


def flash_after(client: httpx.Client, response: httpx.Response) -> str:
    """The line the list page shows after an action (Post/Redirect/Get)."""
    assert response.status_code == 303 and response.headers["location"] == "/editor/"
    page = client.get("/editor/")
    m = re.search(r'<p class="flash (ok|error)" role="\w+">([^<]*)</p>', page.text)
    assert m, page.text
    assert client.get("/editor/").text.count('class="flash') == 0  # said once
    return f"{m[1]}: {m[2]}"


def raw(served: Editor, path: str, token: str) -> int:
    """GET with the path exactly as given (httpx would tidy ``/../`` away)."""
    conn = http.client.HTTPConnection(HOST, served.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": f"{area.SESSION_COOKIE}={token}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# --- logging in -------------------------------------------------------------------------------


def test_every_page_needs_a_session(served: Editor, client: httpx.Client) -> None:
    review = waiting_review(served)
    for path in ("/editor/", f"/editor/preview/{review.brief_id}/index.html"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/editor/login", path
        assert r.headers["cache-control"] == "no-store"
    assert client.get("/editor").headers["location"] == "/editor/"
    r = client.post("/editor/approve", data={"brief_id": review.brief_id})
    assert r.status_code == 303 and r.headers["location"] == "/editor/login"
    assert served.fake.calls == [] or review.brief_id not in [c[0] for c in served.fake.calls]
    page = client.get("/editor/login")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert {k.lower() for k in page.headers} >= SECURITY
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert review.brief_id not in page.text


def test_a_wrong_name_or_password_gets_one_generic_answer(
    served: Editor, client: httpx.Client
) -> None:
    answers = [
        login(client, NAME, "not the password at all"),
        login(client, "nobody@example.org", PASSWORD),
        login(client, "not a valid name!", PASSWORD),
        login(client, NAME, ""),
    ]
    for r in answers:
        assert r.status_code == 401
        assert area.WRONG in r.text
        assert area.SESSION_COOKIE not in client.cookies
    assert client.get("/editor/").status_code == 303


def test_failed_logins_are_rate_limited(served: Editor, client: httpx.Client) -> None:
    for _ in range(served.settings.serve.login_name_address_burst):
        assert login(client, NAME, "wrong password, again").status_code == 401
    r = login(client, NAME, PASSWORD)  # even the right one, for a while
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "Too many login attempts" in r.text
    assert area.SESSION_COOKIE not in client.cookies
    # Another name from the same address is not locked out by this one...
    editors.add(served.store, "grace", PASSWORD)
    try:
        assert login(client, "grace", PASSWORD).status_code == 303
    finally:
        editors.remove(served.store, "grace")
    # ...until the address itself has tried too often.
    served.app.editor.by_ip = Buckets(2, 1, 100)
    login(client, "x", "y")
    login(client, "x", "y")
    assert login(client, "x", "y").status_code == 429


def test_forms_need_their_csrf_token(served: Editor, client: httpx.Client) -> None:
    client.get("/editor/login")  # the CSRF cookie
    for data in ({"name": NAME, "password": PASSWORD}, {"csrf": "forged", "name": NAME}):
        r = client.post("/editor/login", data={**data, "password": PASSWORD})
        assert r.status_code == 403 and area.SESSION_COOKIE not in client.cookies
    review = waiting_review(served)
    logged_in(client)
    page = client.get("/editor/").text
    good = form_csrf(page, "/editor/approve")
    logout = form_csrf(page, "/editor/logout")
    for csrf in (None, "", "forged", logout):  # each form's token is for that form only
        data = {"brief_id": review.brief_id, "digest": review.digest}
        if csrf is not None:
            data["csrf"] = csrf
        r = client.post("/editor/approve", data=data)
        assert r.status_code == 403, csrf
    for csrf in (None, "", "forged", good):
        r = client.post("/editor/logout", data={} if csrf is None else {"csrf": csrf})
        assert r.status_code == 403, csrf
    # Another session's token does not do either.
    with httpx.Client(base_url=served.url, timeout=20) as other:
        logged_in(other)
        other_page = other.get("/editor/").text
        assert form_csrf(other_page, "/editor/approve") != good
        r = client.post(
            "/editor/approve",
            data={
                "csrf": form_csrf(other_page, "/editor/approve"),
                "brief_id": review.brief_id,
                "digest": review.digest,
            },
        )
        assert r.status_code == 403
    assert review.brief_id not in [c[0] for c in served.fake.calls]
    assert client.get("/editor/").status_code == 200  # still logged in


# --- the list and approving ----------------------------------------------------------------


def test_the_list_shows_a_waiting_review_and_approving_it_calls_approve(
    served: Editor, client: httpx.Client
) -> None:
    review = waiting_review(served)
    logged_in(client)
    page = client.get("/editor/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    html = page.text
    assert f">{review.brief_id}</h3>" in html and ">waiting</span>" in html
    # Linked by its digest: the page and its frames come from the review being approved.
    assert f'href="/editor/preview/{review.brief_id}/{review.digest}/index.html"' in html
    assert f'name="digest" value="{review.digest}"' in html
    assert f"digest <code>{review.digest[:12]}</code>" in html  # by its Approve button
    assert 'type="datetime-local"' in html and "Europe/Rome" in html
    assert 'http-equiv="refresh"' not in html  # nothing under way
    assert f"{review.created_at.astimezone(served.settings.site.tz):%Y-%m-%d %H:%M}" in html
    # Waiting reviews come first, newest first among them.
    newer = waiting_review(served, SEEDS[2])
    html = client.get("/editor/").text
    assert html.index(newer.brief_id) < html.index(review.brief_id)

    line = flash_after(client, approve(client, review))
    assert line == f"ok: Approved {review.brief_id}: it is being sent now."
    assert served.fake.calls[-1] == (review.brief_id, None, NAME)
    now = reviews.get(served.store, review.flow_run_id)
    assert now is not None and now.state == "approved" and now.approved_by == NAME

    html = client.get("/editor/").text
    assert html.index(newer.brief_id) < html.index(review.brief_id)  # waiting first
    assert f"(by {NAME})" in html and "nothing queued yet" in html
    assert '<meta http-equiv="refresh" content="10">' in html  # a send under way
    assert 'http-equiv="refresh"' not in client.get("/editor/?refresh=off").text
    # Approved: no second Approve form for it.
    assert f'name="brief_id" value="{review.brief_id}"' not in html
    approve_again = approve(client, review)
    assert flash_after(client, approve_again).startswith("error: ")
    assert served.fake.calls.count((review.brief_id, None, NAME)) == 1


def test_a_brief_changed_since_its_preview_is_refused(served: Editor, client: httpx.Client) -> None:
    review = waiting_review(served)
    logged_in(client)
    page = client.get("/editor/").text  # the page the editor is looking at
    brief = Path(review.path)
    brief.write_text(brief.read_text("utf-8") + "\nOne more line.\n", "utf-8")
    with pytest.raises(reviews.Changed) as expected:
        reviews.check(review, served.settings)
    r = client.post(
        "/editor/approve",
        data={
            "csrf": form_csrf(page, "/editor/approve"),
            "brief_id": review.brief_id,
            "digest": review.digest,
        },
    )
    assert flash_after(client, r) == f"error: {expected.value}"
    assert review.brief_id not in [c[0] for c in served.fake.calls]
    still = reviews.get(served.store, review.flow_run_id)
    assert still is not None and still.state == "waiting"


def test_a_digest_that_is_not_the_waiting_previews_is_refused(
    served: Editor, client: httpx.Client
) -> None:
    review = waiting_review(served)
    logged_in(client)
    line = flash_after(client, approve(client, review, digest="0" * 64))
    assert line.startswith(f"error: {review.brief_id}: the preview you approved is not")
    assert "nothing was sent" in line
    assert review.brief_id not in [c[0] for c in served.fake.calls]


def test_a_send_can_be_scheduled_in_the_sites_time_zone(
    served: Editor, client: httpx.Client
) -> None:
    tz = served.settings.site.tz
    logged_in(client)
    refused = {
        "yesterday": (datetime.now(tz) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "too far": (datetime.now(tz) + timedelta(days=91)).strftime("%Y-%m-%dT%H:%M"),
        "garbage": "next tuesday",
        "skipped by the clocks": "2030-03-31T02:30",  # Europe/Rome springs forward at 2:00
    }
    for why, value in refused.items():
        review = waiting_review(served)
        line = flash_after(client, approve(client, review, send_at=value))
        assert line.startswith("error: send at: "), (why, line)
        assert review.brief_id not in [c[0] for c in served.fake.calls], why
    review = waiting_review(served)
    local = (datetime.now(tz) + timedelta(days=2)).replace(second=0, microsecond=0)
    line = flash_after(client, approve(client, review, send_at=f"{local:%Y-%m-%dT%H:%M}"))
    assert line == f"ok: Approved {review.brief_id}: it will be sent at {local:%Y-%m-%d %H:%M %Z}."
    brief_id, send_at, by = served.fake.calls[-1]
    assert brief_id == review.brief_id and by == NAME
    assert send_at is not None and send_at.utcoffset() is not None
    assert send_at == local and send_at.utcoffset() == timedelta(0)  # kept in UTC
    stored = reviews.get(served.store, review.flow_run_id)
    assert stored is not None and stored.send_at == local


def test_parse_send_at() -> None:
    tz = ZoneInfo("Europe/Rome")
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert area.parse_send_at("", tz, now) is None
    when = area.parse_send_at("2026-01-06T09:30", tz, now)
    assert when == datetime(2026, 1, 6, 8, 30, tzinfo=UTC)
    assert area.parse_send_at("2026-01-06T09:30:00", tz, now) == when
    for bad in ("2026-01-05T12:59", "2026-04-06T13:01", "2026-13-01T00:00"):
        with pytest.raises(area.ScheduleError):
            area.parse_send_at(bad, tz, now)


def section_of(page: str, brief_id: str) -> str:
    """The list's section of one review (its heading is its title, or its id)."""
    sections = re.findall(r"<section class=\"review.*?</section>", page, re.S)
    found = [s for s in sections if f'value="{brief_id}"' in s or f">{brief_id}<" in s]
    assert len(found) == 1, page
    return found[0]


def test_the_list_shows_titles_and_whom_each_edition_reaches(
    served: Editor, client: httpx.Client
) -> None:
    review = waiting_review(served)
    reviews.set_state(served.store, review.flow_run_id, reviews.ReviewState.WAITING)
    for edition in ("it", "both"):
        (Path(review.preview) / "email" / f"{edition}.html").write_text("<p>edition</p>")
    with served.store.engine.begin() as conn:
        conn.execute(
            update(reviews_table)
            .where(reviews_table.c.flow_run_id == review.flow_run_id)
            .values(title="Ukraine & its allies <meet>")
        )
    for address, language, status in (
        ("en1@example.org", "en", "active"),
        ("en2@example.org", "en", "active"),
        ("en3@example.org", "en", "pending"),
        ("it1@example.org", "it", "active"),
        ("it2@example.org", "it", "unsubscribed"),
        ("both1@example.org", "both", "active"),
    ):
        subscribers.add(served.store, address, language, status=status, settings=served.settings)
    logged_in(client)
    section = section_of(client.get("/editor/").text, review.brief_id)
    assert '<h3 id="review-w-1">Ukraine &amp; its allies &lt;meet&gt;</h3>' in section
    assert "<dt>Id</dt><dd>" + review.brief_id in section
    reach = re.findall(r"<li>edition (\w+): (\d+) subscribers?</li>", section)
    assert reach == [("en", "2"), ("it", "1"), ("both", "1")]


def test_the_history_counts_each_channels_sends(served: Editor, client: httpx.Client) -> None:
    review = waiting_review(served)
    reviews.set_state(served.store, review.flow_run_id, "sent", approved_by=NAME)
    people = {}
    for address in ("h1@example.org", "h2@example.org", "h3@example.org", "h4@example.org"):
        subscribers.add(served.store, address, "en", settings=served.settings)
        found = subscribers.find(served.store, address)
        assert found is not None
        people[address] = found.id
    then = datetime.now(UTC) - timedelta(hours=1)
    with served.store.engine.begin() as conn:
        ids = {}
        for address, status in zip(people, ("sent", "sent", "deferred", "bounced"), strict=True):
            ids[address] = conn.execute(
                deliveries.insert().values(
                    brief_id=review.brief_id,
                    subscriber_id=people[address],
                    edition="en",
                    status=status,
                    attempts=1,
                    updated_at=then,
                )
            ).inserted_primary_key[0]
        conn.execute(
            bounce_reports.insert().values(
                report_key="arf-1",
                kind="complaint",
                delivery_id=ids["h2@example.org"],
                subscriber_id=people["h2@example.org"],
                processed_at=then,
            )
        )
    subscribers.unsubscribe(served.store, people["h1@example.org"])
    ledger = SendLedger(served.store)
    posts = {
        "x-en-1of1": encode_ref(PostRef(id="1", url="https://x.example/status/1")),
        "mastodon-en-1of1": encode_ref(PostRef(id="2", url="javascript:alert(1)")),
    }
    for part, remote_id in posts.items():
        key = SendKey(review.brief_id, part.split("-")[0], "acct", part)
        assert ledger.record_attempt(key) is not None
        ledger.record_sent(key, remote_id)
    failed = SendKey(review.brief_id, "bluesky", "acct", "bluesky-en-1of1")
    assert ledger.record_attempt(failed) is not None
    ledger.record_failed(failed, "refused", retry=False)

    logged_in(client)
    page = client.get("/editor/").text
    assert page.index(">History</h2>") < page.index(review.brief_id)
    section = section_of(page, review.brief_id)
    rows = dict(re.findall(r'<tr><th scope="row">(\w+)</th><td>(.*?)</td></tr>', section, re.S))
    assert sorted(rows) == ["bluesky", "email", "mastodon", "x"]
    counts = {
        channel: re.findall(r'<span class="count">(\d+) ([a-z ]+)</span>', cell)
        for channel, cell in rows.items()
    }
    assert counts["email"] == [
        ("2", "sent"),
        ("1", "deferred"),
        ("1", "bounced"),
        ("1", "complained"),
        ("1", "unsubscribed since"),
    ]
    assert counts["x"] == [("1", "sent")] and counts["bluesky"] == [("1", "failed")]
    assert '<a href="https://x.example/status/1" rel="noreferrer">x-en-1of1</a>' in rows["x"]
    assert "javascript:" not in section and "<a " not in rows["mastodon"]


@dataclass
class FakeActions:
    """What flows.review_actions does on the Prefect server, recorded; a new review as the
    review flow would record it."""

    served: Editor
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def cancel_run(self, flow_run_id: str) -> None:
        self.calls.append(("cancel_run", flow_run_id))

    def reschedule(self, flow_run_id: str, when: datetime) -> None:
        self.calls.append(("reschedule", flow_run_id, when.isoformat()))

    def review_again(self, path: Path) -> None:
        self.calls.append(("review_again", str(path)))
        old = reviews.listed(self.served.store, ("cancelled",), 1)[0]
        reviews.record(
            self.served.store,
            flow_run_id=f"again-{old.flow_run_id}",
            brief_id=old.brief_id,
            path=path,
            preview=Path(old.preview),
            digest=reviews.digest(path, self.served.settings),
        )


def act(client: httpx.Client, action: str, review: Review, **data: str) -> httpx.Response:
    csrf = form_csrf(client.get("/editor/").text, f"/editor/{action}")
    return client.post(
        f"/editor/{action}", data={"csrf": csrf, "brief_id": review.brief_id, **data}
    )


def scheduled_review(served: Editor) -> Review:
    review = waiting_review(served)
    reviews.set_state(
        served.store,
        review.flow_run_id,
        "scheduled",
        approved_by=NAME,
        send_at=datetime.now(UTC) + timedelta(days=1),
    )
    reviews.note_send_run(served.store, review.flow_run_id, f"send-{review.flow_run_id}")
    return review


def test_discard_reschedule_and_cancel_back_to_waiting(
    served: Editor, client: httpx.Client
) -> None:
    fake = FakeActions(served)
    served.app.editor.actions = fake
    logged_in(client)

    # Discard: the waiting review is cancelled, its run with it, and leaves the list.
    waiting = waiting_review(served)
    r = act(client, "discard", waiting)
    assert (
        flash_after(client, r) == f"ok: Discarded {waiting.brief_id}: nothing of it will be sent."
    )
    assert fake.calls == [("cancel_run", waiting.flow_run_id)]
    state = reviews.get(served.store, waiting.flow_run_id)
    assert (
        state is not None and state.state == "cancelled" and state.detail == f"discarded by {NAME}"
    )
    assert f'value="{waiting.brief_id}"' not in client.get("/editor/").text
    waiting_review(served)  # another, so that the page has a discard form
    r = act_raw(client, "discard", waiting.brief_id)  # twice: nothing waits now
    assert flash_after(client, r) == (
        f"error: {waiting.brief_id}: no preview of it waits for approval"
    )

    # Reschedule: the same send run, a new time, in the site's time zone.
    sched = scheduled_review(served)
    rome = ZoneInfo("Europe/Rome")
    when = (datetime.now(rome) + timedelta(days=2)).replace(second=0, microsecond=0)
    r = act(client, "reschedule", sched, send_at=f"{when:%Y-%m-%dT%H:%M}")
    assert flash_after(client, r) == (
        f"ok: Rescheduled {sched.brief_id}: it will be sent at {when:%Y-%m-%d %H:%M %Z}."
    )
    assert fake.calls[-1] == (
        "reschedule",
        f"send-{sched.flow_run_id}",
        when.astimezone(UTC).isoformat(),
    )
    state = reviews.get(served.store, sched.flow_run_id)
    assert state is not None and state.state == "scheduled" and state.send_at is not None
    assert state.send_at.astimezone(UTC) == when.astimezone(UTC)
    past = datetime.now(rome) - timedelta(hours=1)
    r = act(client, "reschedule", sched, send_at=f"{past:%Y-%m-%dT%H:%M}")
    assert flash_after(client, r).startswith("error: send at: ")
    assert len(fake.calls) == 2  # refused before Prefect was asked

    # Cancel: the send run is cancelled and the brief waits for approval again.
    r = act(client, "cancel", sched)
    assert flash_after(client, r) == (
        f"ok: Cancelled the send of {sched.brief_id}: it is previewed again and will wait "
        "for approval."
    )
    assert fake.calls[-2:] == [
        ("cancel_run", f"send-{sched.flow_run_id}"),
        ("review_again", sched.path),
    ]
    again = reviews.waiting_for(served.store, sched.brief_id)
    assert again.flow_run_id == f"again-{sched.flow_run_id}"
    section = section_of(client.get("/editor/").text, sched.brief_id)
    assert ">waiting</span>" in section and 'action="/editor/approve"' in section
    scheduled_review(served)  # another, so that the page has a cancel form
    r = act_raw(client, "cancel", waiting.brief_id)
    assert flash_after(client, r) == f"error: {waiting.brief_id}: no send of it is scheduled"

    # Every action needs its own form's token.
    for action in area.ACTIONS:
        other = form_csrf(client.get("/editor/").text, "/editor/approve")
        r = client.post(f"/editor/{action}", data={"csrf": other, "brief_id": sched.brief_id})
        assert r.status_code == 403, action
    assert len(fake.calls) == 4


@contextmanager
def smtp_server_on(recorder: Recorder, port: int) -> Iterator[None]:
    """A real SMTP server (aiosmtpd) on the port the served settings name."""
    controller = Controller(recorder, hostname=HOST, port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def act_raw(client: httpx.Client, action: str, brief_id: str) -> httpx.Response:
    """An action's form posted for any brief (its token from the page's own form)."""
    page = client.get("/editor/").text
    m = re.search(r'name="csrf" value="([^"]+)"', page.split(f'action="/editor/{action}"')[1])
    if m is None:  # no such form on the page now: the token is the session's, made here
        raise AssertionError(page)
    return client.post(f"/editor/{action}", data={"csrf": m[1], "brief_id": brief_id})


def test_a_test_send_mails_every_edition_to_the_editor(
    served: Editor, client: httpx.Client
) -> None:
    review = waiting_review(served, SEEDS[1])
    recorder = Recorder()
    logged_in(client)
    with smtp_server_on(recorder, served.settings.smtp.port):
        r = act(client, "test-send", review)
        assert flash_after(client, r) == (
            f"ok: Sent a test of {review.brief_id} to {NAME}: 3 editions, marked [TEST]."
        )
    assert sorted(m.rcpt_to for m in recorder.received) == [NAME] * 3
    assert all(m.message["subject"].startswith("[TEST]") for m in recorder.received)
    with served.store.engine.connect() as conn:  # outside the ledger
        assert (
            conn.execute(select(deliveries).where(deliveries.c.brief_id == review.brief_id)).first()
            is None
        )
    state = reviews.get(served.store, review.flow_run_id)
    assert state is not None and state.state == "waiting"
    # No mail server: one line, nothing changed.
    r = act(client, "test-send", review)
    said = flash_after(client, r)
    assert said.startswith("error: ") and "server's log" not in said, said  # the relay's line


def test_a_test_send_needs_an_editor_named_by_an_address(served: Editor) -> None:
    editors.add(served.store, "bob", PASSWORD)
    review = waiting_review(served)
    with httpx.Client(base_url=served.url, timeout=20) as client:
        r = login(client, "bob")
        assert r.status_code == 303, r.text
        r = act(client, "test-send", review)
        assert flash_after(client, r) == (
            "error: test send: your editor name &#39;bob&#39; is not an email address"
        )  # as the page escapes it


# --- previews ------------------------------------------------------------------------------


def test_previews_are_served_to_editors_and_confined(served: Editor, client: httpx.Client) -> None:
    review = waiting_review(served)
    token = logged_in(client)
    base = f"/editor/preview/{review.brief_id}"
    index = client.get(f"{base}/index.html")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert index.content == (Path(review.preview) / "index.html").read_bytes()
    assert index.headers["cache-control"] == "no-store"
    csp = index.headers["content-security-policy"]
    # No script but the preview's own, by its hash (it fits the email frames to their height).
    assert f"script-src {FIT_SCRIPT_CSP};" in csp and "'unsafe-inline'" in csp
    assert "frame-src 'self'" in csp and "form-action 'self'" in csp
    assert index.headers["x-frame-options"] == "SAMEORIGIN"
    assert client.get(f"{base}/").content == index.content
    assert client.get(f"{base}/email/en.html").text.startswith("<!doctype html><p>The English")
    # The editor's pages themselves may not be framed, nor run inline styles.
    assert client.get("/editor/").headers["x-frame-options"] == "DENY"

    for path in (
        f"{base}/../secret.txt",
        f"{base}/%2e%2e/secret.txt",
        f"{base}/%2E%2E%2Fsecret.txt",
        f"{base}/email/../../secret.txt",
        f"{base}/email/%2e%2e/%2e%2e/secret.txt",
        f"{base}/leak.txt",  # a symlink leading out
        f"{base}/.hidden",
        f"{base}/email",  # a folder
        f"{base}/nothing.html",
        f"{base}/..%5csecret.txt",
        "/editor/preview/no-such-brief/index.html",
        "/editor/preview/%2e%2e/index.html",
    ):
        assert raw(served, path, token) == 404, path
    assert raw(served, f"{base}/index.html", token) == 200
    assert raw(served, f"{base}/index.html", "not-a-session-token-at-all") == 303


def test_a_preview_is_addressed_by_the_digest_of_its_review(
    served: Editor, client: httpx.Client
) -> None:
    """Two reviews of one id: each one's files at its own digest, whichever is newer."""
    older = waiting_review(served, SEEDS[1], brief_id="one-id")
    newer = waiting_review(served, SEEDS[2], brief_id="one-id")  # supersedes the older
    assert older.digest != newer.digest
    token = logged_in(client)
    base = "/editor/preview/one-id"
    old_page = client.get(f"{base}/{older.digest}/index.html")
    assert old_page.status_code == 200 and old_page.headers["cache-control"] == "no-store"
    assert old_page.content == (Path(older.preview) / "index.html").read_bytes()  # no form
    frame = client.get(f"{base}/{older.digest}/email/en.html")
    assert frame.content == (Path(older.preview) / "email" / "en.html").read_bytes()
    new_page = client.get(f"{base}/{newer.digest}/index.html").content
    assert new_page == (Path(newer.preview) / "index.html").read_bytes() != old_page.content
    assert client.get(f"{base}/index.html").content == new_page  # the newest, as before
    for path in (
        f"{base}/{'0' * 64}/index.html",  # no review with that digest
        f"/editor/preview/brief-x/{newer.digest}/index.html",  # another brief's address
        f"{base}/{newer.digest}/../../secret.txt",
        f"{base}/{newer.digest}/%2e%2e/%2e%2e/secret.txt",
        f"{base}/{newer.digest}/leak.txt",
        f"{base}/{newer.digest}/.hidden",
        f"{base}/{newer.digest}",
    ):
        assert raw(served, path, token) == 404, path


def test_a_waiting_preview_carries_its_approve_form(served: Editor, client: httpx.Client) -> None:
    review = previewed_review(served, SEEDS[4])
    logged_in(client)
    on_disk = (Path(review.preview) / "index.html").read_text("utf-8")
    assert on_disk.count(APPROVE_SLOT) == 1 and "<form" not in on_disk
    assert f"<script>{FIT_SCRIPT}</script>" in on_disk  # the script the CSP's hash allows
    page = client.get(f"/editor/preview/{review.brief_id}/index.html").text
    assert APPROVE_SLOT not in page
    assert f'<input type="hidden" name="digest" value="{review.digest}">' in page
    # Addressed by its digest (as the list links it), the same page and form.
    by_digest = client.get(f"/editor/preview/{review.brief_id}/{review.digest}/index.html").text
    assert by_digest.count('<form class="approve"') == 1 and APPROVE_SLOT not in by_digest
    assert f'<input type="hidden" name="digest" value="{review.digest}">' in by_digest
    assert f'<code class="digest">{review.digest}</code>' in page  # the digest, shown
    short = f'</button> <span class="short-digest">digest <code>{review.digest[:12]}</code>'
    assert short in page  # next to the button, the short form
    csrf = form_csrf(page, "/editor/approve")
    r = client.post(
        "/editor/approve",
        data={"csrf": csrf, "brief_id": review.brief_id, "digest": review.digest, "send_at": ""},
    )
    assert flash_after(client, r) == f"ok: Approved {review.brief_id}: it is being sent now."
    assert served.fake.calls[-1] == (review.brief_id, None, NAME)
    # Approved: the preview no longer offers to approve it.
    page = client.get(f"/editor/preview/{review.brief_id}/index.html").text
    assert "<form" not in page and APPROVE_SLOT in page


# --- sessions ------------------------------------------------------------------------------


def test_logout_ends_the_session(served: Editor, client: httpx.Client) -> None:
    token = logged_in(client)
    assert editors.session(served.store, token) is not None
    csrf = form_csrf(client.get("/editor/").text, "/editor/logout")
    r = client.post("/editor/logout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/editor/login"
    assert area.SESSION_COOKIE not in client.cookies
    assert "You are logged out." in client.get("/editor/login").text
    assert editors.session(served.store, token) is None
    assert raw(served, "/editor/", token) == 303  # the old cookie, sent again, opens nothing


def test_sessions_expire(served: Editor, client: httpx.Client) -> None:
    editor_id = editors.verify(served.store, NAME, PASSWORD)
    assert editor_id is not None
    token, csrf = editors.open_session(served.store, editor_id, timedelta(seconds=-1))
    assert editors.session(served.store, token) is None
    assert raw(served, "/editor/", token) == 303
    live, csrf = editors.open_session(served.store, editor_id, timedelta(minutes=5))
    assert editors.session(served.store, live) == editors.Session(editor_id, NAME, csrf)
    assert raw(served, "/editor/", live) == 200
    # The cookie the app sets lives no longer than the session.
    r = login(client)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert f"Max-Age={int(area.SESSION_TTL.total_seconds())}" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/editor" in cookie
    assert "Secure" not in cookie  # plain http here


def test_a_session_only_from_its_token(served: Editor) -> None:
    editor_id = editors.verify(served.store, NAME, PASSWORD)
    assert editor_id is not None
    token, _ = editors.open_session(served.store, editor_id, timedelta(minutes=5))
    with served.store.engine.connect() as conn:
        ids = list(conn.execute(select(editors.editor_sessions.c.id)).scalars())
    assert token not in ids and editors._key(token) in ids  # only its sha256 is kept
    for forged in ("", "x", editors._key(token), token[:-1], token + "A", None):
        assert editors.session(served.store, forged) is None
    editors.close_session(served.store, token)
    assert editors.session(served.store, token) is None


# --- accounts ------------------------------------------------------------------------------


def test_accounts(served: Editor) -> None:
    store = served.store
    with pytest.raises(editors.EditorError, match="1 to 100"):
        editors.add(store, "no spaces", PASSWORD)
    with pytest.raises(editors.EditorError, match="1 to 100"):
        editors.add(store, "x" * 101, PASSWORD)
    with pytest.raises(editors.EditorError, match="12 to 1024"):
        editors.add(store, "short", "eleven char")
    with pytest.raises(editors.EditorError, match="12 to 1024"):
        editors.add(store, "long", "x" * 1025)
    with pytest.raises(editors.EditorError, match="exists already"):
        editors.add(store, NAME, PASSWORD)
    new = editors.add(store, "linus", "p" * 12)
    assert "linus" in editors.names(store)
    assert editors.verify(store, "linus", "p" * 12) == new
    assert editors.verify(store, "linus", "p" * 13) is None
    assert editors.verify(store, "LINUS", "p" * 12) is None
    # A hash made with weaker parameters is replaced on the next good password.
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("p" * 12)
    with store.engine.begin() as conn:
        conn.execute(
            update(editors_table).where(editors_table.c.id == new).values(password_hash=weak)
        )
    assert editors.verify(store, "linus", "p" * 12) == new
    with store.engine.connect() as conn:
        stored = conn.execute(
            select(editors_table.c.password_hash).where(editors_table.c.id == new)
        ).scalar_one()
    assert stored != weak and stored.startswith("$argon2id$")
    token, _ = editors.open_session(store, new, timedelta(minutes=5))
    assert editors.remove(store, "linus") and not editors.remove(store, "linus")
    assert editors.session(store, token) is None  # their sessions went with them
    assert "linus" not in editors.names(store)


def test_the_default_approve_is_the_flows_and_loads_no_prefect(served: Editor) -> None:
    settings = served.settings
    app = create_app(settings, served.store)
    assert app.editor.approve is area.default_approve
    with pytest.raises(reviews.NotWaiting):
        area.default_approve("no-such-brief", settings, send_at=None, by=NAME)
    code = (
        "import sys, briefcast.serve as w; w.create_app; "
        "assert 'prefect' not in sys.modules and 'flows.review_actions' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('prefect', 'flows')))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def editors_cli(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """``briefcast editors …`` in a child process: the real command when cli/main.py has the
    group, else the group itself (``briefcast.cli.editors``)."""
    import os

    from briefcast import cli

    registered = {group.name for group in cli.app.registered_groups}
    if "editors" in registered:
        command = [str(Path(sys.executable).parent / "briefcast"), "editors", *args]
    else:
        command = [
            sys.executable,
            "-c",
            "from briefcast.cli.editors import editors_app; "
            "editors_app(prog_name='briefcast editors')",
            *args,
        ]
    return subprocess.run(
        command,
        cwd=tmp,
        env={
            **os.environ,
            "BRIEFCAST_DATABASE__URL": f"sqlite:///{tmp / 'cli.db'}",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_the_editors_command(tmp_path: Path) -> None:
    with_password = {"BRIEFCAST_EDITOR_PASSWORD": PASSWORD}
    added = editors_cli(tmp_path, "add", NAME, env=with_password)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"added editor {NAME}"
    assert editors_cli(tmp_path, "add", "grace", env=with_password).returncode == 0
    listed = editors_cli(tmp_path, "list")
    assert listed.returncode == 0 and listed.stdout.splitlines() == [NAME, "grace"]
    again = editors_cli(tmp_path, "add", NAME, env=with_password)
    assert (
        again.returncode == 2
        and again.stderr.strip() == f"error: an editor named {NAME} exists already"
    )
    short = editors_cli(tmp_path, "add", "bob", env={"BRIEFCAST_EDITOR_PASSWORD": "short"})
    assert short.returncode == 2 and len(short.stderr.strip().splitlines()) == 1
    assert "12 to 1024" in short.stderr
    bad = editors_cli(tmp_path, "add", "no spaces", env=with_password)
    assert bad.returncode == 2 and "1 to 100" in bad.stderr
    with Store(f"sqlite:///{tmp_path / 'cli.db'}") as store:
        assert editors.verify(store, NAME, PASSWORD) is not None
    removed = editors_cli(tmp_path, "remove", "grace")
    assert removed.returncode == 0 and removed.stdout.strip() == "removed editor grace"
    missing = editors_cli(tmp_path, "remove", "grace")
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no editor named grace"
    assert editors_cli(tmp_path, "list").stdout.splitlines() == [NAME]


WARM_UP = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from serve_helpers import csrf_of, serve_settings
from starlette.testclient import TestClient
from briefcast import editors
from briefcast.serve import create_app
from briefcast.store import Store
name, password, tmp = sys.argv[2], sys.argv[3], Path(sys.argv[4])
(tmp / "public").mkdir()
settings = serve_settings(tmp / "public", tmp / "w.db", 2525)
store = Store(settings.database.url)
editors.add(store, name, password)
with TestClient(create_app(settings, store), base_url="http://127.0.0.1") as client:
    csrf = csrf_of(client.get("/editor/login").text)
    before = sorted(m for m in sys.modules if m.startswith("prefect"))
    form = {"csrf": csrf, "name": name, "password": password}
    done = client.post("/editor/login", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    deadline = time.monotonic() + 60
    while "flows.review_actions" not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.05)
    print(before, "prefect.flow_runs" in sys.modules, "flows.review_actions" in sys.modules)
"""


def test_an_editors_login_readies_prefect_for_their_first_approval(tmp_path: Path) -> None:
    """Serving pages loads no Prefect; an editor's login starts importing what an approval
    needs, in the background, so that the first Approve does not wait for it."""
    args = [str(Path(__file__).parent), NAME, PASSWORD, str(tmp_path)]
    found = subprocess.run(
        [sys.executable, "-c", WARM_UP, *args], capture_output=True, text=True, timeout=180
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["[]", "True", "True"], found.stdout
