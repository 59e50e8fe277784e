"""Sending one brief in batches of subscribers, several at once (processes, machines): each
subscriber mailed exactly once across the batches, a killed batch finished by its re-run, and
the locks that keep a batch, and the whole brief, to one sender at a time."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from delivery_helpers import (
    SECRET,
    active_emails,
    add_subscribers,
    cli_env,
    ledger_rows,
    make_settings,
    subscriber_rows,
)
from smtp_servers import Faults, Recorder, smtp_server
from sqlalchemy import select, update

from briefcast.delivery import DeliveryError, DeliverySummary, deliver, ledger, lock
from briefcast.delivery import subscriber_batches as exported_batches
from briefcast.delivery.worker import COMMAND, spec_line
from briefcast.store import Store, deliveries, subscribers


def same_database(store: Store) -> Store:
    """Another Store on the same database: what a second process would open."""
    return Store(store.engine.url.render_as_string(hide_password=False))


def ids_of(store: Store, emails: set[str]) -> set[int]:
    rows = subscriber_rows(store)
    return {rows[e][0] for e in emails}


def emails_in(store: Store, batch: tuple[int, int]) -> set[str]:
    return {
        e
        for e, (sub_id, _, status) in subscriber_rows(store).items()
        if status == "active" and batch[0] <= sub_id <= batch[1]
    }


# --- the batches ----------------------------------------------------------------------------


def test_batches_cut_the_active_list_into_disjoint_ranges_of_size(store: Store) -> None:
    assert ledger.subscriber_batches(store, 10) == []
    add_subscribers(store, 12)  # ids 1-12
    add_subscribers(store, 5, status="unsubscribed", start=100)  # ids 13-17
    add_subscribers(store, 8, start=200)  # ids 18-25
    add_subscribers(store, 3, status="bounced", start=300)  # ids 26-28

    assert ledger.subscriber_batches(store, 10) == [(1, 10), (11, 25)]
    batches = ledger.subscriber_batches(store, 7)
    assert batches == [(1, 7), (8, 19), (20, 25)]
    assert exported_batches is ledger.subscriber_batches
    active = {sub_id for sub_id, _, status in subscriber_rows(store).values() if status == "active"}
    covered = [i for first, last in batches for i in active if first <= i <= last]
    assert sorted(covered) == sorted(active)  # each active subscriber in exactly one
    assert [len(emails_in(store, b)) for b in batches] == [7, 7, 6]
    assert ledger.subscriber_batches(store, 1000) == [(1, 25)]
    assert ledger.subscriber_batches(store, 20) == [(1, 25)]  # exactly 20 active
    assert len(ledger.subscriber_batches(store, 1)) == 20
    with pytest.raises(ValueError):
        ledger.subscriber_batches(store, 0)


def test_a_batch_run_sends_to_and_reports_on_its_range_only(store: Store, brief_and_mails) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 20)
    lost = "reader3@example.org"  # in the first batch
    recorder = Recorder(Faults(drop_after_data={lost: 1}))
    with smtp_server(recorder) as port:
        settings = make_settings(port)
        first = deliver(store, brief_id, mails, settings, subscribers=(1, 10))
        assert set(recorder.count()) == emails_in(store, (1, 10)) - {lost}
        assert set(ledger_rows(store, brief_id)) == emails_in(store, (1, 10))  # enqueued: these
        assert first.this_run["sent"] == 9 and first.this_run["unknown"] == 1
        assert first.unknown == [lost] and first.ledger["sent"] == 9

        second = deliver(store, brief_id, mails, settings, subscribers=(11, 20))
        assert second.this_run["sent"] == 10 and second.unknown == []  # not the other's
        assert second.ledger == {"sent": 10, "deferred": 0, "bounced": 0, "unknown": 0, "queued": 0}
        resent = deliver(
            store, brief_id, mails, settings, subscribers=(11, 20), resend_unknown=True
        )
        assert resent.this_run["sent"] == 0 and resent.skipped == 10  # other batch's unknown
        whole = deliver(store, brief_id, mails, settings)

    assert whole.this_run["sent"] == 0 and whole.unknown == [lost] and whole.skipped == 20
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store) - {lost}, 1))
    with pytest.raises(DeliveryError, match="first id is after the last"):
        deliver(store, brief_id, mails, settings, subscribers=(10, 1))


# --- in parallel ----------------------------------------------------------------------------


def test_three_batches_in_parallel_mail_everyone_exactly_once(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 60)
    add_subscribers(store, 4, status="unsubscribed", start=500)
    add_subscribers(store, 30, start=600)
    batches = ledger.subscriber_batches(store, 30)
    assert len(batches) == 3
    recorder = Recorder(Faults(delay=0.01, defer={"reader7@example.org": 1}))
    start = threading.Barrier(len(batches))
    summaries: dict[tuple[int, int], DeliverySummary] = {}
    errors: list[BaseException] = []

    def send(batch: tuple[int, int], port: int) -> None:
        try:
            with same_database(store) as mine:  # its own engine, as another machine would
                start.wait(timeout=30)
                # No wait for the lock: were the batches exclusive, two of three would fail.
                settings = make_settings(port, lock_wait_seconds=0)
                summaries[batch] = deliver(mine, brief_id, mails, settings, subscribers=batch)
        except BaseException as exc:
            errors.append(exc)

    with smtp_server(recorder) as port:
        threads = [threading.Thread(target=send, args=(b, port)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)

    assert errors == []
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
    for batch, summary in summaries.items():
        assert summary.this_run["sent"] == 30 and summary.error is None, batch
        assert summary.ledger["sent"] == 30 and summary.skipped == 0
    rows = ledger_rows(store, brief_id)
    assert len(rows) == 90 and {r["status"] for r in rows.values()} == {"sent"}


def test_a_batch_killed_mid_send_is_finished_by_its_rerun_without_second_copies(
    store: Store, brief_and_mails, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL the sending process of one batch part way; the other batch runs meanwhile and
    leaves the dead batch's rows alone; the re-run of the batch mails exactly those left and
    calls unknown at most the messages in flight (one per connection)."""
    brief_id, mails = brief_and_mails
    add_subscribers(store, 60)
    first, second = ledger.subscriber_batches(store, 30)
    recorder = Recorder(Faults(delay=0.05))  # slow enough to kill part way
    pool = 3
    with smtp_server(recorder) as port:
        env = cli_env(
            tmp_path,
            port,
            BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET,
            BRIEFCAST_DATABASE__URL=database_url,
        )
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
        proc.stdin.write(spec_line(brief_id, mails, resend_unknown=False, subscribers=first))
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while len(recorder.messages()) < 6 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.kill()  # kill -9: nothing recorded on the way out
        proc.communicate(timeout=30)
        time.sleep(0.3)  # let the server notice the dead connections
        before = recorder.count()
        assert 6 <= sum(before.values()) < 30, "the kill came too late to test anything"
        in_flight = {e for e, r in ledger_rows(store, brief_id).items() if r["status"] == "sending"}
        assert 1 <= len(in_flight) <= pool

        other = deliver(store, brief_id, mails, make_settings(port), subscribers=second)
        assert other.this_run["sent"] == 30 and other.unknown == []
        still = {e for e, r in ledger_rows(store, brief_id).items() if r["status"] == "sending"}
        assert still == in_flight  # the other batch's run did not touch them

        rerun = deliver(store, brief_id, mails, make_settings(port), subscribers=first)

    rows = ledger_rows(store, brief_id)
    unknown = {e for e, r in rows.items() if r["status"] == "unknown"}
    assert unknown == in_flight and sorted(rerun.unknown) == sorted(unknown)
    assert {r["status"] for e, r in rows.items() if e not in unknown} == {"sent"}
    after = recorder.count()
    assert all(n == 1 for n in after.values())  # nobody twice
    assert set(after) == active_emails(store) - {e for e in unknown if e not in before}
    assert rerun.this_run["sent"] == 30 - sum(before.values()) - len(unknown - set(before))


