"""The delivery ledger: one row per (brief, subscriber), the truth about who got what.

``queued → sending → sent | deferred | bounced | unknown``. The unique key (brief,
subscriber) makes a second row, and so a second copy, impossible. A row is durably
``sending`` before its body goes out and its outcome is durable before the same connection
starts another message, so after a crash at most one row per connection is still
``sending``: the next run calls it ``unknown`` (it may or may not have arrived) and never
resends it unless asked to.

Writes go through :class:`LedgerWriter`, which commits every connection's claims and
outcomes together (group commit): one transaction per few messages, not two per message.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from briefcast.store import Store, as_aware, deliveries, subscribers

log = logging.getLogger(__name__)

REPLY_MAX = 500  # characters of an SMTP reply kept in the ledger


# NamedTuples, not frozen dataclasses: several are made per message, and a frozen
# dataclass's __init__ costs several times a tuple's.


class Job(NamedTuple):
    """One message to attempt: a ledger row and whom it goes to."""

    delivery_id: int
    subscriber_id: int
    email: str
    edition: str
    attempts: int  # attempts made before this one


class Claim(NamedTuple):
    job: Job
    message_id: str


class Outcome(NamedTuple):
    job: Job
    status: str  # sent | deferred | bounced | unknown, or queued to hand an unsent job back
    reply: str = ""
    next_attempt_at: datetime | None = None
    hard_bounce: bool = False  # counts towards the subscriber's hard-bounce threshold

    @property
    def attempted(self) -> bool:
        return self.status != "queued"


def edition_for(language: str, editions: Collection[str]) -> str:
    """A subscriber's language picks the edition; a language with no edition gets "both"."""
    return language if language in editions else "both"


class Recipient(Protocol):
    """What enqueue needs of a subscriber row."""

    @property
    def id(self) -> int: ...

    @property
    def language(self) -> str: ...


def enqueue(
    store: Store,
    brief_id: str,
    active: Iterable[Recipient],
    editions: Collection[str],
    now: datetime,
    batch: int = 1000,
) -> int:
    """Give every subscriber in ``active`` (rows with ``id`` and ``language``) a ``queued``
    row, in batches; rows that exist already are left exactly as they are. Returns the
    number of new rows."""
    # Counted by RETURNING (only rows actually inserted come back): a driver's rowcount after
    # executemany is not the total (psycopg gives -1).
    insert = _insert_ignoring_duplicates(store).returning(deliveries.c.id)
    created = 0
    rows: list[dict[str, object]] = []

    def flush() -> None:
        nonlocal created
        with store.engine.begin() as conn:
            created += len(conn.execute(insert, rows).all())
        rows.clear()

    for sub in active:
        rows.append(
            {
                "brief_id": brief_id,
                "subscriber_id": sub.id,
                "edition": edition_for(sub.language, editions),
                "status": "queued",
                "attempts": 0,
                "updated_at": now,
            }
        )
        if len(rows) >= batch:
            flush()
    if rows:
        flush()
    return created


def _insert_ignoring_duplicates(store: Store) -> Any:
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(deliveries).on_conflict_do_nothing(
            index_elements=["brief_id", "subscriber_id"]
        )
    if dialect == "postgresql":
        return postgresql.insert(deliveries).on_conflict_do_nothing(
            index_elements=["brief_id", "subscriber_id"]
        )
    raise NotImplementedError(f"the delivery ledger supports sqlite and postgresql, not {dialect}")


def recover(store: Store, brief_id: str, now: datetime) -> int:
    """Rows still ``sending`` belong to a run that died mid-message: their outcome is
    unknown. Call only when no other run is sending this brief."""
    with store.engine.begin() as conn:
        return conn.execute(
            update(deliveries)
            .where(deliveries.c.brief_id == brief_id, deliveries.c.status == "sending")
            .values(
                status="unknown",
                attempts=deliveries.c.attempts + 1,
                last_reply="interrupted while sending: the message may or may not have arrived",
                updated_at=now,
            )
        ).rowcount


def requeue_unknown(store: Store, brief_id: str, now: datetime) -> int:
    """The editor chose to resend the messages whose outcome is unknown (--resend-unknown)."""
    with store.engine.begin() as conn:
        return conn.execute(
            update(deliveries)
            .where(deliveries.c.brief_id == brief_id, deliveries.c.status == "unknown")
            .values(status="queued", next_attempt_at=None, updated_at=now)
        ).rowcount


