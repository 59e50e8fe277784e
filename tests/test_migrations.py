"""The schema's migrations and the send ledger, on SQLite and PostgreSQL: databases made by
briefcast 0.1's create_all are adopted with their data, new ones are made by the migrations,
first starts at once are safe, and a channel's part is sent once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from briefcast import migrate, reviews
from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.cli.db import db_app
from briefcast.migrations import BASELINE, HEAD
from briefcast.send_ledger import (
    Attempt,
    SendFailed,
    SendKey,
    SendLedger,
    SendUnknown,
    Sent,
)
from briefcast.store import Store, metadata, sends

WHEN = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
EDITORIAL = ("reviews", "editors", "editor_sessions")  # revision 0004: the editor's workflow


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A bare engine on the test's empty database: no schema until a test makes one."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def revisions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def make_briefcast_01_database(engine: Engine) -> None:
    """What briefcast 0.1 left: create_all's tables (the baseline's frozen copy), some rows,
    no alembic_version."""
    frozen = migrate.baseline()
    frozen.metadata.create_all(engine)
    brief = Brief(
        id="old-brief",
        title="Old brief",
        date=WHEN,
        sections=(Section("en", (Block(BlockKind.PARAGRAPH, "Kept across the upgrade."),)),),
        digest="sha-old",
    )
    with engine.begin() as conn:
        conn.execute(
            insert(frozen.subscribers).values(
                email="reader@example.org",
                name="Reader",
                language="en",
                status="active",
                hard_bounces=0,
                created_at=WHEN,
                updated_at=WHEN,
            )
        )
        conn.execute(
            insert(frozen.briefs).values(
                id=brief.id,
                digest=brief.digest,
                data=json.dumps(brief.to_dict(), sort_keys=True),
                date=WHEN,
                languages=",en,",
                first_seen_at=WHEN,
                updated_at=WHEN,
                published=True,
            )
        )
        conn.execute(
            insert(frozen.deliveries).values(
                brief_id=brief.id,
                subscriber_id=1,
                edition="en",
                status="sent",
                attempts=1,
                message_id="<old@example.org>",
                updated_at=WHEN,
            )
        )
    assert "alembic_version" not in tables(engine)


def assert_briefcast_01_data_intact(store: Store) -> None:
    (brief,) = store.feed_briefs("en", 10)
    assert (brief.id, brief.date) == ("old-brief", WHEN)
    with store.engine.connect() as conn:
        sub = conn.execute(text("SELECT id, email, status FROM subscribers")).one()
        delivery = conn.execute(
            text("SELECT brief_id, subscriber_id, status, message_id FROM deliveries")
        ).one()
    assert tuple(sub) == (1, "reader@example.org", "active")
    assert tuple(delivery) == ("old-brief", 1, "sent", "<old@example.org>")


def run_cli(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "briefcast.cli", *args],
        cwd=cwd,
        env={**os.environ, "BRIEFCAST_DATABASE__URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the migrations ----------------------------------------------------------------------


def test_head_names_the_newest_revision_and_history_is_linear() -> None:
    assert migrate.script_head() == HEAD
    script = ScriptDirectory.from_config(migrate.config())
    revs = list(script.walk_revisions())  # newest first
    chain = [rev.revision for rev in revs]
    assert chain[0] == HEAD and chain[-1] == BASELINE
    assert [rev.down_revision for rev in revs] == [*chain[1:], None]  # one line of descent


def test_the_models_match_what_the_migrations_make(engine: Engine) -> None:
    """store.py's tables and the revisions agree: a model change needs a revision."""
    migrate.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


