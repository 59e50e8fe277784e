"""Which delivery a report is about, and what it changes: the ledger row, the subscriber, and
the record that the report was processed (``bounce_reports``), all in one transaction.

A report names its delivery by a signed token only, never by an address it quotes (anyone
can write an address): the return-path token of the envelope recipient (or of the original
message's ``Return-Path``), else the original's ``Message-ID``: ``<brief.edition.OPAQUE@domain>``
(an opaque id, :func:`briefcast.delivery.prepared.opaque_id`), found only as the Message-ID
the ledger recorded for a delivery of that brief; or, from messages sent before it was
opaque, ``<brief.edition.TOKEN@domain>`` with the subscriber's unsubscribe token, which must
also be the Message-ID the ledger recorded for that subscriber. A token whose signature is
wrong is ignored.

Counted once: the report's key is unique in ``bounce_reports``, so a report read again (its
move failed, or the mailbox got it twice) changes nothing; and a delivery is counted as a
hard bounce only when it turns ``bounced``, so two reports about one message count once.
``deliveries.updated_at`` is left alone: it is when the message was sent (the hourly cap and
a send's summary read it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, select, update
from sqlalchemy.dialects import postgresql, sqlite

from briefcast import subscribers as subscriber_store
from briefcast.bounces.reports import Report, ReportKind
from briefcast.delivery import tokens
from briefcast.delivery.ledger import DeliveryStatus
from briefcast.delivery.verp import ReturnPath
from briefcast.store import Store, bounce_reports, deliveries

# Our Message-ID: <brief.edition.OPAQUE@domain> (briefcast.delivery.prepared).
_OPAQUE_MESSAGE_ID = re.compile(
    r"<(?P<brief>[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}@[^<>\s@]+>"
)
# Before: <brief.edition.TOKEN@domain>, the unsubscribe token in it.
_OUR_MESSAGE_ID = re.compile(
    r"<(?P<brief>[A-Za-z0-9_-]+)\.(?P<edition>[A-Za-z0-9_-]+)\."
    r"(?P<token>[1-9][0-9]{0,18}\.[A-Za-z0-9_-]{22})@[^<>\s@]+>"
)


@dataclass(frozen=True)
class Delivery:
    id: int
    subscriber_id: int
    brief_id: str
    status: str


@dataclass(frozen=True)
class Recorded:
    duplicate: bool  # the report had been processed before: nothing changed
    subscriber_marked: bool = False  # this report made the subscriber bounced / complained


class Locator:
    """Finds the delivery a report is about, by its signed tokens."""

    def __init__(self, store: Store, return_path: ReturnPath, secret: str) -> None:
        self._store = store
        self._return_path = return_path
        self._secret = secret

    def find(self, report: Report) -> tuple[Delivery | None, str]:
        """The delivery, or None and why not."""
        forged: set[str] = set()
        missing: list[int] = []
        with self._store.engine.connect() as conn:
            for text in (*report.envelope, *report.return_paths):
                for token, delivery_id in self._return_path.deliveries(text):
                    if delivery_id is None:
                        forged.add(token.lower())
                        continue
                    row = _delivery(conn, delivery_id)
                    if row is not None:
                        return row, "return path"
                    missing.append(delivery_id)
            for text in report.message_ids:
                for m in _OPAQUE_MESSAGE_ID.finditer(text):
                    # Brief ids are slugs: the Message-ID starts with its brief's id, and the
                    # (brief, subscriber) index narrows the search to that brief's rows.
                    # No signature to check first: the ledger is what vouches for it.
                    row = _by_opaque_message_id(conn, m["brief"], m[0])
                    if row is not None:
                        return row, "message id"
                for m in _OUR_MESSAGE_ID.finditer(text):
                    subscriber_id = tokens.verify(self._secret, m["token"])
                    if subscriber_id is None:
                        forged.add(m["token"])
                        continue
                    row = _by_message_id(conn, m["brief"], subscriber_id, m[0])
                    if row is not None:
                        return row, "message id"
        why = "names no delivery of ours"
        if missing:
            why += f" (deliveries {', '.join(map(str, missing[:3]))} are not in the ledger)"
        if forged:
            why += f" ({len(forged)} token(s) with a wrong signature ignored)"
        return None, why


def _delivery(conn: Connection, delivery_id: int) -> Delivery | None:
    row = conn.execute(
        select(
            deliveries.c.id, deliveries.c.subscriber_id, deliveries.c.brief_id, deliveries.c.status
        ).where(deliveries.c.id == delivery_id)
    ).first()
    return Delivery(*row) if row is not None else None


def _by_opaque_message_id(conn: Connection, brief: str, message_id: str) -> Delivery | None:
    columns = (
        deliveries.c.id,
        deliveries.c.subscriber_id,
        deliveries.c.brief_id,
        deliveries.c.status,
    )
    mine = deliveries.c.message_id == message_id
    row = conn.execute(select(*columns).where(deliveries.c.brief_id == brief, mine)).first()
    if row is None:  # a ledger kept under another name than the brief's id: every row
        row = conn.execute(select(*columns).where(mine)).first()
    return Delivery(*row) if row is not None else None


def _by_message_id(
    conn: Connection, brief: str, subscriber_id: int, message_id: str
) -> Delivery | None:
    columns = (
        deliveries.c.id,
        deliveries.c.subscriber_id,
        deliveries.c.brief_id,
        deliveries.c.status,
    )
    mine = (deliveries.c.subscriber_id == subscriber_id, deliveries.c.message_id == message_id)
    # The brief's id is the Message-ID's first part whenever it is a slug (the usual case):
    # the (brief, subscriber) index finds it; otherwise that subscriber's rows are read.
    row = conn.execute(select(*columns).where(deliveries.c.brief_id == brief, *mine)).first()
    if row is None:
        row = conn.execute(select(*columns).where(*mine)).first()
    return Delivery(*row) if row is not None else None


def record(
    store: Store, report: Report, delivery: Delivery, *, threshold: int, now: datetime
) -> Recorded:
    """Apply what ``report`` says about ``delivery``, once (one transaction)."""
    with store.engine.begin() as conn:
        inserted = conn.execute(
            _insert_once(store).returning(bounce_reports.c.id),
            {
                "report_key": report.key,
                "kind": report.kind,
                "delivery_id": delivery.id,
                "subscriber_id": delivery.subscriber_id,
                "detail": report.detail.replace("\x00", ""),
                "processed_at": now,
            },
        ).first()
        if inserted is None:
            return Recorded(duplicate=True)
        row = deliveries.c.id == delivery.id
        detail = report.detail.replace("\x00", "")
        if report.kind == ReportKind.HARD:
            turned = conn.execute(
                update(deliveries)
                .where(row, deliveries.c.status != DeliveryStatus.BOUNCED)
                .values(status=DeliveryStatus.BOUNCED, last_reply=detail)
            ).rowcount
            marked = turned == 1 and subscriber_store.count_hard_bounce(
                conn, delivery.subscriber_id, threshold
            )
            return Recorded(duplicate=False, subscriber_marked=marked)
        # A soft bounce or a complaint: the relay did take the message, so a row whose
        # outcome was unknown (the connection lost after the body) is in fact sent.
        conn.execute(
            update(deliveries)
            .where(row, deliveries.c.status != DeliveryStatus.BOUNCED)
            .values(
                status=case(
                    (deliveries.c.status == DeliveryStatus.UNKNOWN, DeliveryStatus.SENT),
                    else_=deliveries.c.status,
                ),
                last_reply=detail,
            )
        )
        if report.kind == ReportKind.COMPLAINT:
            marked = subscriber_store.mark_complained(conn, delivery.subscriber_id)
            return Recorded(duplicate=False, subscriber_marked=marked)
        assert report.kind == ReportKind.SOFT, report.kind
        return Recorded(duplicate=False)


def _insert_once(store: Store) -> Any:
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(bounce_reports).on_conflict_do_nothing(index_elements=["report_key"])
    if dialect == "postgresql":
        return postgresql.insert(bounce_reports).on_conflict_do_nothing(
            index_elements=["report_key"]
        )
    raise NotImplementedError(f"bounce reports support sqlite and postgresql, not {dialect}")
