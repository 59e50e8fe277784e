"""The live send of a brief's email editions to the active subscribers.

``deliver`` is the whole send, as a plain function (the Prefect flow's task and the tests
call it the same way):

1. rows left ``sending`` by a run that died become ``unknown``;
2. every active subscriber gets a ledger row (read in keyset batches; existing rows kept);
3. the due rows (queued, deferred and due; unknown too with ``resend_unknown``) go out
   through the connection pool, each claimed and settled in the ledger by the group writer;
4. deferred messages due within ``retry_window_seconds`` are retried before the run ends;
5. a :class:`~briefcast.delivery.summary.DeliverySummary` says what happened.

With ``subscribers=(first_id, last_id)`` a run sends one batch of the brief: every step
above, and the summary, is about the subscribers with ids in that range (both included)
only, and the run holds that batch's send lock instead of the whole brief's, so that the
batches of :func:`~briefcast.delivery.ledger.subscriber_batches` can go out in parallel from
several processes or machines (see :mod:`~briefcast.delivery.lock`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_

from briefcast import subscribers as subscriber_store
from briefcast.config import Settings
from briefcast.delivery import ledger, lock, tokens
from briefcast.delivery.audience import EVERYONE, Audience
from briefcast.delivery.dkim import DkimError, DkimSigner
from briefcast.delivery.ledger import (
    ATTEMPTED,
    Claim,
    DeliveryStatus,
    Job,
    LedgerWriter,
    Outcome,
    SubscriberRange,
    Ticket,
)
from briefcast.delivery.messages import Messages
from briefcast.delivery.pacing import HourlyCap
from briefcast.delivery.pool import Pool
from briefcast.delivery.preflight import DeliveryError, unsubscribe_secret
from briefcast.delivery.prepared import PreparedEdition
from briefcast.delivery.smtp import RelayUnreachable, Result, ResultStatus, SmtpFatal
from briefcast.delivery.summary import DeliverySummary, Reporter, current_reporter
from briefcast.delivery.verp import ReturnPath
from briefcast.render.email import EmailEdition
from briefcast.store import Store
from briefcast.store import subscribers as subscriber_table

SUMMARY_STATUSES = (*ATTEMPTED, DeliveryStatus.QUEUED)
LISTED = 20  # addresses named in the summary per status


def _now() -> datetime:
    return datetime.now(UTC)


class _LedgerHandler:
    """The pool's handler for a live send: tokens, claims and outcomes in the ledger."""

    def __init__(
        self, messages: Messages, writer: LedgerWriter, secret: str, settings: Settings
    ) -> None:
        self._messages = messages
        self._writer = writer
        self._secret = secret
        self._tokens: dict[int, str] = {}
        self._return_path = ReturnPath.from_settings(settings, secret)
        self._max_attempts = settings.delivery.max_attempts
        self._backoff = settings.delivery.backoff_seconds

    def message(self, job: Job) -> tuple[str, str, bytes]:
        token = tokens.sign(self._secret, job.subscriber_id)
        data = self._messages.data(job.edition, job.email, token)
        self._tokens[job.delivery_id] = token  # for the claim that follows: one HMAC a message
        # VERP: a bounce that comes back later names this very row.
        return self._return_path.address(job.delivery_id), job.email, data

    def claim(self, job: Job) -> Ticket:
        token = self._tokens.pop(job.delivery_id)
        message_id = self._messages.editions[job.edition].message_id(token)
        return self._writer.claim(Claim(job, message_id))

    def settle(self, job: Job, result: Result) -> None:
        self._tokens.pop(job.delivery_id, None)
        self._writer.settle(self._outcome(job, result))

    @property
    def pending(self) -> bool:
        return self._writer.pending

    def flush(self) -> None:
        self._writer.flush()

    def _outcome(self, job: Job, result: Result) -> Outcome:
        status, reply = result.status, result.reply
        if status == ResultStatus.SENT:
            return Outcome(job, DeliveryStatus.SENT, reply)
        if status == ResultStatus.UNKNOWN:
            return Outcome(job, DeliveryStatus.UNKNOWN, reply)
        if status == ResultStatus.BOUNCED:
            return Outcome(job, DeliveryStatus.BOUNCED, reply, hard_bounce=result.hard)
        if status == ResultStatus.FAILED:  # could not be made or addressed: no retry will help
            return Outcome(job, DeliveryStatus.BOUNCED, reply)
        if status == ResultStatus.DEFERRED:
            attempts = job.attempts + 1
            if attempts >= self._max_attempts:
                gave_up = f"gave up after {attempts} attempts: {reply}"
                return Outcome(job, DeliveryStatus.BOUNCED, gave_up)
            wait = self._backoff[min(attempts, len(self._backoff)) - 1]
            return Outcome(job, DeliveryStatus.DEFERRED, reply, _now() + timedelta(seconds=wait))
        # unsent or fatal: handed back untouched
        return Outcome(job, DeliveryStatus.QUEUED, reply)


