"""The live send's own process: started by the flow, stopped cleanly when its parent goes."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery_helpers import (
    SECRET,
    SEED,
    active_emails,
    add_subscribers,
    cli_env,
    ledger_rows,
    make_settings,
)
from smtp_servers import Faults, Recorder, smtp_server

from briefcast import pipeline
from briefcast.delivery import deliver
from briefcast.delivery.worker import COMMAND, spec_line
from briefcast.render.email import EmailEdition, build_emails
from briefcast.store import Store


@pytest.fixture(scope="module")
def brief_and_mails() -> tuple[str, list[EmailEdition]]:
    settings = make_settings()
    (brief,) = pipeline.read([SEED], settings)
    return brief.id, build_emails(brief.dated(datetime(2026, 1, 7, 18, 23, tzinfo=UTC)), settings)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'b.db'}") as store:
        yield store


def test_sending_process_stops_cleanly_when_its_parent_goes(
    store: Store, tmp_path: Path, brief_and_mails
) -> None:
    """Its stdin closing is the parent gone (crashed, killed): the messages under way finish
    and are recorded, nothing more starts, nothing is left in doubt; a re-run does the rest."""
    brief_id, mails = brief_and_mails
    add_subscribers(store, 40)
    recorder = Recorder(Faults(delay=0.05))  # slow enough to stop part way
    with smtp_server(recorder) as port:
        env = cli_env(tmp_path, port, BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET)
        proc = subprocess.Popen(
            COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert proc.stdin is not None
        proc.stdin.write(spec_line(brief_id, mails, resend_unknown=False))
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while len(recorder.messages()) < 6 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.stdin.close()  # as when the parent dies
        assert proc.wait(timeout=30) == 0, proc.stderr.read()  # type: ignore[union-attr]
        out = proc.stdout.read()  # type: ignore[union-attr]
        summary = json.loads(out.splitlines()[-1])["summary"]
        assert "stopped before the end" in summary["error"]

        rows = ledger_rows(store, brief_id)
        statuses = Counter(str(r["status"]) for r in rows.values())
        assert set(statuses) == {"sent", "queued"}  # nothing "sending" or "unknown"
        sent = {e for e, r in rows.items() if r["status"] == "sent"}
        assert sent == set(recorder.count()) and 6 <= len(sent) < 40

        again = deliver(store, brief_id, mails, make_settings(port))
    assert again.this_run["sent"] == 40 - len(sent)
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
