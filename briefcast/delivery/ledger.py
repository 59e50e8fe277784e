"""The delivery ledger: one row per (brief, subscriber), the truth about who got what.

``queued → sending → sent | deferred | bounced | unknown``. The unique key (brief,
subscriber) makes a second row, and so a second copy, impossible. A row is durably
``sending`` before its body goes out and its outcome is durable before the same connection
starts another message, so after a crash at most one row per connection is still
``sending``: the next run calls it ``unknown`` (it may or may not have arrived) and never
resends it unless asked to.

Exactly once by construction: a run takes a row (``queued``/``deferred`` → ``sending``) by
an UPDATE that only matches while the row is free, and its body goes out only if that UPDATE
took the row (checked row by row). Two runs that read the same row as due (their batch
ranges overlap: the list changed between their starts, or a run wrongly thought crashed
runs on beside its replacement, under other locks than its own) cannot both take it: the
database serialises the two UPDATEs, and the second finds the row ``sending`` (or settled)
and takes nothing. Each writer marks its claims with a random id, and its outcomes land only
on rows it holds or that nobody holds (still ``queued``/``deferred``), so a loser's
hand-back or bounce never overwrites the winner's row. A claim is never taken over: once a
row is ``sending`` its body may have gone, so the only way out for a holder that never
settles it is ``unknown`` (``recover``), resent only on request (``--resend-unknown``). That
is why there is no time lease to expire: expiry could only ever mean ``unknown``, and the
send lock already tells a dead holder (its lock let go) from a live one.

Writes go through :class:`LedgerWriter`, which commits every connection's claims and
outcomes together (group commit): one transaction per few messages, not two per message. On
PostgreSQL, where each statement is a network round trip, a commit is one statement.

A run may be restricted to a batch of subscribers: ``subscribers=(first_id, last_id)``
(inclusive; :func:`subscriber_batches` cuts the active list into such ranges) limits every
function here that reads or changes a brief's rows to the rows of those subscribers, so that
batches of one brief can be sent in parallel, each by its own process or machine.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from sqlalchemy import and_, bindparam, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from briefcast.store import Store, as_aware, deliveries
from briefcast.store import subscribers as subscriber_table
from briefcast.subscribers import SubscriberStatus

log = logging.getLogger(__name__)

REPLY_MAX = 500  # characters of an SMTP reply kept in the ledger


class DeliveryStatus(StrEnum):
    """deliveries.status (see the module's docstring for the moves between them). A member
    is its string, so the database, the summaries and the JSON see the bare value."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    UNKNOWN = "unknown"


# The statuses of an attempted message, whatever came of it (the hourly cap counts them),
# in the order the summaries show them.
ATTEMPTED = (
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.UNKNOWN,
)

SubscriberRange = tuple[int, int]
"""Subscriber ids ``(first, last)``, both included: one batch of a brief's send."""


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
        return self.status != DeliveryStatus.QUEUED


def edition_for(language: str, editions: Collection[str]) -> str:
    """A subscriber's language picks the edition; a language with no edition gets "both"."""
    return language if language in editions else "both"


class Recipient(Protocol):
    """What enqueue needs of a subscriber row."""

    @property
    def id(self) -> int: ...

    @property
    def language(self) -> str: ...


def subscriber_batches(store: Store, size: int, where: Any = None) -> list[SubscriberRange]:
    """The active subscribers (those ``where`` says, an ``Audience.where()``: the brief's
    audience) cut into batches of ``size`` (the last may be smaller), as
    ``(first_id, last_id)`` ranges in id order, disjoint, both ends included: each range
    holds exactly ``size`` of them. Only ids are read, a keyset page at a time,
    so memory stays bounded by ``size`` whatever the list's length.

    The ranges describe the list as it is now: a subscriber who becomes active later with an
    id beyond the last range (or between two ranges) is in none of them; a whole-brief run
    (``subscribers=None``) afterwards mails whoever the batches missed."""
    if size < 1:
        raise ValueError("size must be at least 1")
    ranges: list[SubscriberRange] = []
    last = 0
    if where is None:
        where = subscriber_table.c.status == SubscriberStatus.ACTIVE
    with store.engine.connect() as conn:
        while True:
            query = (
                select(subscriber_table.c.id)
                .where(where, subscriber_table.c.id > last)
                .order_by(subscriber_table.c.id)
                .limit(size)
            )
            first, count = None, 0
            # Streamed: only the first and the last id of the page are kept.
            for (sub_id,) in conn.execution_options(yield_per=10_000).execute(query):
                if first is None:
                    first = sub_id
                last, count = sub_id, count + 1
            if first is None:
                return ranges
            ranges.append((first, last))
            if count < size:
                return ranges


def _of(brief_id: str, subscribers: SubscriberRange | None) -> Any:
    """The brief's rows, of the batch's subscribers only when given."""
    if subscribers is None:
        return deliveries.c.brief_id == brief_id
    first, last = subscribers
    return and_(deliveries.c.brief_id == brief_id, deliveries.c.subscriber_id.between(first, last))


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
                "status": DeliveryStatus.QUEUED,
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


def recover(
    store: Store, brief_id: str, now: datetime, subscribers: SubscriberRange | None = None
) -> int:
    """Rows still ``sending`` belong to a run that died mid-message: their outcome is
    unknown. Call only when no other run is sending these rows: holding the send lock of the
    brief (``subscribers=None``) or of the batch (only that batch's rows are touched)."""
    with store.engine.begin() as conn:
        return conn.execute(
            update(deliveries)
            .where(_of(brief_id, subscribers), deliveries.c.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.UNKNOWN,
                attempts=deliveries.c.attempts + 1,
                last_reply="interrupted while sending: the message may or may not have arrived",
                updated_at=now,
            )
        ).rowcount


def requeue_unknown(
    store: Store, brief_id: str, now: datetime, subscribers: SubscriberRange | None = None
) -> int:
    """The editor chose to resend the messages whose outcome is unknown (--resend-unknown)."""
    with store.engine.begin() as conn:
        return conn.execute(
            update(deliveries)
            .where(_of(brief_id, subscribers), deliveries.c.status == DeliveryStatus.UNKNOWN)
            .values(status=DeliveryStatus.QUEUED, next_attempt_at=None, updated_at=now)
        ).rowcount


def _due(brief_id: str, now: datetime, subscribers: SubscriberRange | None) -> Any:
    return and_(
        _of(brief_id, subscribers),
        subscriber_table.c.status == SubscriberStatus.ACTIVE,
        or_(
            deliveries.c.status == DeliveryStatus.QUEUED,
            and_(
                deliveries.c.status == DeliveryStatus.DEFERRED, deliveries.c.next_attempt_at <= now
            ),
        ),
    )


def count_due(
    store: Store, brief_id: str, now: datetime, subscribers: SubscriberRange | None = None
) -> int:
    query = (
        select(func.count())
        .select_from(
            deliveries.join(subscriber_table, subscriber_table.c.id == deliveries.c.subscriber_id)
        )
        .where(_due(brief_id, now, subscribers))
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def iter_due(
    store: Store,
    brief_id: str,
    now: datetime,
    batch: int = 1000,
    subscribers: SubscriberRange | None = None,
) -> Iterator[Job]:
    """Rows to attempt now, for active subscribers only, in keyset batches over the
    (brief, subscriber) index: memory stays flat whatever the list's size."""
    last = 0 if subscribers is None else subscribers[0] - 1
    while True:
        query = (
            select(  # in Job's field order
                deliveries.c.id,
                deliveries.c.subscriber_id,
                subscriber_table.c.email,
                deliveries.c.edition,
                deliveries.c.attempts,
            )
            .join(subscriber_table, subscriber_table.c.id == deliveries.c.subscriber_id)
            .where(_due(brief_id, now, subscribers), deliveries.c.subscriber_id > last)
            .order_by(deliveries.c.subscriber_id)
            .limit(batch)
        )
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
        yield from (Job._make(row) for row in rows)
        if len(rows) < batch:
            return
        last = rows[-1].subscriber_id


def next_retry_at(
    store: Store, brief_id: str, subscribers: SubscriberRange | None = None
) -> datetime | None:
    """When the earliest deferred message (of an active subscriber) may be tried again."""
    query = (
        select(func.min(deliveries.c.next_attempt_at))
        .select_from(
            deliveries.join(subscriber_table, subscriber_table.c.id == deliveries.c.subscriber_id)
        )
        .where(
            _of(brief_id, subscribers),
            deliveries.c.status == DeliveryStatus.DEFERRED,
            subscriber_table.c.status == SubscriberStatus.ACTIVE,
        )
    )
    with store.engine.connect() as conn:
        when = conn.execute(query).scalar_one_or_none()
    return as_aware(when) if when else None


def counts(
    store: Store,
    brief_id: str,
    since: datetime | None = None,
    subscribers: SubscriberRange | None = None,
) -> Counter[str]:
    """Rows per status; with ``since``, only rows a run changed from then on."""
    query = (
        select(deliveries.c.status, func.count())
        .where(_of(brief_id, subscribers))
        .group_by(deliveries.c.status)
    )
    if since is not None:
        query = query.where(deliveries.c.updated_at >= since)
    with store.engine.connect() as conn:
        return Counter({status: int(n) for status, n in conn.execute(query)})


def by_edition(
    store: Store, brief_id: str, subscribers: SubscriberRange | None = None
) -> Counter[str]:
    """The brief's rows (the subscribers it is for) per edition."""
    query = (
        select(deliveries.c.edition, func.count())
        .where(_of(brief_id, subscribers))
        .group_by(deliveries.c.edition)
    )
    with store.engine.connect() as conn:
        return Counter({edition: int(n) for edition, n in conn.execute(query)})


def addresses(
    store: Store,
    brief_id: str,
    status: str,
    limit: int = 20,
    subscribers: SubscriberRange | None = None,
) -> list[str]:
    query = (
        select(subscriber_table.c.email)
        .join(deliveries, subscriber_table.c.id == deliveries.c.subscriber_id)
        .where(_of(brief_id, subscribers), deliveries.c.status == status)
        .order_by(subscriber_table.c.id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return list(conn.execute(query).scalars())


def attempt_times(store: Store, since: datetime) -> Iterator[datetime]:
    """When each message of any brief attempted since ``since`` was last attempted (for
    the hourly cap, which the relay counts across runs and briefs)."""
    query = select(deliveries.c.updated_at).where(
        deliveries.c.updated_at >= since,
        deliveries.c.status.in_(ATTEMPTED),
    )
    with store.engine.connect() as conn:
        for (when,) in conn.execution_options(yield_per=5000).execute(query):
            yield as_aware(when)


# --- the group-committing writer ----------------------------------------------------------

# A row nobody holds: one a claim may take, and on which an outcome of a job never claimed
# (a refusal at RCPT, a hand-back) may land. Literals, not bound values: the statements are
# compiled once to the driver's SQL text (see _DriverStatement).
_FREE = or_(
    deliveries.c.status == literal_column(f"'{DeliveryStatus.QUEUED}'"),
    deliveries.c.status == literal_column(f"'{DeliveryStatus.DEFERRED}'"),
)
_CLAIM = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), _FREE)
    .values(
        status=bindparam("b_status"),
        message_id=bindparam("b_message_id"),
        claim=bindparam("b_claim"),
        updated_at=bindparam("b_now"),
    )
)
_OUTCOME = (
    update(deliveries)
    # Ours (even if another run's recover called it unknown meanwhile: this is the truth),
    # or nobody's; never a row another run holds or has settled.
    .where(
        deliveries.c.id == bindparam("b_id"),
        or_(deliveries.c.claim == bindparam("b_claim"), _FREE),
    )
    .values(
        status=bindparam("b_status"),
        attempts=deliveries.c.attempts + bindparam("b_attempted"),
        last_reply=bindparam("b_reply"),
        next_attempt_at=bindparam("b_next"),
        updated_at=bindparam("b_now"),
    )
)

# PostgreSQL: a whole group commit as one statement (one round trip, in autocommit: the
# statement is its own transaction), the rows as arrays so the text never changes (psycopg
# prepares it after a few runs). A row claimed and settled in the same group comes once,
# merged: UPDATE ... FROM updates a row once only, whatever the join yields. The same
# conditions as _CLAIM and _OUTCOME: a row claimed in this group must be free (a row claimed
# and handed back in one group is claimed first, so it too); any other row must be ours or
# free. RETURNING names the rows written, so the claims taken. Under READ COMMITTED an UPDATE
# that waited for another's row lock re-checks its WHERE on the row as committed, so of two
# runs claiming one row the second matches nothing. Rows come sorted by id, so two runs lock
# shared rows in the same order and never deadlock on each other.
_PG_GROUP = f"""
UPDATE {deliveries.name} AS d SET
    status = v.status,
    message_id = COALESCE(v.message_id, d.message_id),
    claim = CASE WHEN v.claimed THEN %(claim)s ELSE d.claim END,
    attempts = d.attempts + v.attempted,
    last_reply = CASE WHEN v.settled THEN v.reply ELSE d.last_reply END,
    next_attempt_at = CASE WHEN v.settled THEN v.next_at ELSE d.next_attempt_at END,
    updated_at = %(now)s
FROM unnest(
    %(ids)s::integer[], %(statuses)s::varchar[], %(message_ids)s::varchar[],
    %(attempted)s::integer[], %(settled)s::boolean[], %(replies)s::text[],
    %(next_at)s::timestamptz[], %(claimed)s::boolean[]
) AS v(id, status, message_id, attempted, settled, reply, next_at, claimed)
WHERE d.id = v.id AND (
    d.status IN ('{DeliveryStatus.QUEUED}', '{DeliveryStatus.DEFERRED}')
    OR (NOT v.claimed AND d.claim = %(claim)s)
)
RETURNING d.id
"""


def _reply(outcome: Outcome) -> str | None:
    # PostgreSQL refuses NUL in text, and a relay may send one.
    return outcome.reply[:REPLY_MAX].replace("\x00", "") or None


class _DriverStatement:
    """A statement compiled once for the database's driver and run with the driver's own
    ``executemany``: SQLAlchemy's per-row parameter handling costs several times what
    SQLite's update itself does, at thousands of rows a second. Parameters must already be
    in the driver's types (see ``_Writes.timestamp``)."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order: list[str] | None = compiled.positiontup  # None: named parameters

    def _params(self, rows: list[dict[str, Any]]) -> list[Any]:
        order = self.order
        return [tuple(row[name] for name in order) for row in rows] if order else rows

    def run(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        cursor.executemany(self.sql, self._params(rows))

    def each(self, cursor: Any, rows: list[dict[str, Any]]) -> list[bool]:
        """Row by row: whether each one changed a row (a driver's rowcount after
        executemany is the total at best)."""
        taken = []
        for params in self._params(rows):
            cursor.execute(self.sql, params)
            taken.append(cursor.rowcount == 1)
        return taken


class _Writes:
    """One group commit, on one driver connection kept for the whole send and used directly:
    checking one out per commit, or SQLAlchemy's transaction bookkeeping, costs more than
    the commit. Claims and then outcomes, in one transaction, two ``executemany``."""

    def __init__(self, store: Store, claim: str) -> None:
        self.claim = claim  # this writer's (this run's) claim id, written with its claims
        dialect = store.engine.dialect
        self._claim = _DriverStatement(_CLAIM, dialect)
        self._outcome = _DriverStatement(_OUTCOME, dialect)
        to_db = deliveries.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._to_db: Callable[[datetime], Any] = to_db or (lambda when: when)
        # The driver opens a transaction with the first update; commit() ends it.
        self._conn = store.engine.raw_connection()

    def timestamp(self, when: datetime | None) -> Any:
        return None if when is None else self._to_db(when)

    def write(self, claims: list[Claim], outcomes: list[Outcome], when: datetime) -> list[bool]:
        """Commit the claims and outcomes; returns, claim by claim, whether it was taken."""
        now = self.timestamp(when)
        cursor = self._conn.cursor()
        taken: list[bool] = []
        try:
            # Claims first: a row claimed and settled within one batch (a message handed
            # back before its body went) must end settled, not "sending". Ids in order, so
            # two writers take shared rows' locks in one order (PostgreSQL).
            if claims:
                taken = self._claim.each(
                    cursor,
                    [
                        {
                            "b_id": c.job.delivery_id,
                            "b_status": DeliveryStatus.SENDING,
                            "b_message_id": c.message_id,
                            "b_claim": self.claim,
                            "b_now": now,
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
                            "b_reply": _reply(o),
                            "b_next": self.timestamp(o.next_attempt_at),
                            "b_claim": self.claim,
                            "b_now": now,
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
        return taken

    def close(self) -> None:
        self._conn.close()


class _PostgresWrites(_Writes):
    """A group commit in one statement and one round trip (see ``_PG_GROUP``)."""

    def __init__(self, store: Store, claim: str) -> None:
        super().__init__(store, claim)
        driver = self._conn.driver_connection
        assert driver is not None
        driver.autocommit = True  # both undone before the connection goes back to the pool
        # Planning the statement would cost twice what running it does, at every commit:
        # the generic plan (index scan of the primary key per row) is the right one anyway.
        driver.execute("SET plan_cache_mode = force_generic_plan")

        self._driver: Any = driver

    def write(self, claims: list[Claim], outcomes: list[Outcome], when: datetime) -> list[bool]:
        # id -> [id, status, message_id, attempted, settled, reply, next_attempt_at,
        # claimed]; the claims first, then the outcomes, as the separate updates would
        # apply them.
        rows: dict[int, list[Any]] = {}
        for c in claims:
            rows[c.job.delivery_id] = [
                c.job.delivery_id,
                DeliveryStatus.SENDING,
                c.message_id,
                0,
                False,
            ]
            rows[c.job.delivery_id] += [None, None, True]
        for o in outcomes:
            key = o.job.delivery_id
            before = rows.get(key)
            message_id, attempted = (before[2], before[3]) if before else (None, 0)
            rows[key] = [
                key,
                o.status,
                message_id,
                attempted + int(o.attempted),
                True,
                _reply(o),
                self.timestamp(o.next_attempt_at),
                bool(before and before[7]),  # claimed in this group, then settled
            ]
        names = ("ids", "statuses", "message_ids", "attempted", "settled", "replies", "next_at")
        columns = zip(*(rows[key] for key in sorted(rows)), strict=True)
        params: dict[str, Any] = dict(zip((*names, "claimed"), map(list, columns), strict=True))
        params |= {"now": self.timestamp(when), "claim": self.claim}
        with self._driver.cursor() as cursor:
            cursor.execute(_PG_GROUP, params)
            written = {row[0] for row in cursor.fetchall()}
        return [c.job.delivery_id in written for c in claims]

    def close(self) -> None:
        try:
            self._driver.execute("RESET plan_cache_mode")
            self._driver.autocommit = False
        except Exception:  # a broken connection: never back into the pool
            self._conn.invalidate()
        super().close()


ProgressHook = Callable[[Counter[str]], None]
HardBounceHook = Callable[[int], None]


class LedgerError(RuntimeError):
    """The ledger could not be written: stop sending, or messages could go out twice."""


class Ticket:
    """A claim waiting for its commit: the message's body waits for ``committed``. After
    the commit, ``committed`` false means the row was not free (another run holds or has
    settled it): its body must never go."""

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
        postgres = store.engine.dialect.name == "postgresql"
        claim = secrets.token_hex(16)  # this run's: see the module's docstring
        self._writes = _PostgresWrites(store, claim) if postgres else _Writes(store, claim)

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
            taken = self._writes.write([c for c, _ in claims], outcomes, self._clock())
        except Exception as exc:
            log.exception("ledger write failed")
            self._error = exc
            raise LedgerError(f"the ledger could not be written: {exc}") from exc
        self.commits += 1
        self.outcomes.update(o.status for o in outcomes)
        for (_, ticket), took in zip(claims, taken, strict=True):
            ticket.committed = took
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
            self._writes.close()
        if self._on_progress is not None:
            self._on_progress(self.outcomes)

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> None:
        if self._error is not None:
            raise LedgerError(f"the ledger could not be written: {self._error}")

    def _hard_bounce(self, subscriber_id: int) -> None:
        if self._on_hard_bounce is None:
            return
        try:
            self._on_hard_bounce(subscriber_id)
        except Exception:  # the delivery is recorded; a missed bounce count is not worth a stop
            log.exception("could not count a hard bounce for subscriber %s", subscriber_id)
