"""Issue 16: each post once in every failure mode, every request bounded in time and size,
reset headers read by their shape, and the summary saying what the ledger says. The networks
are the loopback fakes (tests/fake_*.py) over real HTTP; posting, the ledger and the CLI are
the real ones."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_helpers import cli_env
from fake_bluesky import fake_pds
from fake_mastodon import TOKEN, FakeMastodon
from fake_mastodon import Answer as MastodonAnswer
from fake_slow import slow_server
from fake_x import Answer, FakeX, environ, fake_x
from test_social_send import (
    BRIEF,
    chained,
    config_file,
    finished,
    ledger,
    post,
    run_cli,
    settings_for,
    x_account,
    x_entry,
)

from briefcast.config import AccountSettings
from briefcast.posting.thread import Waits

BAD_GATEWAY = Answer(502, {"title": "Bad Gateway"}, posted=True)


@pytest.fixture
def brief_file(tmp_path: Path) -> Path:
    path = tmp_path / "paris.md"
    path.write_text(BRIEF, "utf-8")
    return path


@pytest.fixture
def x() -> Iterator[FakeX]:
    with fake_x() as fake:
        yield fake


# --- 1. an answer that does not prove a refusal is unknown, never retried ----------------------


def test_x_502_after_the_tweet_was_made_posts_it_once(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    x.script(BAD_GATEWAY)
    summary = post(brief_file, settings)
    assert summary.rows()[0]["unknown"] == 1 and summary.total("queued") == 2
    assert ledger(settings)["x-en-1of3"][:2] == ("unknown", 1)
    post(brief_file, settings)  # a re-run leaves it alone
    assert x.posts_received == 1 and len(x.tweets) == 1

    x.tweets.clear()  # the editor looked: not there after all
    summary = post(brief_file, settings, resend_unknown=True)
    assert x.posts_received == 4 and summary.total("posted") == 3 and chained(x)


def test_x_503_is_retried_it_says_nothing_was_done(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    x.script(Answer(503, {"title": "Service Unavailable"}))
    summary = post(brief_file, settings)
    assert summary.total("posted") == 3 and len(x.tweets) == 3


def bluesky_account(url: str, handle: str) -> AccountSettings:
    return AccountSettings(
        name="desk-b", network="bluesky", languages=["en"], api_url=url, handle=handle
    )


def test_bluesky_502_after_the_record_was_written_posts_it_once(
    tmp_path: Path, brief_file: Path
) -> None:
    with fake_pds() as pds:
        settings = settings_for(tmp_path, bluesky_account(pds.url, pds.handle))
        env = {"BRIEFCAST_SOCIAL_DESK_B_APP_PASSWORD": pds.password}
        pds.fail("com.atproto.repo.createRecord", 502, written=True)
        summary = post(brief_file, settings, environ=env)
        assert summary.total("unknown") == 1 and len(pds.records) == 1
        post(brief_file, settings, environ=env)
        assert len(pds.records) == 1
        assert pds.calls.count("com.atproto.repo.createRecord") == 1
        summary = post(brief_file, settings, environ=env, resend_unknown=True)
        assert summary.total("posted") == 1 and len(pds.records) == 2


# --- 3. the whole request within timeout_seconds, the answer of bounded size -------------------


def three_accounts(url: str) -> list[dict[str, object]]:
    return [
        x_entry(url),
        {"name": "desk-m", "network": "mastodon", "languages": ["en"], "api_url": url},
        {
            "name": "desk-b",
            "network": "bluesky",
            "languages": ["en"],
            "api_url": url,
            "handle": "desk.example.org",
        },
    ]


def measured(*args: str | Path, cwd: Path, env: dict[str, str]) -> tuple[int, str, float, int]:
    """Run the CLI alone in a fresh interpreter: exit code, stdout, seconds, peak RSS (kB)."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=300)\n"
        "print(p.returncode, round(time.monotonic() - t, 2),"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(p.stdout, end='')\n"
    )
    command = [sys.executable, "-c", probe, sys.executable, "-m", "briefcast.cli", *map(str, args)]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    first, _, out = done.stdout.partition("\n")
    code, seconds, rss = first.split()
    return int(code), out, float(seconds), int(rss)


def slow_env(tmp_path: Path, url: str, timeout: float) -> dict[str, str]:
    config = config_file(tmp_path, *three_accounts(url))
    text = config.read_text("utf-8").replace("timeout_seconds = 5", f"timeout_seconds = {timeout}")
    config.write_text(text, "utf-8")
    return cli_env(
        tmp_path,
        BRIEFCAST_CONFIG=str(config),
        BRIEFCAST_SOCIAL_DESK_M_ACCESS_TOKEN=TOKEN,
        BRIEFCAST_SOCIAL_DESK_B_APP_PASSWORD="abcd-efgh-ijkl-mnop",
        **environ(),
    )


