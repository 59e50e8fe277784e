"""Exactly once by construction: each delivery row is claimed atomically in the database, so
two sends of the same brief whose batch ranges disagree (the subscriber list changed between
their starts: a send wrongly marked Crashed and its replacement, say) never mail anyone twice,
whatever their locks. Copies are counted at a real SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from delivery_helpers import active_emails, add_subscribers, ledger_rows, make_settings
from smtp_servers import Faults, Recorder, smtp_server
from sqlalchemy import update

from briefcast.delivery import DeliverySummary, deliver, ledger
from briefcast.delivery.ledger import Claim, LedgerWriter, Outcome
from briefcast.store import Store, subscribers
from briefcast.subscribers import iter_active


def same_database(store: Store) -> Store:
    """Another Store on the same database: what a second process would open."""
    return Store(store.engine.url.render_as_string(hide_password=False))


def test_two_sends_with_different_ranges_mail_each_subscriber_once(
    store: Store, brief_and_mails, monkeypatch: pytest.MonkeyPatch
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 10)  # ids 1-10
    (first,) = ledger.subscriber_batches(store, 10)
    assert first == (1, 10)
    recorder = Recorder(Faults(delay=0.01))
    # The worst interleaving, on purpose: the relay holds the first send's first message
    # until the second send has read which rows are due, so both read rows 2-10 as queued.
    started, read = threading.Event(), threading.Event()

    def hold(rcpt: str) -> None:
        if not started.is_set():
            started.set()
            read.wait(timeout=20)

    recorder.on_data = hold
    iter_due = ledger.iter_due

    def reading(*args: Any, **kwargs: Any) -> Iterator[ledger.Job]:
        due = list(iter_due(*args, **kwargs))
        if threading.current_thread().name == "(2, 11)":
            read.set()
        yield from due

    monkeypatch.setattr(ledger, "iter_due", reading)
    summaries: dict[str, DeliverySummary] = {}
    errors: list[BaseException] = []

    def send(name: str, batch: tuple[int, int], port: int) -> None:
        try:
            with same_database(store) as mine:  # its own engine, as another process's
                settings = make_settings(port, lock_wait_seconds=0)
                summaries[name] = deliver(mine, brief_id, mails, settings, subscribers=batch)
        except BaseException as exc:
            errors.append(exc)

    with smtp_server(recorder) as port:
        zombie = threading.Thread(target=send, args=("zombie", first, port), name="zombie")
        zombie.start()
        assert started.wait(timeout=30)
        # The list changes between the two starts: reader1 leaves, three join, so the
        # replacement's first batch is another range (2-11), under another batch lock.
        with store.engine.begin() as conn:
            conn.execute(
                update(subscribers).where(subscribers.c.id == 1).values(status="unsubscribed")
            )
        add_subscribers(store, 3, start=11)  # ids 11-13
        batches = ledger.subscriber_batches(store, 10)
        assert batches == [(2, 11), (12, 13)]
        others = [
            threading.Thread(target=send, args=(str(b), b, port), name=str(b)) for b in batches
        ]
        for t in others:
            t.start()
        for t in [zombie, *others]:
            t.join(timeout=60)

    assert errors == [] and read.is_set()
    everyone = active_emails(store) | {"reader1@example.org"}  # mailed before leaving
    copies = recorder.count()
    print(f"\ncopies per recipient ({store.engine.dialect.name}): {sorted(copies.values())}")
    assert copies == Counter(dict.fromkeys(everyone, 1))
    rows = ledger_rows(store, brief_id)
    assert set(rows) == everyone and {r["status"] for r in rows.values()} == {"sent"}
    assert len(summaries) == 3 and all(s.error is None for s in summaries.values())


def test_a_row_is_claimed_by_one_writer_only_and_a_loser_writes_nothing(store: Store) -> None:
    """Two writers (two runs) claim the same rows: each row goes to exactly one of them, the
    other's ticket is never committed, and the loser's outcome for it changes nothing."""
    add_subscribers(store, 4)
    now = datetime.now(UTC)
    ledger.enqueue(store, "b", iter_active(store), {"en", "it", "both"}, now)
    jobs = list(ledger.iter_due(store, "b", now))
    clock = lambda: datetime.now(UTC)  # noqa: E731
    with LedgerWriter(store, clock=clock) as one, LedgerWriter(store, clock=clock) as two:
        mine = [one.claim(Claim(job, "<1@example.org>")) for job in jobs[:2]]
        one.flush()
        theirs = [two.claim(Claim(job, "<2@example.org>")) for job in jobs]
        two.flush()
        assert all(t.committed for t in mine)
        assert [t.committed for t in theirs] == [False, False, True, True]
        # The loser hands its job back and bounces another it read as due: neither lands.
        two.settle(Outcome(jobs[0], "queued", "handed back"))
        two.settle(Outcome(jobs[1], "bounced", "550 no"))
        two.flush()
        one.settle(Outcome(jobs[0], "sent", "250 ok"))
        one.flush()
    rows = {r["subscriber_id"]: r for r in ledger_rows(store, "b").values()}
    assert rows[jobs[0].subscriber_id]["status"] == "sent"
    assert rows[jobs[1].subscriber_id]["status"] == "sending"  # still the first run's
    assert rows[jobs[1].subscriber_id]["message_id"] == "<1@example.org>"
    assert rows[jobs[2].subscriber_id]["message_id"] == "<2@example.org>"
