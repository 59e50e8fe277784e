"""The ledger's group commit on PostgreSQL: one statement a commit (one network round trip),
in autocommit, with the same outcome row by row as the separate updates SQLite runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from delivery_helpers import add_subscribers, ledger_rows

from briefcast.delivery import ledger
from briefcast.delivery.ledger import Claim, LedgerWriter, Outcome
from briefcast.store import Store
from briefcast.subscribers import iter_active


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Store]:
    with Store(postgres_url) as store:
        yield store


def jobs(store: Store, count: int) -> list[ledger.Job]:
    add_subscribers(store, count)
    now = datetime.now(UTC)
    ledger.enqueue(store, "b", iter_active(store), {"en", "it", "both"}, now)
    return list(ledger.iter_due(store, "b", now))


def test_a_group_commit_is_one_statement_and_matches_row_by_row_updates(pg: Store) -> None:
    first, second, third, fourth = jobs(pg, 4)
    later = datetime.now(UTC) + timedelta(minutes=5)
    statements: list[str] = []
    writer = LedgerWriter(pg, clock=lambda: datetime.now(UTC))
    execute = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        statements.append(str(query))
        return execute(self, query, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", counting)
        writer.claim(Claim(first, "<one@example.org>"))
        writer.claim(Claim(second, "<two@example.org>"))
        writer.settle(Outcome(second, "queued", "handed back"))  # claimed and settled at once
        writer.settle(Outcome(third, "deferred", "451 \x00later", later))
        writer.settle(Outcome(fourth, "bounced", "550 no", hard_bounce=False))
        writer.flush()
        assert len(statements) == 1 and statements[0].lstrip().startswith("UPDATE")
        writer.settle(Outcome(first, "sent", "250 ok"))
        writer.flush()
    writer.close()
    assert len(statements) == 2 and writer.commits == 2

    rows = {r["subscriber_id"]: r for r in ledger_rows(pg, "b").values()}
    one, two, three, four = (rows[j.subscriber_id] for j in (first, second, third, fourth))
    assert (one["status"], one["message_id"], one["attempts"]) == ("sent", "<one@example.org>", 1)
    assert one["last_reply"] == "250 ok" and one["next_attempt_at"] is None
    assert (two["status"], two["message_id"], two["attempts"]) == (
        "queued",
        "<two@example.org>",
        0,
    )
    assert (three["status"], three["attempts"], three["last_reply"]) == ("deferred", 1, "451 later")
    assert three["next_attempt_at"] == later
    assert (four["status"], four["attempts"], four["message_id"]) == ("bounced", 1, None)
    assert writer.outcomes == Counter({"queued": 1, "deferred": 1, "bounced": 1, "sent": 1})


def test_a_claim_is_durable_once_flushed_and_the_connection_goes_back_as_it_came(
    pg: Store,
) -> None:
    (job,) = jobs(pg, 1)
    with LedgerWriter(pg, clock=lambda: datetime.now(UTC)) as writer:
        ticket = writer.claim(Claim(job, "<id@example.org>"))
        writer.flush()
        assert ticket.committed
        # Another connection sees it: committed, not just written.
        assert ledger.counts(pg, "b") == Counter({"sending": 1})
        driver = writer._writes._conn.driver_connection  # type: ignore[attr-defined]
    assert driver.autocommit is False
    with pg.engine.connect() as conn:
        setting = conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one()
        assert setting == "auto"  # the writer's SET does not outlive it


def test_a_failed_group_commit_stops_the_writer(pg: Store) -> None:
    (job,) = jobs(pg, 1)
    writer = LedgerWriter(pg, clock=lambda: datetime.now(UTC))
    writer.settle(Outcome(job, "x" * 30, "status too long for its column"))
    with pytest.raises(ledger.LedgerError):
        writer.flush()
    with pytest.raises(ledger.LedgerError):
        writer.claim(Claim(job, "<id@example.org>"))
    writer.close()
    assert ledger.counts(pg, "b") == Counter({"queued": 1})  # nothing half-written