def _due(brief_id: str, now: datetime) -> Any:
    return and_(
        deliveries.c.brief_id == brief_id,
        subscribers.c.status == "active",
        or_(
            deliveries.c.status == "queued",
            and_(deliveries.c.status == "deferred", deliveries.c.next_attempt_at <= now),
        ),
    )


def count_due(store: Store, brief_id: str, now: datetime) -> int:
    query = (
        select(func.count())
        .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id))
        .where(_due(brief_id, now))
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def iter_due(store: Store, brief_id: str, now: datetime, batch: int = 1000) -> Iterator[Job]:
    """Rows to attempt now, for active subscribers only, in keyset batches over the
    (brief, subscriber) index: memory stays flat whatever the list's size."""
    last = 0
    while True:
        query = (
            select(  # in Job's field order
                deliveries.c.id,
                deliveries.c.subscriber_id,
                subscribers.c.email,
                deliveries.c.edition,
                deliveries.c.attempts,
            )
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(_due(brief_id, now), deliveries.c.subscriber_id > last)
            .order_by(deliveries.c.subscriber_id)
            .limit(batch)
        )
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
        yield from (Job._make(row) for row in rows)
        if len(rows) < batch:
            return
        last = rows[-1].subscriber_id


def next_retry_at(store: Store, brief_id: str) -> datetime | None:
    """When the earliest deferred message (of an active subscriber) may be tried again."""
    query = (
        select(func.min(deliveries.c.next_attempt_at))
        .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id))
        .where(
            deliveries.c.brief_id == brief_id,
            deliveries.c.status == "deferred",
            subscribers.c.status == "active",
        )
    )
    with store.engine.connect() as conn:
        when = conn.execute(query).scalar_one_or_none()
    return as_aware(when) if when else None


def counts(store: Store, brief_id: str, since: datetime | None = None) -> Counter[str]:
    """Rows per status; with ``since``, only rows a run changed from then on."""
    query = (
        select(deliveries.c.status, func.count())
        .where(deliveries.c.brief_id == brief_id)
        .group_by(deliveries.c.status)
    )
    if since is not None:
        query = query.where(deliveries.c.updated_at >= since)
    with store.engine.connect() as conn:
        return Counter({status: int(n) for status, n in conn.execute(query)})


def addresses(store: Store, brief_id: str, status: str, limit: int = 20) -> list[str]:
    query = (
        select(subscribers.c.email)
        .join(deliveries, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.brief_id == brief_id, deliveries.c.status == status)
        .order_by(subscribers.c.id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return list(conn.execute(query).scalars())


def attempt_times(store: Store, since: datetime) -> Iterator[datetime]:
    """When each message of any brief attempted since ``since`` was last attempted (for
    the hourly cap, which the relay counts across runs and briefs)."""
    query = select(deliveries.c.updated_at).where(
        deliveries.c.updated_at >= since,
        deliveries.c.status.in_(("sent", "bounced", "deferred", "unknown")),
    )
    with store.engine.connect() as conn:
        for (when,) in conn.execution_options(yield_per=5000).execute(query):
            yield as_aware(when)


# --- the group-committing writer ----------------------------------------------------------

_CLAIM = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        message_id=bindparam("b_message_id"),
        updated_at=bindparam("b_now"),
    )
)
_OUTCOME = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=deliveries.c.attempts + bindparam("b_attempted"),
        last_reply=bindparam("b_reply"),
        next_attempt_at=bindparam("b_next"),
        updated_at=bindparam("b_now"),
    )
)


class _DriverStatement:
    """A statement compiled once for the database's driver and run with the driver's own
    ``executemany``: SQLAlchemy's per-row parameter handling costs several times what
    SQLite's update itself does, at thousands of rows a second. Parameters must already be
    in the driver's types (see ``LedgerWriter._timestamp``)."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order: list[str] | None = compiled.positiontup  # None: named parameters

    def run(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        order = self.order
        params = [tuple(row[name] for name in order) for row in rows] if order else rows
        cursor.executemany(self.sql, params)


ProgressHook = Callable[[Counter[str]], None]
HardBounceHook = Callable[[int], None]


class LedgerError(RuntimeError):
    """The ledger could not be written: stop sending, or messages could go out twice."""


class Ticket:
    """A claim waiting for its commit: the message's body waits for ``committed``."""

    __slots__ = ("committed",)

    def __init__(self) -> None:
        self.committed = False


