"""Live social posting, each part once and only once: X faked at the HTTP layer (tests/fake_x.py,
its OAuth 1.0a signatures checked), Mastodon and Bluesky by their fakes; the posting itself,
the send ledger and the CLI are the real ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_helpers import SECRET, add_subscribers, cli_env
from fake_bluesky import fake_pds
from fake_mastodon import TOKEN, FakeMastodon
from fake_x import Answer, FakeX, environ, fake_x
from smtp_servers import Recorder, smtp_server

from briefcast import pipeline
from briefcast.config import (
    AccountSettings,
    DatabaseSettings,
    Settings,
    SiteSettings,
    SocialSettings,
)
from briefcast.posting.run import SocialSummary, post_brief
from briefcast.posting.thread import Waits, decode_ref
from briefcast.render.social import build_social
from briefcast.reporting import Summary
from briefcast.send_ledger import SendLedger
from briefcast.store import Store

SITE = SiteSettings(base_url="https://briefs.example.org", languages=["en", "it"])
TEASER = (
    "Leaders from thirty-five countries met in Paris on Tuesday and agreed on the outline of a "
    "multinational force for Ukraine once a ceasefire holds. The United Kingdom and France will "
    "set up military hubs across the country, and the United States will lead the monitoring "
    "of the truce from a coordination cell. Germany offered air defence and engineers but no "
    "troops on the ground, while Italy said it would send instructors to train the Ukrainian "
    "army away from the front line."
)
BRIEF = f"""---
id: paris-force
title: Paris agrees on a multinational force
date: 2026-01-07 18:23
lang: en
summary: {TEASER}
---
Leaders from 35 countries met in Paris on Tuesday.
"""
FAST = Waits(max_wait_seconds=5, retry_delays=(0.05, 0.05))


@pytest.fixture
def brief_file(tmp_path: Path) -> Path:
    path = tmp_path / "paris.md"
    path.write_text(BRIEF, "utf-8")
    return path


@pytest.fixture
def x() -> Iterator[FakeX]:
    with fake_x() as fake:
        yield fake


def settings_for(tmp_path: Path, *accounts: AccountSettings, **social: float) -> Settings:
    return Settings(
        site=SITE,
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'b.db'}"),
        social=SocialSettings(accounts=list(accounts), **social),
    )


def x_account(url: str, name: str = "desk-x") -> AccountSettings:
    return AccountSettings(name=name, network="x", languages=["en"], api_url=url)


def post(
    brief_file: Path, settings: Settings, *, waits: Waits = FAST, **kw: object
) -> SocialSummary:
    """The social channel's send, as the flow calls it, for the brief in brief_file."""
    (brief,) = pipeline.read([brief_file], settings)
    posts = build_social(brief, settings.site)
    env = kw.pop("environ", environ())
    return post_brief(brief, posts, settings, waits=waits, environ=env, **kw)  # type: ignore[arg-type]


def ledger(settings: Settings) -> dict[str, tuple[str, int, str | None]]:
    """part -> (status, attempts, remote_id) of the brief's social rows."""
    with Store(settings.database.url) as store:
        rows = SendLedger(store).for_brief("paris-force", "social")
    return {r.key.part: (r.status, r.attempts, r.remote_id) for r in rows}


def chained(x: FakeX) -> bool:
    """Each tweet after the first replies to the one before it."""
    return [t.in_reply_to for t in x.tweets] == [None, *(t.id for t in x.tweets[:-1])]