@pytest.mark.parametrize("via", ["store", "cli"])
def test_a_briefcast_01_database_is_stamped_at_the_baseline_and_upgraded_in_place(
    database_url: str, engine: Engine, via: str, tmp_path: Path
) -> None:
    make_briefcast_01_database(engine)
    assert migrate.status(engine) == migrate.Status(None, "legacy")

    if via == "cli":
        result = run_cli(database_url, "db", "upgrade", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == (
            f"a database made before migrations: stamped at {BASELINE} (baseline), "
            f"upgraded to {HEAD} (head)"
        )
    with Store(database_url) as store:
        assert_briefcast_01_data_intact(store)
        assert revisions(store.engine) == [HEAD]
        assert tables(store.engine) == {"alembic_version", "briefs", "subscribers"} | {
            "deliveries",
            "sends",
            "bounce_reports",
            *EDITORIAL,
        }
        ledger = SendLedger(store)
        key = SendKey("old-brief", "mastodon", "@news", "post-1")
        outcome = ledger.send_once(key, lambda _attempt: Sent("109", "201 Created"))
        assert outcome.called and outcome.record.status == "sent"
        assert outcome.record.remote_id == "109"


def test_an_older_briefcast_01_database_gets_its_missing_tables(engine: Engine) -> None:
    """A database made before subscribers existed: the baseline's DDL makes them."""
    migrate.baseline().briefs.create(engine)
    done = migrate.upgrade(engine)
    assert (done.before, done.after, done.adopted) == (None, HEAD, True)
    assert {"subscribers", "deliveries", "sends"} <= tables(engine)
    assert revisions(engine) == [HEAD]


def test_a_new_database_is_made_by_the_migrations_and_a_second_upgrade_changes_nothing(
    engine: Engine,
) -> None:
    assert migrate.status(engine) == migrate.Status(None, "empty")
    first = migrate.upgrade(engine)
    assert (first.before, first.after, first.adopted) == (None, HEAD, False)
    made = tables(engine)
    assert made == {"alembic_version", "briefs", "subscribers", "deliveries", "sends"} | {
        "bounce_reports",
        *EDITORIAL,
    }

    again = migrate.upgrade(engine)
    assert (again.before, again.after, again.changed) == (HEAD, HEAD, False)
    assert tables(engine) == made and revisions(engine) == [HEAD]
    assert migrate.status(engine) == migrate.Status(HEAD, "head")


def test_a_database_behind_head_runs_only_the_later_revisions(
    database_url: str, engine: Engine
) -> None:
    with engine.begin() as conn:
        command.upgrade(migrate.config(conn), BASELINE)
    assert "sends" not in tables(engine)
    assert migrate.status(engine) == migrate.Status(BASELINE, "behind")
    with Store(database_url) as store:
        assert revisions(store.engine) == [HEAD]
        assert "sends" in tables(store.engine)


def test_a_database_from_a_newer_briefcast_is_refused_and_left_alone(
    database_url: str, engine: Engine
) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaError, match=r"revision 9999.*upgrade briefcast"):
        Store(database_url)
    assert revisions(engine) == ["9999"]
    assert migrate.status(engine) == migrate.Status("9999", "ahead")

    result = CliRunner().invoke(db_app, ["upgrade"], env={"BRIEFCAST_DATABASE__URL": database_url})
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "revision 9999" in result.output