def deliver(
    store: Store,
    brief_id: str,
    mails: Sequence[EmailEdition | PreparedEdition],
    settings: Settings,
    *,
    resend_unknown: bool = False,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
    subscribers: SubscriberRange | None = None,
    audience: Audience = EVERYONE,
) -> DeliverySummary:
    """Send one brief to its active subscribers in ``audience`` (by default the whole
    list; see :mod:`briefcast.delivery.audience`); safe to re-run at any time after any
    crash (it mails exactly those not yet mailed). Returns what happened. Setting ``stop`` ends
    the run early and cleanly: the messages under way finish and are recorded.

    ``subscribers=(first_id, last_id)`` sends only to the subscribers with ids in that range
    (both included): one batch, which may run while other batches of the same brief do (in
    other processes or machines), never while the same batch or a whole-brief run does
    (DeliveryError, after ``delivery.lock_wait_seconds``)."""
    if subscribers is not None:
        subscribers = _check_range(subscribers)
    secret = unsubscribe_secret(settings)
    try:
        dkim = DkimSigner.from_settings(settings)
    except DkimError as exc:
        raise DeliveryError(str(exc)) from exc
    reporter = reporter or current_reporter()
    prepared = (
        m if isinstance(m, PreparedEdition) else PreparedEdition.from_edition(m) for m in mails
    )
    began = datetime.now(settings.site.tz)  # every message's Date
    editions = {p.edition: p.dated(began) for p in prepared}
    try:
        with lock.sending(
            store, brief_id, wait=settings.delivery.lock_wait_seconds, subscribers=subscribers
        ):
            summary = _deliver(
                store,
                brief_id,
                Messages(editions, dkim),
                settings,
                secret,
                resend_unknown,
                reporter,
                stop or threading.Event(),
                subscribers,
                audience,
            )
    except lock.BriefBusy as exc:
        raise DeliveryError(str(exc)) from exc
    if reporter is not None:
        reporter.finished(summary)
    return summary


def _check_range(subscribers: SubscriberRange) -> SubscriberRange:
    try:
        first, last = (int(i) for i in subscribers)
    except (TypeError, ValueError):
        raise DeliveryError(
            f"subscribers must be a range of ids (first, last), not {subscribers!r}"
        ) from None
    if first > last:
        raise DeliveryError(f"subscribers {first}-{last}: the first id is after the last")
    return first, last


def _active(
    store: Store, batch: int, subscribers: SubscriberRange | None, audience: Audience
) -> Iterator[subscriber_store.Subscriber]:
    """The active subscribers the brief is for (of the batch when given), chosen by the
    query: a subscriber left out never gets a row in the ledger."""
    where = audience.where()
    if subscribers is not None:
        first, last = subscribers
        where = and_(where, subscriber_table.c.id.between(first, last))
    return subscriber_store.walk(store, where, batch)