def test_social_check_against_a_trickling_api_ends_within_the_timeout(tmp_path: Path) -> None:
    # 78 bytes, one each 0.25 s: 20 s per request, each byte well within a 1 s read timeout.
    with slow_server("trickle") as slow:
        env = slow_env(tmp_path, slow["url"], timeout=1)
        code, out, seconds, _ = measured("social", "check", cwd=tmp_path, env=env)
    assert code == 2
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "desk-x (x)",
        "desk-m (mastodon)",
        "desk-b (bluesky)",
    ]
    assert all("problem" in line for line in lines)
    # three requests of 1 s and the interpreter's start; without the bound: 3 x 20 s
    assert seconds < 20


def test_social_check_against_a_huge_answer_reads_a_bounded_part(tmp_path: Path) -> None:
    with slow_server("huge", huge_bytes=200 << 20) as slow:
        env = slow_env(tmp_path, slow["url"], timeout=10)
        code, out, seconds, rss_kb = measured("social", "check", cwd=tmp_path, env=env)
    assert code == 2 and out.count("larger than 1,048,576 bytes") == 3, out
    assert rss_kb < 200 * 1024  # the process itself; 200 MB answers read whole took 730 MB
    assert seconds < 20


def test_a_trickled_answer_to_a_post_is_unknown_within_the_timeout(
    tmp_path: Path, brief_file: Path
) -> None:
    with slow_server("trickle") as slow:
        settings = settings_for(tmp_path, x_account(slow["url"]), timeout_seconds=0.5)
        started = time.monotonic()
        summary = post(brief_file, settings)
        assert time.monotonic() - started < 5
    assert summary.total("unknown") == 1 and "no complete answer within 0.5 s" in summary.notes()[0]
    assert ledger(settings)["x-en-1of3"][:2] == ("unknown", 1)


# --- 4. reset headers read by their shape -------------------------------------------------------


def test_a_mastodon_ratelimit_reset_given_as_unix_time_is_waited_for(
    tmp_path: Path, brief_file: Path
) -> None:
    with FakeMastodon(max_characters=1000).running() as mastodon:
        reset = str(int(time.time()) + 2)  # a Unix time, not seconds: not 56 years from now
        limited = MastodonAnswer(429, {"error": "Too many requests"}, {"RateLimit-Reset": reset})
        mastodon.script("POST", "/api/v1/statuses", limited)
        account = AccountSettings(
            name="desk-m", network="mastodon", languages=["en"], api_url=mastodon.url
        )
        settings = settings_for(tmp_path, account)
        env = {"BRIEFCAST_SOCIAL_DESK_M_ACCESS_TOKEN": TOKEN}
        summary = post(brief_file, settings, environ=env, waits=Waits(max_wait_seconds=10))
        assert summary.total("posted") == 1 and len(mastodon.statuses) == 1, summary.notes()


# --- 5. the summary says what the ledger says ----------------------------------------------------


def summary_counts(out: str) -> dict[str, int]:
    (line,) = [line for line in out.splitlines() if line.startswith("social for brief")]
    return {k: int(v) for k, v in re.findall(r"(posted|unknown|failed|queued|skipped) (\d+)", line)}


def ledger_counts(tmp_path: Path) -> dict[str, int]:
    rows = ledger(settings_for(tmp_path))
    statuses = [status for status, _, _ in rows.values()]
    counts = {s: statuses.count(s) for s in ("unknown", "failed", "queued")}
    counts["queued"] += 3 - len(rows)  # parts never tried have no row yet
    return counts


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Answer(201, {"data": "not a tweet"}), "unknown"),  # taken, but its id unreadable
        (Answer(201, {"data": {"id": {"n": 1}}}), "unknown"),
        (Answer(429, {"title": "Too Many Requests"}, {"x-rate-limit-reset": "soon"}), "queued"),
    ],
)
def test_the_summary_says_what_the_ledger_says(
    tmp_path: Path, brief_file: Path, x: FakeX, answer: Answer, status: str
) -> None:
    config = config_file(tmp_path, x_entry(x.url))
    config.write_text(
        config.read_text("utf-8").replace("max_wait_seconds = 5", "max_wait_seconds = 0")
    )
    env = cli_env(tmp_path, BRIEFCAST_CONFIG=str(config), **environ())
    x.script(answer)
    args = ("publish", brief_file, "--send", "--channels", "social", "--out", tmp_path / "out")
    code, out, err = finished(run_cli(*args, cwd=tmp_path, env=env))
    assert code == 0 and "a bug" not in out + err, out + err
    said = summary_counts(out)
    assert ledger(settings_for(tmp_path))["x-en-1of3"][0] == status
    assert {k: said[k] for k in ("unknown", "failed", "queued")} == ledger_counts(tmp_path)