# --- the locks ------------------------------------------------------------------------------


def test_a_whole_brief_run_is_refused_while_a_batch_sends(store: Store, brief_and_mails) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 40)
    batch = (1, 20)
    recorder = Recorder(Faults(delay=0.2))  # about 1.4 s for the batch
    done: list[DeliverySummary] = []
    with smtp_server(recorder) as port, same_database(store) as other:
        sender = threading.Thread(
            target=lambda: done.append(
                deliver(other, brief_id, mails, make_settings(port), subscribers=batch)
            )
        )
        sender.start()
        deadline = time.monotonic() + 30
        while not recorder.messages() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.messages(), "the batch never started"
        quick = make_settings(port, lock_wait_seconds=0.2)
        with pytest.raises(DeliveryError) as refused:
            deliver(store, brief_id, mails, quick)
        with pytest.raises(DeliveryError) as same_batch:
            deliver(store, brief_id, mails, quick, subscribers=batch)
        sender.join(timeout=60)
        assert done and done[0].this_run["sent"] == 20

    for error in (refused.value, same_batch.value):
        message = str(error)
        assert "being sent by another run" in message and "\n" not in message
    assert "(subscribers 1-20)" in str(same_batch.value)
    assert len(recorder.messages()) == 20  # the refused runs sent nothing
    assert set(ledger_rows(store, brief_id)) == emails_in(store, batch)  # nor enqueued