def _deliver(
    store: Store,
    brief_id: str,
    messages: Messages,
    settings: Settings,
    secret: str,
    resend_unknown: bool,
    reporter: Reporter | None,
    stop: threading.Event,
    subscribers: SubscriberRange | None,
    audience: Audience,
) -> DeliverySummary:
    d = settings.delivery
    started = _now()
    # Safe: the lock says nobody else is sending these rows (a batch's lock: only its own).
    ledger.recover(store, brief_id, started, subscribers)
    ledger.enqueue(
        store,
        brief_id,
        _active(store, d.batch_size, subscribers, audience),
        messages.editions,
        started,
        d.batch_size,
    )
    if resend_unknown:
        ledger.requeue_unknown(store, brief_id, started, subscribers)

    cap = HourlyCap(d.hourly_cap)
    if d.hourly_cap:
        since = started - timedelta(hours=1)
        cap.seed(when.timestamp() for when in ledger.attempt_times(store, since))

    total = ledger.count_due(store, brief_id, _now(), subscribers)

    def progress(outcomes: dict[str, int]) -> None:
        if reporter is not None:
            reporter.progress(brief_id, _attempted(outcomes), total)

    def hard_bounce(subscriber_id: int) -> None:
        subscriber_store.record_hard_bounce(store, subscriber_id, d.hard_bounce_threshold)

    error: str | None = None
    busy = 0.0
    progress({})
    with (
        LedgerWriter(store, on_hard_bounce=hard_bounce, on_progress=progress, clock=_now) as writer,
        Pool.from_settings(settings, d.pool_size, cap) as pool,
    ):
        handler = _LedgerHandler(messages, writer, secret, settings)
        deadline: datetime | None = None
        while True:  # a pass, then the deferred messages that come due within the window
            attempted = _attempted(writer.outcomes)
            t0 = time.perf_counter()
            try:
                due = ledger.iter_due(store, brief_id, _now(), d.batch_size, subscribers)
                pool.run(due, handler, stop)
            except (SmtpFatal, RelayUnreachable) as exc:
                error = str(exc)
            finally:
                busy += time.perf_counter() - t0
            if error:
                break
            if stop.is_set():
                error = "stopped before the end: run the same publish again to finish"
                break
            progressed = _attempted(writer.outcomes) > attempted
            if progressed and (left := ledger.count_due(store, brief_id, _now(), subscribers)):
                total += left  # handed back by a connection that could not connect: again
                continue
            deadline = deadline or _now() + timedelta(seconds=d.retry_window_seconds)
            retry_at = ledger.next_retry_at(store, brief_id, subscribers)
            if retry_at is None or retry_at > deadline:
                break
            if not progressed and retry_at <= _now():
                break  # due, yet nothing was tried: never spin
            stop.wait(max(0.0, (retry_at - _now()).total_seconds()))
            total += ledger.count_due(store, brief_id, _now(), subscribers)

    summary = _summary(store, brief_id, started, busy, error, subscribers, audience)
    # Whom each edition reaches, in the editions' order (en, it, both).
    reach = ledger.by_edition(store, brief_id, subscribers)
    return replace(summary, editions={e: reach[e] for e in messages.editions if reach[e]})


def _attempted(outcomes: dict[str, int]) -> int:
    return sum(n for status, n in outcomes.items() if status != DeliveryStatus.QUEUED)


def _summary(
    store: Store,
    brief_id: str,
    started: datetime,
    seconds: float,
    error: str | None,
    subscribers: SubscriberRange | None,
    audience: Audience,
) -> DeliverySummary:
    this_run = ledger.counts(store, brief_id, since=started, subscribers=subscribers)
    everything = ledger.counts(store, brief_id, subscribers=subscribers)
    return DeliverySummary(
        brief_id=brief_id,
        this_run={s: this_run.get(s, 0) for s in SUMMARY_STATUSES},
        ledger={s: everything.get(s, 0) for s in SUMMARY_STATUSES},
        skipped=everything.total() - this_run.total(),
        seconds=seconds,
        unknown=ledger.addresses(store, brief_id, DeliveryStatus.UNKNOWN, LISTED, subscribers),
        deferred=ledger.addresses(store, brief_id, DeliveryStatus.DEFERRED, LISTED, subscribers),
        error=error,
        left_out=list(audience.left_out),
    )


def combine(
    store: Store, brief_id: str, editions: Sequence[str], parts: Sequence[DeliverySummary]
) -> DeliverySummary:
    """One summary of several batches' runs of a brief (disjoint ranges), as one run of
    them all would say: this run's counts and time added up, the rest (every row of the
    brief, the addresses listed, whom each edition reaches) read for the whole brief, as
    ``deliver`` with ``subscribers=None`` reads them."""
    this_run: dict[str, int] = {
        s: sum(p.this_run.get(s, 0) for p in parts) for s in SUMMARY_STATUSES
    }
    everything = ledger.counts(store, brief_id)
    reach = ledger.by_edition(store, brief_id)
    errors = [p.error for p in parts if p.error]
    return DeliverySummary(
        brief_id=brief_id,
        this_run=this_run,
        ledger={s: everything.get(s, 0) for s in SUMMARY_STATUSES},
        skipped=everything.total() - sum(this_run.values()),
        seconds=sum(p.seconds for p in parts),
        unknown=ledger.addresses(store, brief_id, DeliveryStatus.UNKNOWN, LISTED),
        deferred=ledger.addresses(store, brief_id, DeliveryStatus.DEFERRED, LISTED),
        error="; ".join(errors) or None,
        editions={e: reach[e] for e in editions if reach[e]},
        left_out=list(parts[0].left_out) if parts else [],
    )