class Watcher:
    """A reporter that keeps what it is told (briefcast.reporting.Reporter)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.summaries: list[Summary] = []

    def status(self, label: str, done: int, total: int, note: str = "") -> None:
        self.notes.append(f"{label} {done}/{total} {note}".strip())

    def summary(self, channel: str, summary: Summary) -> None:
        self.summaries.append(summary)


# --- the thread, in process (the fake over real HTTP) ----------------------------------------


def test_a_thread_of_three_is_chained_and_never_posted_twice(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    first = post(brief_file, settings)
    assert [t.text.splitlines()[-1][-5:] for t in x.tweets] == ["orce/", "(2/3)", "(3/3)"]
    assert chained(x) and first.error is None
    assert first.rows() == [
        {
            "account": "desk-x",
            "network": "x",
            "lang": "en",
            "parts": 3,
            "posted": 3,
            "unknown": 0,
            "failed": 0,
            "queued": 0,
            "skipped": 0,
        }
    ]
    rows = ledger(settings)
    assert sorted(rows) == ["x-en-1of3", "x-en-2of3", "x-en-3of3"]
    ids = [decode_ref(rows[f"x-en-{k}of3"][2]) for k in (1, 2, 3)]
    assert [ref.id for ref in ids if ref] == [t.id for t in x.tweets]

    again = post(brief_file, settings)
    assert x.posts_received == 3 and again.total("before") == 3 and again.total("posted") == 0
    assert "posted 0" in again.line() and "skipped 3" in again.line()


def test_rate_limited_waits_until_the_reset_then_posts(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    reset = int(time.time()) + 2
    x.script(Answer(429, {"title": "Too Many Requests"}, {"x-rate-limit-reset": str(reset)}))
    watcher = Watcher()
    started = time.time()
    summary = post(brief_file, settings, reporter=watcher)
    waited = time.time() - started
    assert reset - started - 0.05 <= waited < reset - started + 1.5
    assert summary.total("posted") == 3 and chained(x) and summary.error is None
    assert any("rate limited by x: waiting" in note for note in watcher.notes)
    assert ledger(settings)["x-en-1of3"][:2] == ("sent", 2)


def test_rate_limited_beyond_the_bound_leaves_the_rest_for_the_next_run(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    later = str(int(time.time()) + 600)
    x.script(Answer(429, {"title": "Too Many Requests"}, {"x-rate-limit-reset": later}))
    started = time.time()
    summary = post(brief_file, settings, waits=Waits(max_wait_seconds=1))
    assert time.time() - started < 2  # did not wait 600 s
    assert summary.total("queued") == 3 and summary.error is None and not x.tweets
    (note,) = summary.notes()
    assert note.startswith("desk-x (x, en): rate limited by x until ") and "next run" in note
    assert ledger(settings) == {"x-en-1of3": ("queued", 1, None)}

    summary = post(brief_file, settings)  # the next run
    assert summary.total("posted") == 3 and chained(x)


def test_duplicate_content_is_unknown_and_resent_only_when_asked(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    (brief,) = pipeline.read([brief_file], settings)
    (thread,) = [p for p in build_social(brief, SITE) if p.network == "x"]
    earlier = x.seed(thread.posts[0])  # an earlier attempt got through, its answer lost

    summary = post(brief_file, settings)
    assert summary.rows()[0]["unknown"] == 1 and summary.total("queued") == 2
    (note,) = summary.notes()
    assert "part 1/3 may or may not be posted" in note and "duplicate content" in note
    assert summary.error is None and "--resend-unknown" in note
    assert ledger(settings)["x-en-1of3"][0] == "unknown"

    post(brief_file, settings)  # a plain re-run leaves it alone, and what hangs from it
    assert x.posts_received == 1 and len(x.tweets) == 1

    x.delete(earlier)  # the editor checked: it was not there after all
    summary = post(brief_file, settings, resend_unknown=True)
    assert summary.total("posted") == 3 and summary.total("unknown") == 0
    assert len(x.tweets) == 3 and chained(x)


def test_server_errors_are_retried_a_few_times_then_failed(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    unavailable = Answer(503, {"title": "Service Unavailable"})
    x.script(unavailable, unavailable)
    summary = post(brief_file, settings)
    assert summary.total("posted") == 3 and ledger(settings)["x-en-1of3"][:2] == ("sent", 3)

    other = settings_for(tmp_path / "other", x_account(x.url))
    (tmp_path / "other").mkdir()
    x.tweets.clear()
    x.script(unavailable, unavailable, unavailable)
    summary = post(brief_file, other)
    assert summary.total("failed") == 1 and summary.total("queued") == 2
    assert summary.error and "503 Service Unavailable" in summary.error
    assert ledger(other) == {"x-en-1of3": ("failed", 3, None)} and not x.tweets


def test_no_answer_after_sending_is_unknown_and_no_connection_is_failed(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url), timeout_seconds=0.5)
    x.hold(1)
    summary = post(brief_file, settings)
    assert summary.rows()[0]["unknown"] == 1 and summary.error is None
    assert "no complete answer within 0.5 s" in summary.notes()[0]
    assert ledger(settings)["x-en-1of3"][:2] == ("unknown", 1)

    closed = settings_for(tmp_path / "closed", x_account("http://127.0.0.1:9"))
    (tmp_path / "closed").mkdir()
    summary = post(brief_file, closed)
    assert summary.total("failed") == 1 and summary.error and "cannot reach X" in summary.error
    assert ledger(closed)["x-en-1of3"][:2] == ("failed", 3)


def test_refused_credentials_stop_that_account_and_the_others_go_on(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url), x_account(x.url, "desk-x2"))
    x.script(Answer(401, {"title": "Unauthorized", "status": 401}))
    summary = post(brief_file, settings, environ=environ() | environ("desk-x2"))
    first, second = summary.rows()
    assert (first["account"], first["failed"], first["queued"]) == ("desk-x", 1, 2)
    assert (second["account"], second["posted"]) == ("desk-x2", 3)
    assert summary.error and summary.error.startswith("desk-x (en): x desk-x (")
    assert "401 Unauthorized" in summary.error and len(x.tweets) == 3 and chained(x)


def test_a_thread_that_changed_shape_is_not_posted_over_the_old_one(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    post(brief_file, settings)
    later = (
        " The hardest steps are ahead, the host said, as Moscow has rejected any foreign soldiers"
        " in Ukraine and the talks on the ceasefire itself have not yet begun."
    )
    longer = BRIEF.replace("front line.", "front line." + later)
    brief_file.write_text(longer, "utf-8")  # the brief now makes a thread of 4
    summary = post(brief_file, settings)
    assert x.posts_received == 3 and summary.total("queued") == 4
    assert summary.error and "started before as a thread of 3 part(s)" in summary.error


def test_the_dry_run_shows_who_posts_what(tmp_path: Path, brief_file: Path) -> None:
    mastodon = AccountSettings(name="desk-m", network="mastodon", languages=["en", "it"])
    settings = settings_for(tmp_path, x_account("https://api.x.com"), mastodon)
    (folder,) = pipeline.run_publish([brief_file], settings, ["social"], tmp_path / "out")
    plan = (folder / "social" / "accounts.txt").read_text("utf-8")
    assert plan.splitlines() == [
        "desk-x (x, en): a thread of 3",
        "  1/3: part 1 of 3, starts the thread",
        "  2/3: part 2 of 3, replies to 1/3",
        "  3/3: part 3 of 3, replies to 2/3",
        "desk-m (mastodon, en): one post",
        "  1/1: a single post",
        "no account posts: bluesky · en",
    ]
    listing = json.loads((folder / "social" / "posts.json").read_text("utf-8"))
    assert [p["accounts"] for p in listing] == [["desk-x"], ["desk-m"], []]
    page = (folder / "index.html").read_text("utf-8")
    assert "posted by desk-x" in page and "part 3 of 3, replies to 2/3" in page

    (bare,) = pipeline.run_publish([brief_file], settings_for(tmp_path), ["social"], tmp_path / "o")
    assert "previews only" in (bare / "social" / "accounts.txt").read_text("utf-8")


# --- through the CLI -----------------------------------------------------------------------


def config_file(tmp_path: Path, *accounts: dict[str, object]) -> Path:
    lines = ['[site]\nbase_url = "https://briefs.example.org"\n']
    lines.append("[social]\nmax_wait_seconds = 5\ntimeout_seconds = 5\n")
    for account in accounts:
        lines.append("[[social.accounts]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in account.items()]
        lines.append("")
    path = tmp_path / "briefcast.toml"
    path.write_text("\n".join(lines), "utf-8")
    return path


def x_entry(url: str) -> dict[str, object]:
    return {"name": "desk-x", "network": "x", "languages": ["en"], "api_url": url}


def run_cli(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "briefcast.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill takes everything it started
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_killed_after_part_two_then_rerun_posts_only_part_three(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    config = config_file(tmp_path, x_entry(x.url))
    env = cli_env(tmp_path, BRIEFCAST_CONFIG=str(config), **environ())
    args = ("publish", brief_file, "--send", "--channels", "social", "--out", tmp_path / "out")
    x.hold(3)  # part 3 reaches X and is never answered: the CLI is killed meanwhile
    proc = run_cli(*args, cwd=tmp_path, env=env)
    assert x.held.wait(90), proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert len(x.tweets) == 2 and chained(x)
    settings = settings_for(tmp_path)
    assert [status for status, _, _ in ledger(settings).values()] == ["sent", "sent", "sending"]

    # A plain re-run: part 3 may have been posted, so it is unknown, listed, and not resent.
    code, out, err = finished(run_cli(*args, cwd=tmp_path, env=env))
    assert code == 0, err
    assert x.posts_received == 3 and len(x.tweets) == 2
    assert "3/3" in out and "--resend-unknown" in out and "skipped 2" in out

    # The editor checked X: part 3 is not there. Resent, as a reply to part 2.
    code, out, err = finished(run_cli(*args, "--resend-unknown", cwd=tmp_path, env=env))
    assert code == 0, err
    assert len(x.tweets) == 3 and chained(x) and x.tweets[2].text.endswith("(3/3)")
    assert "posted 1" in out
    assert [status for status, _, _ in ledger(settings).values()] == ["sent"] * 3


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_killed_between_part_two_and_part_three_then_rerun_posts_only_part_three(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    """Killed after part 2 was posted and before part 3 left (X answered part 3 with a 503,
    certainly not posted, and the run was waiting to retry): a plain re-run posts part 3
    alone, as a reply to part 2."""
    config = config_file(tmp_path, x_entry(x.url))
    env = cli_env(tmp_path, BRIEFCAST_CONFIG=str(config), **environ())
    args = ("publish", brief_file, "--send", "--channels", "social", "--out", tmp_path / "out")
    x.refuse(3, Answer(503, {"title": "Service Unavailable"}))
    proc = run_cli(*args, cwd=tmp_path, env=env)
    assert x.refused.wait(90), proc.communicate()
    settings = settings_for(tmp_path)
    # Killed once the refusal is on record, during the wait before the retry (2 s).
    deadline = time.monotonic() + 30
    while ledger(settings).get("x-en-3of3", ("",))[0] != "queued":
        assert time.monotonic() < deadline, ledger(settings)
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert len(x.tweets) == 2 and chained(x)
    assert [status for status, _, _ in ledger(settings).values()] == ["sent", "sent", "queued"]

    code, out, err = finished(run_cli(*args, cwd=tmp_path, env=env))
    assert code == 0, err
    assert len(x.tweets) == 3 and chained(x) and x.tweets[2].text.endswith("(3/3)")
    assert x.tweets[2].in_reply_to == x.tweets[1].id
    assert "posted 1" in out
    assert [status for status, _, _ in ledger(settings).values()] == ["sent"] * 3


@pytest.mark.parametrize("problem", ["missing", "refused"])
def test_an_account_that_cannot_post_refuses_the_whole_send_before_any_email(
    tmp_path: Path, brief_file: Path, x: FakeX, problem: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    add_subscribers(store, 2)
    store.engine.dispose()
    recorder = Recorder()
    changes = {"API_SECRET": None} if problem == "missing" else {"API_SECRET": "wrong"}
    with smtp_server(recorder) as port:
        env = cli_env(
            tmp_path,
            port,
            BRIEFCAST_CONFIG=str(config_file(tmp_path, x_entry(x.url))),
            BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET,
            **environ(**changes),
        )
        args = ("publish", brief_file, "--send", "--channels", "email,social")
        code, _, err = finished(run_cli(*args, cwd=tmp_path, env=env))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "nothing was sent" in err
    needle = "BRIEFCAST_SOCIAL_DESK_X_API_SECRET" if problem == "missing" else "401 Unauthorized"
    assert needle in err and "desk-x" in err
    assert recorder.messages() == [] and x.posts_received == 0
    assert not (tmp_path / "out").exists()


def test_social_check_names_each_account_and_posts_nothing(tmp_path: Path, x: FakeX) -> None:
    second = x_entry(x.url) | {"name": "desk-x2"}
    env = cli_env(tmp_path, BRIEFCAST_CONFIG=str(config_file(tmp_path, x_entry(x.url), second)))
    env |= environ()
    code, out, err = finished(run_cli("social", "check", cwd=tmp_path, env=env))
    assert code == 2
    assert out.splitlines() == [
        "desk-x (x): @desk",
        'desk-x2 (x): problem: x account "desk-x2": BRIEFCAST_SOCIAL_DESK_X2_API_KEY, '
        "BRIEFCAST_SOCIAL_DESK_X2_API_SECRET, BRIEFCAST_SOCIAL_DESK_X2_ACCESS_TOKEN, "
        "BRIEFCAST_SOCIAL_DESK_X2_ACCESS_SECRET are not set",
    ]
    assert "1 of 2 account(s) cannot post" in err and x.posts_received == 0


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_x_mastodon_and_bluesky_post_a_brief_once(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    with FakeMastodon(max_characters=1000).running() as mastodon, fake_pds() as pds:
        config = config_file(
            tmp_path,
            x_entry(x.url),
            {"name": "desk-m", "network": "mastodon", "languages": ["en"], "api_url": mastodon.url},
            {
                "name": "desk-b",
                "network": "bluesky",
                "languages": ["en", "it"],
                "api_url": pds.url,
                "handle": pds.handle,
            },
        )
        env = cli_env(
            tmp_path,
            BRIEFCAST_CONFIG=str(config),
            BRIEFCAST_SOCIAL_DESK_M_ACCESS_TOKEN=TOKEN,
            BRIEFCAST_SOCIAL_DESK_B_APP_PASSWORD=pds.password,
            **environ(),
        )
        args = ("publish", brief_file, "--send", "--channels", "social", "--out", tmp_path / "o")
        code, out, err = finished(run_cli(*args, cwd=tmp_path, env=env))
        assert code == 0, err
        assert len(x.tweets) == 3 and chained(x)
        # Mastodon's instance takes 1,000 characters: the post was made again for it, whole.
        (status,) = mastodon.statuses
        assert TEASER in status["content"] and status["language"] == "en"
        (record,) = pds.records
        external = record["record"]["embed"]["external"]
        assert external["uri"] == "https://briefs.example.org/en/paris-force/"
        assert external["title"] == "Paris agrees on a multinational force"
        assert external["description"] == TEASER
        assert "posted 5" in out and all(name in out for name in ("desk-x", "desk-m", "desk-b"))

        code, out, err = finished(run_cli(*args, cwd=tmp_path, env=env))
        assert code == 0, err
        assert (x.posts_received, len(mastodon.statuses), len(pds.records)) == (3, 1, 1)
        assert "posted 0" in out and "skipped 5" in out


# --- an account posts only text in its languages ---------------------------------------------

ENGLISH_TITLE_ONLY = """---
id: paris-force
title: Paris agrees on a multinational force
date: 2026-01-07 18:23
---
[en]
Leaders from 35 countries met in Paris on Tuesday. They agreed on a force.

