"""Exactly once: the ledger has one row per subscriber and brief, commits claims a turn at a
time, and only one run sends a brief at a time (the lock dies with a killed holder)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from delivery_helpers import active_emails, add_subscribers, ledger_rows, make_settings
from smtp_servers import Recorder, smtp_server
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from briefcast.delivery import DeliveryError, deliver, ledger, lock
from briefcast.delivery.ledger import Claim, LedgerWriter, Outcome
from briefcast.store import Store, deliveries

# --- the ledger -----------------------------------------------------------------------------


def test_ledger_has_one_row_per_subscriber_whatever_happens(store: Store) -> None:
    add_subscribers(store, 25)
    now = datetime.now(UTC)
    active = list(pipeline_subscribers(store))
    assert ledger.enqueue(store, "b1", active, {"en", "it", "both"}, now, batch=7) == 25
    assert ledger.enqueue(store, "b1", active, {"en", "it", "both"}, now, batch=7) == 0
    with store.engine.begin() as conn:
        conn.execute(update(deliveries).values(status="sent"))
    assert ledger.enqueue(store, "b1", active, {"en", "it", "both"}, now, batch=100) == 0
    assert ledger.counts(store, "b1") == Counter({"sent": 25})  # sent rows stay sent
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            insert(deliveries).values(
                brief_id="b1", subscriber_id=1, edition="en", status="queued", updated_at=now
            )
        )
    editions = {r["edition"] for r in ledger_rows(store, "b1").values()}
    assert editions == {"en", "it", "both"}


def pipeline_subscribers(store: Store):  # the sender's walk, as delivery uses it
    from briefcast.subscribers import iter_active

    return iter_active(store, batch=4)


def test_group_commit_makes_claims_durable_a_turn_at_a_time(store: Store) -> None:
    """Four connections' claims and outcomes, one commit per turn of the loop: each claim is
    durable (visible to another connection) once flushed, never one commit per row."""
    add_subscribers(store, 4000)
    ledger.enqueue(
        store, "b", pipeline_subscribers(store), {"en", "it", "both"}, datetime.now(UTC), batch=1000
    )
    jobs = list(ledger.iter_due(store, "b", datetime.now(UTC), batch=1000))
    writer = LedgerWriter(store, clock=lambda: datetime.now(UTC))
    for i in range(0, len(jobs), 4):  # a turn: four outcomes, four claims, one commit
        turn = jobs[i : i + 4]
        tickets = [writer.claim(Claim(job, "<id@example.org>")) for job in turn]
        assert not any(t.committed for t in tickets)
        writer.flush()
        assert all(t.committed for t in tickets)
        with store.engine.connect() as conn:  # durable: another connection sees it
            sending = conn.execute(
                select(deliveries.c.status).where(deliveries.c.id == turn[0].delivery_id)
            ).scalar_one()
        assert sending == "sending"
        for job in turn:
            writer.settle(Outcome(job, "sent", "250 ok"))
    writer.close()
    assert ledger.counts(store, "b") == Counter({"sent": 4000})
    assert writer.commits == len(jobs) // 4 + 1


def test_a_reply_with_a_nul_byte_is_recorded_without_it(store: Store) -> None:
    add_subscribers(store, 1)
    now = datetime.now(UTC)
    ledger.enqueue(store, "b", pipeline_subscribers(store), {"en", "it", "both"}, now)
    (job,) = ledger.iter_due(store, "b", now)
    with LedgerWriter(store, clock=lambda: datetime.now(UTC)) as writer:
        writer.settle(Outcome(job, "deferred", "451 odd\x00relay", now))
    assert ledger_rows(store, "b")["reader1@example.org"]["last_reply"] == "451 oddrelay"


# --- one sender per brief ------------------------------------------------------------------


def same_database(store: Store) -> Store:
    """Another Store on the same database: what a second process would open."""
    return Store(store.engine.url.render_as_string(hide_password=False))


def test_a_second_run_of_the_same_brief_is_refused_while_one_sends(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 3)
    recorder = Recorder()
    with smtp_server(recorder) as port, same_database(store) as other:
        settings = make_settings(port, lock_wait_seconds=0.3)
        with lock.sending(other, brief_id):
            started = time.monotonic()
            with pytest.raises(DeliveryError, match="being sent by another run"):
                deliver(store, brief_id, mails, settings)
            assert time.monotonic() - started >= 0.3  # it waited for the other run first
            assert ledger.counts(store, brief_id) == Counter()  # and touched nothing
            elsewhere = deliver(store, "another-brief", mails, settings)  # not held up
        assert elsewhere.this_run["sent"] == 3
        after = deliver(store, brief_id, mails, settings)  # let go: this brief's turn

    assert after.this_run["sent"] == 3
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 2))


def test_the_send_lock_dies_with_a_killed_holder(store: Store, brief_and_mails) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 2)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_LOCK,
            store.engine.url.render_as_string(hide_password=False),
            brief_id,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        recorder = Recorder()
        with smtp_server(recorder) as port:
            settings = make_settings(port, lock_wait_seconds=0.2)
            with pytest.raises(DeliveryError, match="being sent by another run"):
                deliver(store, brief_id, mails, settings)
            holder.kill()  # kill -9: no chance to let go of anything itself
            holder.wait(timeout=10)
            summary = deliver(store, brief_id, mails, make_settings(port, lock_wait_seconds=10))
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert summary.this_run["sent"] == 2


HOLD_LOCK = """
import sys, time
from briefcast.delivery import lock
from briefcast.store import Store
with lock.sending(Store(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""
