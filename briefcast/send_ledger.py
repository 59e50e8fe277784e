"""The send ledger: once-only sending for the channels that call a remote service.

One row per part a channel sends (a social post, a page of the public site, a plug-in's
upload), keyed by :class:`SendKey` (brief, channel, target, part): the unique key makes a
second row, and so a second send of one part, impossible. The email newsletter has its own
ledger, specialised for speed (:mod:`briefcast.delivery.ledger`); this one is for the few
calls a brief makes elsewhere, one commit before and one after each.

The states of a part::

    (no row) ─┐
    queued ───┼─ record_attempt ─▶ sending ─┬─ record_sent ─────────────▶ sent     (final)
    failed ───┘   (attempts + 1,            ├─ record_failed(retry=True) ─▶ queued
                   durable before           ├─ record_failed(retry=False) ▶ failed
                   the call)                ├─ record_unknown ───────────▶ unknown
                                            └─ the process dies ─────────▶ (stays sending)

    sending, found by a later run ─────────────────────────────────────▶ unknown
    unknown ─ record_attempt(resend_unknown=True) ─▶ sending

- ``sent``: the remote service took it (``remote_id`` is what it answered, e.g. a post's
  id); never attempted again.
- ``queued`` and ``failed``: known not sent, so trying again can never make a duplicate;
  ``queued`` is worth another try (rate limited, service down), ``failed`` was refused for
  good (bad credentials, content rejected) and is tried again only by a later run.
- ``sending``: durable *before* the call, its outcome durable after it. A row still
  ``sending`` when a later run looks belongs to a run that died during the call.
- ``unknown``: the call may or may not have reached the service (a timeout after the
  request went out, a crash). Never resent unless asked (``resend_unknown``, the
  equivalent of ``--resend-unknown``): some services would show it twice.

Like the email ledger, the ledger tells a run apart from a crashed one by time, not by
owner: one run per brief and channel at a time. Hold
``briefcast.delivery.lock.sending(store, f"{channel}:{brief_id}")`` around a brief's
sends, or a second run at once would call the first one's ``sending`` rows ``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from briefcast.store import Store, as_aware, sends

REPLY_MAX = 1000  # characters of a remote service's reply kept in the ledger
_INTERRUPTED = "interrupted while sending: it may or may not have reached the service"


class SendStatus(StrEnum):
    """sends.status. A member is its string, so the database and the summaries see the
    bare value."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class SendKey(NamedTuple):
    """One part of a brief sent by one channel to one target: the unit sent once."""

    brief_id: str
    channel: str  # e.g. "mastodon", "site", a plug-in's name
    target: str = ""  # an account, a site, a list; "" when the channel has only one
    part: str = ""  # e.g. "post-1", "page-en"; "" when the brief is one part


def _length(column: str) -> int:
    length = getattr(sends.c[column].type, "length", None)
    assert isinstance(length, int), column
    return length


# A key's fields, each at most as long as its column takes.
_KEY_LIMITS = {field: _length(field) for field in SendKey._fields}


class Attempt(NamedTuple):
    """A part durably marked ``sending``: the caller may now make its call."""

    key: SendKey
    number: int  # 1 for the first attempt
    previous: str | None  # the status before (None: never attempted); "unknown" on a resend


class SendRecord(NamedTuple):
    """A part's row in the ledger."""

    key: SendKey
    status: str
    attempts: int
    remote_id: str | None
    last_reply: str | None
    created_at: datetime
    updated_at: datetime


class Sent(NamedTuple):
    """What a successful call returns to :meth:`SendLedger.send_once`."""

    remote_id: str | None
    reply: str = ""