[it]
I leader di 35 paesi si sono incontrati a Parigi martedì. Hanno concordato una forza.
"""
IT_HEADLINE = "I leader di 35 paesi si sono incontrati a Parigi martedì."


def test_an_italian_account_posts_the_italian_text_never_the_english_title(
    tmp_path: Path,
) -> None:
    path = tmp_path / "paris.md"
    path.write_text(ENGLISH_TITLE_ONLY, "utf-8")
    it = AccountSettings(name="desk-it", network="mastodon", languages=["it"])
    fr = AccountSettings(name="desk-fr", network="x", languages=["fr"])
    settings = settings_for(tmp_path, it, fr)
    (folder,) = pipeline.run_publish([path], settings, ["social"], tmp_path / "out")
    listing = json.loads((folder / "social" / "posts.json").read_text("utf-8"))
    for italian in (p for p in listing if p["lang"] == "it"):
        text = "\n".join(part["text"] for part in italian["posts"])
        assert "Paris agrees" not in text, text
        # Its own headline, from the Italian text, said once.
        assert text.startswith(f"{IT_HEADLINE}\n\nHanno concordato una forza."), text
        assert text.count(IT_HEADLINE) == 1
    english = next(p for p in listing if p["lang"] == "en" and p["network"] == "mastodon")
    assert english["posts"][0]["text"].startswith("Paris agrees on a multinational force\n\n")
    plan = (folder / "social" / "accounts.txt").read_text("utf-8").splitlines()
    assert "desk-it (mastodon, it): one post" in plan
    # No text in French: the French account posts nothing, and the preview says so.
    assert plan[-1] == "desk-fr (x, fr): posts nothing, the brief has no text in fr"
    page = (folder / "index.html").read_text("utf-8")
    assert "desk-fr (x, fr): posts nothing, the brief has no text in fr" in page

    # Posted, the Bluesky card is in Italian too.
    with fake_pds() as pds:
        bluesky = AccountSettings(
            name="desk-b", network="bluesky", languages=["it"], api_url=pds.url, handle=pds.handle
        )
        live = settings_for(tmp_path, bluesky)
        env = {"BRIEFCAST_SOCIAL_DESK_B_APP_PASSWORD": pds.password}
        summary = post(path, live, environ=env)
        assert "posted 1" in summary.line(), summary.line()
        (record,) = pds.records
        assert record["record"]["text"].startswith(IT_HEADLINE)
        external = record["record"]["embed"]["external"]
        assert external["title"] == IT_HEADLINE
        assert external["description"] == "Hanno concordato una forza."
