"""Delivery through the CLI: its refusals, and a real kill -9 part way through a send."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from delivery_helpers import (
    SECRET,
    SEED,
    active_emails,
    add_subscribers,
    cli_env,
    ledger_rows,
)
from smtp_servers import Faults, Recorder, smtp_server
from sqlalchemy import select

from briefcast import pipeline
from briefcast.config import Settings
from briefcast.delivery import deliver, ledger
from briefcast.render.email import build_emails
from briefcast.store import Store, deliveries

# --- the CLI: refusals (fast) and a real kill -9 part way (through Prefect) -----------------


def briefcast(*args: str | Path, cwd: Path, env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "briefcast.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill takes Prefect's server too
        **kw,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--send"], "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET is not set"),
        (["--resend-unknown"], "--resend-unknown only applies with --send"),
        (["--send", "--test-to", "a@example.org"], "choose one"),
        (["--test-to", "not-an-address"], "not an email address"),
    ],
)
def test_cli_refuses_in_one_line_before_anything_happens(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    proc = briefcast("publish", SEED, *args, cwd=tmp_path, env=cli_env(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_killed_mid_send_then_rerun_mails_exactly_those_left(tmp_path: Path, monkeypatch) -> None:
    """SIGKILL the CLI part way; re-run: no second copies; the messages in flight at the
    kill are ``unknown`` (at most one per connection) and --resend-unknown completes them."""
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    add_subscribers(store, 60)
    add_subscribers(store, 3, status="unsubscribed", start=500)
    recorder = Recorder(Faults(delay=0.05))  # slow enough to kill part way
    pool = 3
    with smtp_server(recorder) as port:
        env = cli_env(tmp_path, port, BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET)
        args = ("publish", SEED, "--send", "--channels", "email", "--out", tmp_path / "out")
        proc = briefcast(*args, cwd=tmp_path, env=env)
        deadline = time.monotonic() + 120
        while len(recorder.messages()) < 12 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        time.sleep(0.3)  # let the server notice the dead connections
        before = recorder.count()
        assert 12 <= sum(before.values()) < 60, "the kill came too late to test anything"

        # A plain re-run through the CLI: mails the rest, nobody twice.
        rerun = briefcast(*args, cwd=tmp_path, env=env)
        out, err = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, err
        brief_id = ledger_brief_id(store)
        rows = ledger_rows(store, brief_id)
        unknown = {e for e, r in rows.items() if r["status"] == "unknown"}
        after = recorder.count()
        assert len(unknown) <= pool
        assert all(n == 1 for n in after.values())
        assert set(after) == active_emails(store) - {e for e in unknown if e not in before}
        assert {r["status"] for e, r in rows.items() if e not in unknown} == {"sent"}
        assert f"sent {60 - sum(before.values()) - len(unknown - set(before))}" in out
        assert all(email in out for email in unknown)  # listed in the summary

        # The editor resends what may not have arrived, with the CLI's own settings.
        for key, value in env.items():
            if key.startswith("BRIEFCAST_"):
                monkeypatch.setenv(key, value)
        settings = Settings()
        dated = pipeline.archive(pipeline.read([SEED], settings), settings, dry_run=False)
        mails = build_emails(dated[0], settings)
        resent = deliver(store, brief_id, mails, settings, resend_unknown=True)

    final = recorder.count()
    assert set(final) == active_emails(store)
    assert all(final[e] == 1 for e in final if e not in unknown)
    assert all(1 <= final[e] <= 2 for e in unknown)  # 2 only if it had arrived after all
    assert resent.this_run["sent"] == len(unknown) and resent.unknown == []
    assert ledger.counts(store, brief_id) == Counter({"sent": 60})
    store.engine.dispose()


def ledger_brief_id(store: Store) -> str:
    with store.engine.connect() as conn:
        (brief_id,) = conn.execute(select(deliveries.c.brief_id).distinct()).scalars().all()
    return brief_id