class LedgerWriter:
    """Group commit: claims and outcomes queue up, and :meth:`flush` commits them all in one
    transaction. The sending loop flushes when a body waits for its claim, so the claims of
    the other connections (sent meanwhile, answered by the relay a round trip later) and the
    outcomes since the last commit ride along: a few messages per commit, not two commits
    per message."""

    def __init__(
        self,
        store: Store,
        *,
        on_hard_bounce: HardBounceHook | None = None,
        on_progress: ProgressHook | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self._on_hard_bounce = on_hard_bounce
        self._on_progress = on_progress
        self._clock = clock
        self._claims: list[tuple[Claim, Ticket]] = []
        self._outcomes: list[Outcome] = []
        self._error: BaseException | None = None
        self._last_progress = 0.0
        self.outcomes: Counter[str] = Counter()  # committed outcomes, by status
        self.commits = 0
        dialect = store.engine.dialect
        self._claim = _DriverStatement(_CLAIM, dialect)
        self._outcome = _DriverStatement(_OUTCOME, dialect)
        to_db = deliveries.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._to_db: Callable[[datetime], Any] = to_db or (lambda when: when)
        # One driver connection for the whole send, used directly: checking one out per
        # commit, or SQLAlchemy's transaction bookkeeping, costs more than the commit. The
        # driver opens a transaction with the first update; commit() ends it.
        self._conn = store.engine.raw_connection()

    @property
    def pending(self) -> bool:
        return bool(self._claims or self._outcomes)

    def claim(self, claim: Claim) -> Ticket:
        self._check()
        ticket = Ticket()
        self._claims.append((claim, ticket))
        return ticket

    def settle(self, outcome: Outcome) -> None:
        self._check()
        self._outcomes.append(outcome)

    def flush(self) -> None:
        """Commit everything queued; raises LedgerError if it cannot be (and from then on)."""
        self._check()
        if not self.pending:
            return
        claims, self._claims = self._claims, []
        outcomes, self._outcomes = self._outcomes, []
        try:
            self._commit([c for c, _ in claims], outcomes)
        except Exception as exc:
            log.exception("ledger write failed")
            self._error = exc
            raise LedgerError(f"the ledger could not be written: {exc}") from exc
        for _, ticket in claims:
            ticket.committed = True
        for outcome in outcomes:
            if outcome.hard_bounce:
                self._hard_bounce(outcome.job.subscriber_id)
        now = time.monotonic()
        if self._on_progress is not None and now - self._last_progress > 0.1:
            self._last_progress = now
            self._on_progress(self.outcomes)

    def close(self) -> None:
        try:
            if self._error is None:
                self.flush()
        finally:
            self._conn.close()
        if self._on_progress is not None:
            self._on_progress(self.outcomes)

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> None:
        if self._error is not None:
            raise LedgerError(f"the ledger could not be written: {self._error}")

    def _commit(self, claims: list[Claim], outcomes: list[Outcome]) -> None:
        when = self._timestamp(self._clock())
        cursor = self._conn.cursor()
        try:
            # Claims first: a row claimed and settled within one batch (a message handed
            # back before its body went) must end settled, not "sending".
            if claims:
                self._claim.run(
                    cursor,
                    [
                        {
                            "b_id": c.job.delivery_id,
                            "b_status": "sending",
                            "b_message_id": c.message_id,
                            "b_now": when,
                        }
                        for c in claims
                    ],
                )
            if outcomes:
                self._outcome.run(
                    cursor,
                    [
                        {
                            "b_id": o.job.delivery_id,
                            "b_status": o.status,
                            "b_attempted": int(o.attempted),
                            # PostgreSQL refuses NUL in text, and a relay may send one.
                            "b_reply": o.reply[:REPLY_MAX].replace("\x00", "") or None,
                            "b_next": self._timestamp(o.next_attempt_at),
                            "b_now": when,
                        }
                        for o in outcomes
                    ],
                )
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        finally:
            cursor.close()
        self.commits += 1
        self.outcomes.update(o.status for o in outcomes)

    def _timestamp(self, when: datetime | None) -> Any:
        return None if when is None else self._to_db(when)

    def _hard_bounce(self, subscriber_id: int) -> None:
        if self._on_hard_bounce is None:
            return
        try:
            self._on_hard_bounce(subscriber_id)
        except Exception:  # the delivery is recorded; a missed bounce count is not worth a stop
            log.exception("could not count a hard bounce for subscriber %s", subscriber_id)