def test_the_locks_of_batches_and_of_the_whole_brief(store: Store, brief_and_mails) -> None:
    """Batch runs share the brief and own their range; a whole-brief run owns the brief."""
    brief_id, mails = brief_and_mails
    add_subscribers(store, 6)
    recorder = Recorder()
    with smtp_server(recorder) as port, same_database(store) as other:
        quick = make_settings(port, lock_wait_seconds=0.1)
        with lock.sending(other, brief_id, subscribers=(1, 3)):
            with pytest.raises(DeliveryError, match=r"\(subscribers 1-3\) is being sent"):
                deliver(store, brief_id, mails, quick, subscribers=(1, 3))
            with pytest.raises(DeliveryError, match=f"brief {brief_id} is being sent"):
                deliver(store, brief_id, mails, quick)
            beside = deliver(store, brief_id, mails, quick, subscribers=(4, 6))
            assert beside.this_run["sent"] == 3
            elsewhere = deliver(store, "another-brief", mails, quick, subscribers=(1, 3))
            assert elsewhere.this_run["sent"] == 3
        with (
            lock.sending(other, brief_id),
            pytest.raises(DeliveryError, match="being sent by another run"),
        ):
            deliver(store, brief_id, mails, quick, subscribers=(1, 3))
        after = deliver(store, brief_id, mails, quick)  # every lock let go
    assert after.this_run["sent"] == 3
    twice = {f"reader{i}@example.org" for i in (1, 2, 3)}  # this brief and another-brief
    assert recorder.count() == Counter(dict.fromkeys(twice, 2)) + Counter(
        dict.fromkeys(active_emails(store) - twice, 1)
    )


def test_recovery_leaves_the_sending_rows_of_a_live_batch_alone(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 10)
    recorder = Recorder()
    with smtp_server(recorder) as port, same_database(store) as other:
        settings = make_settings(port)
        deliver(store, brief_id, mails, settings, subscribers=(1, 5))
        deliver(store, brief_id, mails, settings, subscribers=(6, 10))
        live = ids_of(store, {"reader7@example.org", "reader8@example.org"})
        dead = ids_of(store, {"reader2@example.org"})
        with store.engine.begin() as conn:  # (6, 10) mid-send; (1, 5) died mid-send
            conn.execute(
                update(deliveries)
                .where(deliveries.c.subscriber_id.in_(live | dead))
                .values(status="sending")
            )
        with lock.sending(other, brief_id, subscribers=(6, 10)):
            summary = deliver(store, brief_id, mails, settings, subscribers=(1, 5))
            assert summary.unknown == ["reader2@example.org"]
            with pytest.raises(DeliveryError):  # and the whole brief cannot recover anything
                deliver(store, brief_id, mails, make_settings(port, lock_wait_seconds=0))
        with store.engine.connect() as conn:
            sending = conn.execute(
                select(subscribers.c.email)
                .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
                .where(deliveries.c.status == "sending")
            ).scalars()
            assert set(sending) == {"reader7@example.org", "reader8@example.org"}
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))


def test_the_worker_sends_one_batch(store: Store, brief_and_mails, tmp_path: Path) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 8)
    recorder = Recorder()
    with smtp_server(recorder) as port:
        env = cli_env(
            tmp_path,
            port,
            BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET,
            BRIEFCAST_DATABASE__URL=store.engine.url.render_as_string(hide_password=False),
        )
        proc = subprocess.Popen(
            COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(spec_line(brief_id, mails, resend_unknown=False, subscribers=(3, 6)))
        proc.stdin.flush()  # and left open until the end: closed, it would stop the worker
        lines = [json.loads(line) for line in proc.stdout]
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    summary = lines[-1]["summary"]
    assert summary["this_run"]["sent"] == 4
    assert set(recorder.count()) == emails_in(store, (3, 6))