def test_db_commands_say_where_the_schema_stands(database_url: str, engine: Engine) -> None:
    env = {"BRIEFCAST_DATABASE__URL": database_url}

    def db(*args: str) -> str:
        result = CliRunner().invoke(db_app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output.strip()

    if database_url.startswith("sqlite"):
        assert db("current").startswith("none: no database yet")
        assert not Path(engine.url.database or "").exists()  # `current` made nothing
    with engine.connect():
        pass  # the database exists now, empty
    assert db("current").startswith("none: an empty database")
    assert db("upgrade") == f"created the schema at {HEAD} (head)"
    assert db("upgrade") == f"already up to date: {HEAD} (head)"
    assert db("current") == f"{HEAD} (head)"
    with engine.begin() as conn:
        command.downgrade(migrate.config(conn), BASELINE)
    assert db("current").startswith(f"{BASELINE} (behind head {HEAD}")
    assert db("upgrade") == f"upgraded the schema from {BASELINE} to {HEAD} (head)"


def test_db_errors_are_one_line_without_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/folder/b.db"
    result = CliRunner().invoke(db_app, ["upgrade"], env={"BRIEFCAST_DATABASE__URL": url})
    assert result.exit_code == 2
    assert result.output.startswith("error: database: ")
    assert len(result.output.strip().splitlines()) == 1
    assert str(tmp_path) not in result.output


def test_opening_a_database_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    """The cheap path every Store takes: one SELECT, no Alembic."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    Store(url).engine.dispose()
    probe = "import sys; from briefcast.store import Store; Store(sys.argv[1]); "
    probe += "print('alembic' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_first_starts_at_once_on_a_new_database_all_succeed(database_url: str) -> None:
    start = time.time() + 1.5  # every process imported and waiting: they open together
    opener = (
        "import sys, time; from briefcast.store import Store; "
        "time.sleep(max(0, float(sys.argv[2]) - time.time())); Store(sys.argv[1]).engine.dispose()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", opener, database_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
    with Store(database_url) as store:
        assert revisions(store.engine) == [HEAD]
        assert "sends" in tables(store.engine)


# --- the send ledger ---------------------------------------------------------------------


@pytest.fixture
def ledger(database_url: str) -> Iterator[SendLedger]:
    with Store(database_url) as store:
        yield SendLedger(store)


class Remote:
    """A fake remote service: counts its calls, answers with what it is told."""

    def __init__(self, *answers: Sent | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[Attempt] = []

    def __call__(self, attempt: Attempt) -> Sent:
        self.calls.append(attempt)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


KEY = SendKey("brief-1", "mastodon", "@news@example.social", "post-1")


def test_a_sent_part_is_never_sent_again(ledger: SendLedger) -> None:
    remote = Remote(Sent("111", "200 OK"))
    first = ledger.send_once(KEY, remote)
    assert first.called and (first.record.status, first.record.attempts) == ("sent", 1)
    assert remote.calls == [Attempt(KEY, 1, None)]

    again = ledger.send_once(KEY, remote, resend_unknown=True)
    assert not again.called and again.record == first.record
    assert len(remote.calls) == 1
    assert ledger.record_attempt(KEY) is None


def test_a_crash_between_attempt_and_outcome_leaves_unknown_never_resent_unless_asked(
    database_url: str,
) -> None:
    with Store(database_url) as store:  # the run that dies during its call
        attempt = SendLedger(store).record_attempt(KEY)
        assert attempt == Attempt(KEY, 1, None)
    with Store(database_url) as store:  # the next run
        ledger = SendLedger(store)
        assert ledger.get(KEY).status == "sending"  # type: ignore[union-attr]
        remote = Remote(Sent("222"))
        skipped = ledger.send_once(KEY, remote)
        assert not skipped.called and remote.calls == []
        assert skipped.record.status == "unknown"
        assert "may or may not" in (skipped.record.last_reply or "")
        assert not ledger.send_once(KEY, remote).called  # and on every run after

        resent = ledger.send_once(KEY, remote, resend_unknown=True)
        assert resent.called and remote.calls == [Attempt(KEY, 2, "unknown")]
        assert (resent.record.status, resent.record.attempts) == ("sent", 2)
        assert resent.record.remote_id == "222"


def test_recover_marks_a_dead_runs_parts_unknown(ledger: SendLedger) -> None:
    ledger.record_attempt(KEY)
    other = KEY._replace(part="post-2")
    ledger.send_once(other, Remote(Sent("2")))
    assert ledger.recover(KEY.brief_id, KEY.channel) == 1
    assert [r.status for r in ledger.for_brief(KEY.brief_id, KEY.channel)] == ["unknown", "sent"]


def test_a_refusal_to_retry_is_tried_again_and_counts_its_attempts(ledger: SendLedger) -> None:
    remote = Remote(
        SendFailed("429 Too Many Requests", retry=True),
        SendFailed("401 Unauthorized"),
        Sent("333", "200 OK"),
    )
    first = ledger.send_once(KEY, remote)
    assert first.called
    assert (first.record.status, first.record.attempts) == ("queued", 1)
    assert first.record.last_reply == "429 Too Many Requests"

    second = ledger.send_once(KEY, remote)
    assert (second.record.status, second.record.attempts) == ("failed", 2)

    third = ledger.send_once(KEY, remote)  # failed is known not sent: a later run may retry
    assert (third.record.status, third.record.attempts) == ("sent", 3)
    assert third.record.last_reply == "200 OK" and third.record.remote_id == "333"
    assert [a.number for a in remote.calls] == [1, 2, 3]
    assert [a.previous for a in remote.calls] == [None, "queued", "failed"]


def test_an_answer_in_doubt_is_unknown_and_an_unexpected_error_too(ledger: SendLedger) -> None:
    timeout = ledger.send_once(KEY, Remote(SendUnknown("read timed out")))
    assert (timeout.record.status, timeout.record.last_reply) == ("unknown", "read timed out")

    other = KEY._replace(part="post-2")
    with pytest.raises(ConnectionResetError):
        ledger.send_once(other, Remote(ConnectionResetError("reset by peer")))
    record = ledger.get(other)
    assert record is not None and record.status == "unknown"
    assert record.last_reply == "ConnectionResetError: reset by peer"


def test_outcomes_never_unsend_a_sent_part_and_need_an_attempt(ledger: SendLedger) -> None:
    ledger.send_once(KEY, Remote(Sent("1")))
    ledger.record_failed(KEY, "late error", retry=True)
    ledger.record_unknown(KEY, "late doubt")
    record = ledger.get(KEY)
    assert record is not None and (record.status, record.remote_id) == ("sent", "1")

    # What the service says settles an unknown part: looked up, it was there after all.
    doubt = KEY._replace(part="post-2")
    ledger.send_once(doubt, Remote(SendUnknown("timeout")))
    ledger.record_sent(doubt, "2", "found on the timeline")
    assert ledger.get(doubt).status == "sent"  # type: ignore[union-attr]

    with pytest.raises(LookupError):
        ledger.record_sent(KEY._replace(part="never-attempted"), "3")


def test_one_row_per_key_and_keys_checked_before_any_call(database_url: str) -> None:
    store = Store(database_url)
    ledger = SendLedger(store)
    parts = [KEY._replace(part=p) for p in ("post-2", "post-1")] + [
        KEY._replace(target="@other@example.social"),
        KEY._replace(channel="site", target="", part="page-en"),
    ]
    for key in parts:
        ledger.send_once(key, Remote(Sent(key.part)))
    assert [r.key for r in ledger.for_brief(KEY.brief_id, "mastodon")] == [
        KEY._replace(target="@news@example.social", part="post-1"),
        KEY._replace(target="@news@example.social", part="post-2"),
        KEY._replace(target="@other@example.social"),
    ]
    assert len(ledger.for_brief(KEY.brief_id)) == 4

    with store.engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(
            insert(sends).values(
                **KEY._asdict(),
                status="queued",
                attempts=0,
                created_at=WHEN,
                updated_at=WHEN,
            )
        )
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sends)).scalar_one() == 4

    remote = Remote(Sent("x"))
    with pytest.raises(ValueError, match="part is over 200"):
        ledger.send_once(KEY._replace(part="p" * 201), remote)
    with pytest.raises(ValueError, match="brief_id and a channel"):
        ledger.send_once(SendKey("", "mastodon"), remote)
    assert remote.calls == []
    store.engine.dispose()


def test_0006_keeps_the_reviews_and_gives_them_a_title(database_url: str, engine: Engine) -> None:
    """A review recorded at 0005 keeps every field across the upgrade, with no title; a new
    one carries its title, and a brief that could not be read is a failed review."""
    with engine.begin() as conn:
        command.upgrade(migrate.config(conn), "0005")
        conn.execute(
            text(
                "INSERT INTO reviews (flow_run_id, brief_id, path, preview, digest, state, "
                "created_at, updated_at) VALUES ('run-1', 'old-brief', '/in/old.md', "
                "'/out/old-brief', :digest, 'waiting', :when, :when)"
            ),
            {"digest": "a" * 64, "when": WHEN},
        )
    assert "title" not in {c["name"] for c in inspect(engine).get_columns("reviews")}
    with Store(database_url) as store:
        assert revisions(store.engine) == [HEAD]
        old = reviews.get(store, "run-1")
        assert old is not None
        assert (old.brief_id, old.state, old.digest, old.title) == (
            "old-brief",
            "waiting",
            "a" * 64,
            None,
        )
        new = reviews.record(
            store,
            flow_run_id="run-2",
            brief_id="new-brief",
            path=Path("/in/new.md"),
            preview=Path("/out/new-brief"),
            digest="b" * 64,
            title="Paris agrees on a multinational force",
        )
        assert new.title == "Paris agrees on a multinational force"
        failed = reviews.record_failed(
            store, flow_run_id="run-3", path=Path("/in/broken.md"), reason="broken.md:\n  bad"
        )
        assert (failed.brief_id, failed.state, failed.detail, failed.digest) == (
            "broken.md",
            "failed",
            "broken.md: bad",
            "",
        )
    with engine.begin() as conn:
        command.downgrade(migrate.config(conn), "0005")
    assert "title" not in {c["name"] for c in inspect(engine).get_columns("reviews")}
