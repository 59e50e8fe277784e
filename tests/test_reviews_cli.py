"""``briefcast reviews``: every review with its state, title, time and digest prefix, a brief
that could not be read among them (by its file name, with its reason), in a child process
over a SQLite database."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from delivery_helpers import cli_env

from briefcast import reviews
from briefcast.config import Settings
from briefcast.store import Store

TITLE = "Paris agrees on a multinational force"


def list_reviews(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "briefcast.cli", "reviews", *args],
        env=cli_env(tmp_path, COLUMNS="400"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_state_is_listed_with_its_title_time_digest_and_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    states = ["waiting", "approved", "scheduled", "sent", "cancelled"]
    at = datetime(2031, 5, 4, 5, 0, tzinfo=UTC)  # 07:00 in Rome
    with Store(url) as store:
        for n, state in enumerate(states):
            reviews.record(
                store,
                flow_run_id=f"run-{state}",
                brief_id=f"brief-{state}",
                path=tmp_path / f"{state}.md",
                preview=tmp_path / "out" / f"brief-{state}",
                digest=f"{n}" * 64,
                title=f"{TITLE} [{state}]",  # brackets: printed as they are, not as markup
            )
            if state != "waiting":
                send_at = at if state in ("scheduled", "cancelled") else None
                reviews.set_state(store, f"run-{state}", state, send_at=send_at)
        reviews.record_failed(
            store,
            flow_run_id="run-failed",
            path=tmp_path / "inbox" / "broken.md",
            reason="broken.md: unknown front matter key 'autor'\n(did you mean 'author'?)",
        )
        when = datetime.now(UTC) - timedelta(minutes=1)
    listed = list_reviews(tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == len(states) + 1, listed.stdout
    by_state = {line.split()[3]: line for line in lines}  # date, time, zone, state
    assert set(by_state) == {*states, "failed"}
    for n, state in enumerate(states):
        line = by_state[state]
        assert f"  {f'{n}' * 12}  brief-{state}  " in line, line
        assert f'"{TITLE} [{state}]"' in line, line
        assert line.startswith(f"{when.astimezone(Settings().site.tz):%Y-%m-%d}"), line
    assert "send at 2031-05-04 07:00 CEST" in by_state["scheduled"]
    assert "send at 2031-05-04 07:00 CEST" in by_state["cancelled"]
    failed = by_state["failed"]
    assert "broken.md  (not read)" in failed and "-" * 12 in failed, failed
    assert failed.endswith(
        "- broken.md: unknown front matter key 'autor' (did you mean 'author'?)"
    ), failed
    assert lines[0] == failed  # newest first

    only = list_reviews(tmp_path, "--state", "failed")
    assert only.returncode == 0 and only.stdout.splitlines() == [failed], only.stdout
    none = list_reviews(tmp_path, "--state", "refused")
    assert none.returncode == 0 and none.stdout == "" and "No refused reviews." in none.stderr
    bad = list_reviews(tmp_path, "--state", "pending!")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().startswith("error: --state 'pending!': not one of waiting, approved")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_up_refuses_an_inbox_that_is_not_a_folder_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "inbox").write_text("a file where the inbox folder should be")
    env = cli_env(
        tmp_path,
        BRIEFCAST_WORKFLOW__INBOX=str(tmp_path / "inbox"),
        BRIEFCAST_WORKFLOW__STATE_DIR=str(tmp_path / "state"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "briefcast.cli", "up"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: [workflow] inbox {tmp_path / 'inbox'}: is not a folder\n"
    assert not (tmp_path / "state").exists()  # nothing started