class SendFailed(Exception):
    """Raised by a call the service refused, so that nothing was sent; ``retry``: worth
    trying again (``queued``), else refused for good (``failed``)."""

    def __init__(self, reply: str, *, retry: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.retry = retry


class SendUnknown(Exception):
    """Raised by a call whose request may have reached the service (e.g. a timeout after
    it went out): recorded ``unknown``, not resent unless asked."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class Outcome(NamedTuple):
    """What :meth:`SendLedger.send_once` did: the row as it is now, and whether the call
    was made (False: sent already, or unknown and not resent)."""

    record: SendRecord
    called: bool


class SendLedger:
    """Once-only sending over the ``sends`` table; every method commits before it returns."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = store.engine
        self._clock = clock or (lambda: datetime.now(UTC))
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            self._insert: Any = sqlite.insert(sends)
        elif dialect == "postgresql":
            self._insert = postgresql.insert(sends)
        else:
            raise NotImplementedError(
                f"the send ledger supports sqlite and postgresql, not {dialect}"
            )

    def record_attempt(self, key: SendKey, *, resend_unknown: bool = False) -> Attempt | None:
        """Durably mark the part ``sending`` and count the attempt, before the call; None
        when it must not be sent: ``sent`` already, or ``unknown`` (a ``sending`` row left by
        a dead run becomes ``unknown`` here) and not ``resend_unknown``."""
        _check(key)
        now = self._clock()
        with self._engine.begin() as conn:
            inserted = conn.execute(
                self._insert.values(
                    **key._asdict(),
                    status=SendStatus.QUEUED,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=list(SendKey._fields))
                .returning(sends.c.id)
            ).first()
            # Compare-and-set on the status just read: of two runs racing for one part
            # (which the per-brief lock should prevent), one claims it, the other looks again.
            while True:
                status, attempts = conn.execute(
                    select(sends.c.status, sends.c.attempts).where(_where(key))
                ).one()
                if status == SendStatus.SENT:
                    return None
                if status in (SendStatus.SENDING, SendStatus.UNKNOWN) and not resend_unknown:
                    if status == SendStatus.SENDING:
                        self._set(
                            conn,
                            key,
                            SendStatus.SENDING,
                            status=SendStatus.UNKNOWN,
                            last_reply=_INTERRUPTED,
                        )
                    return None
                if self._set(
                    conn, key, status, status=SendStatus.SENDING, attempts=sends.c.attempts + 1
                ):
                    previous = SendStatus.UNKNOWN if status == SendStatus.SENDING else status
                    return Attempt(key, attempts + 1, None if inserted else previous)

    def record_sent(self, key: SendKey, remote_id: str | None, reply: str = "") -> None:
        """The service took the part: ``sent``, whatever the row said (even ``unknown``:
        what the service answered settles it)."""
        self._settle(key, SendStatus.SENT, reply, remote_id=remote_id, over_sent=True)

    def record_failed(self, key: SendKey, reply: str, *, retry: bool) -> None:
        """The service refused the part, nothing was sent: ``queued`` to try again, else
        ``failed``. A part ``sent`` already stays so."""
        self._settle(key, SendStatus.QUEUED if retry else SendStatus.FAILED, reply)

    def record_unknown(self, key: SendKey, reply: str) -> None:
        """The call may or may not have reached the service. A part ``sent`` stays so."""
        self._settle(key, SendStatus.UNKNOWN, reply)

    def get(self, key: SendKey) -> SendRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(sends).where(_where(key))).first()
        return _record(row) if row else None

    def for_brief(self, brief_id: str, channel: str | None = None) -> list[SendRecord]:
        """The brief's parts (of one channel, if given), by channel, target and part."""
        query = select(sends).where(sends.c.brief_id == brief_id)
        if channel is not None:
            query = query.where(sends.c.channel == channel)
        query = query.order_by(sends.c.channel, sends.c.target, sends.c.part)
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def recover(self, brief_id: str, channel: str) -> int:
        """Rows still ``sending`` belong to a run that died during its call: ``unknown``.
        Call holding the brief's lock, before sending; returns how many."""
        with self._engine.begin() as conn:
            return conn.execute(
                update(sends)
                .where(
                    sends.c.brief_id == brief_id,
                    sends.c.channel == channel,
                    sends.c.status == SendStatus.SENDING,
                )
                .values(
                    status=SendStatus.UNKNOWN, last_reply=_INTERRUPTED, updated_at=self._clock()
                )
            ).rowcount

    def send_once(
        self,
        key: SendKey,
        fn: Callable[[Attempt], Sent],
        *,
        resend_unknown: bool = False,
    ) -> Outcome:
        """Make one remote call at most once: recorded ``sending`` before ``fn`` runs and its
        outcome after. ``fn`` returns :class:`Sent`, raises :class:`SendFailed` (nothing was
        sent) or :class:`SendUnknown`; any other exception is recorded ``unknown`` (the
        request may have gone out) and raised again. A crash inside ``fn`` leaves
        ``sending``, which the next run takes for ``unknown``."""
        attempt = self.record_attempt(key, resend_unknown=resend_unknown)
        if attempt is None:
            record = self.get(key)
            assert record is not None
            return Outcome(record, called=False)
        try:
            sent = fn(attempt)
        except SendFailed as exc:
            self.record_failed(key, exc.reply, retry=exc.retry)
        except SendUnknown as exc:
            self.record_unknown(key, exc.reply)
        except BaseException as exc:
            self.record_unknown(key, f"{type(exc).__name__}: {exc}")
            raise
        else:
            self.record_sent(key, sent.remote_id, sent.reply)
        record = self.get(key)
        assert record is not None
        return Outcome(record, called=True)

    def _set(self, conn: Connection, key: SendKey, was: str, **values: Any) -> bool:
        result = conn.execute(
            update(sends)
            .where(_where(key), sends.c.status == was)
            .values(updated_at=self._clock(), **values)
        )
        return result.rowcount == 1

    def _settle(
        self,
        key: SendKey,
        status: str,
        reply: str,
        *,
        remote_id: str | None = None,
        over_sent: bool = False,
    ) -> None:
        _check(key)
        query = update(sends).where(_where(key))
        if not over_sent:  # never turn a sent part back into one that may be sent again
            query = query.where(sends.c.status != SendStatus.SENT)
        values: dict[str, Any] = {
            "status": status,
            # PostgreSQL refuses NUL in text, and a service's reply may hold one.
            "last_reply": reply[:REPLY_MAX].replace("\x00", "") or None,
            "updated_at": self._clock(),
        }
        if remote_id is not None:
            values["remote_id"] = remote_id.replace("\x00", "")
        with self._engine.begin() as conn:
            if conn.execute(query.values(values)).rowcount:
                return
            if conn.execute(select(sends.c.id).where(_where(key))).first() is None:
                raise LookupError(f"no send recorded for {key}: call record_attempt first")


def _check(key: SendKey) -> None:
    """Before any call: a key the database would refuse must not wait until after it."""
    for field, limit in _KEY_LIMITS.items():
        value = getattr(key, field)
        if not isinstance(value, str):
            raise TypeError(f"send key {field} must be a string, not {type(value).__name__}")
        if len(value) > limit or "\x00" in value:
            raise ValueError(f"send key {field} is over {limit} characters or holds NUL")
    if not key.brief_id or not key.channel:
        raise ValueError("a send key needs a brief_id and a channel")


def _where(key: SendKey) -> Any:
    return (
        (sends.c.brief_id == key.brief_id)
        & (sends.c.channel == key.channel)
        & (sends.c.target == key.target)
        & (sends.c.part == key.part)
    )


def _record(row: Any) -> SendRecord:
    return SendRecord(
        key=SendKey(row.brief_id, row.channel, row.target, row.part),
        status=row.status,
        attempts=row.attempts,
        remote_id=row.remote_id,
        last_reply=row.last_reply,
        created_at=as_aware(row.created_at),
        updated_at=as_aware(row.updated_at),
    )
