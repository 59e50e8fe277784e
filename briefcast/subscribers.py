"""Subscribers: add, remove, purge and re-status them; walk the active ones for the sender.

Plain functions over a :class:`~briefcast.store.Store`; nothing here prints. Addresses are
normalised by email-validator and lower-cased, so one person is one row whatever the case
they typed. A subscriber is never deleted by ``remove`` (the delivery ledger points at the
row, and the row is what keeps an unsubscribed address from being mailed again).

CSV import and export are in :mod:`briefcast.subscribers_csv`, built on the checks and the
walk here.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Connection, and_, delete, func, select, true, update
from sqlalchemy.exc import IntegrityError

from briefcast.config import Settings
from briefcast.errors import UserError
from briefcast.store import Store, as_aware, deliveries, subscribers


class SubscriberStatus(StrEnum):
    """subscribers.status: a member is its string, so the database, CSV and JSON see the
    bare value."""

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


STATUSES = tuple(SubscriberStatus)
# These people asked not to be mailed, or their mailbox refused us: nothing but an explicit
# set_status() may make them active again.
SUPPRESSED = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)
NAME_MAX = 200  # subscribers.name is String(200): PostgreSQL enforces it, SQLite does not


# Still a ValueError, as it always was, for callers that catch that.
class SubscriberError(UserError, ValueError):
    """Bad input about a subscriber: ``str(error)`` is a one-line reason."""


class ImportFileError(SubscriberError):
    """The import file as a whole is unusable (missing, binary, empty, no header)."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str | None
    language: str
    status: str
    hard_bounces: int
    created_at: datetime
    updated_at: datetime


class AddResult(NamedTuple):
    id: int
    created: bool
    status: str  # the status the subscriber has now
    # True when the address was unsubscribed/bounced/complained and stays so although
    # the caller asked for another status.
    not_reactivated: bool


def normalize_address(raw: str) -> str:
    """The address as stored: email-validator's normal form, lower-cased.

    Lower-casing the local part is not what RFC 5321 promises, but every mailbox provider
    we send to treats it case-insensitively, and it makes the unique index mean "one person"
    on SQLite and PostgreSQL alike.
    """
    text = raw.strip()
    if not text:
        raise SubscriberError("empty address")
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid address {text!r}: {exc}") from None
    return valid.normalized.lower()


def languages_allowed(settings: Settings) -> list[str]:
    return [*settings.site.languages, "both"]


def check_language(language: str, settings: Settings) -> str:
    allowed = languages_allowed(settings)
    code = language.strip().lower()
    if code not in allowed:
        raise SubscriberError(f"unknown language {language!r} (expected {', '.join(allowed)})")
    return code


def check_status(status: str) -> str:
    code = status.strip().lower()
    if code not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (expected {', '.join(STATUSES)})")
    return code


def normalize_name(name: str | None) -> str | None:
    """The display name as stored: whitespace collapsed, NFC; None for none or an empty one."""
    if name is None:
        return None
    name = unicodedata.normalize("NFC", " ".join(name.split()))
    # NUL and friends reach us from UTF-16 "Unicode text" files; PostgreSQL refuses NUL.
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise SubscriberError("name contains control characters")
    if len(name) > NAME_MAX:
        raise SubscriberError(f"name longer than {NAME_MAX} characters")
    return name or None


def next_status(current: str, requested: str | None) -> tuple[str, bool]:
    """(status to store, whether a reactivation was refused)."""
    if requested is None or requested == current:
        return current, False
    if current in SUPPRESSED and requested not in SUPPRESSED:
        return current, True
    return requested, False


def stamp() -> datetime:
    """The time for created_at/updated_at: now, in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


def add(
    store: Store,
    email: str,
    language: str,
    name: str | None = None,
    status: str = SubscriberStatus.ACTIVE,
    *,
    settings: Settings,
) -> AddResult:
    """Add a subscriber, or update the language/name of an existing one.

    An unsubscribed, bounced or complained subscriber keeps that status: re-adding them is
    how mistakes (or an old list) would mail people who said no.
    """
    address = normalize_address(email)
    language = check_language(language, settings)
    requested = check_status(status)
    clean_name = normalize_name(name)
    now = stamp()
    with store.engine.begin() as conn:
        row = conn.execute(
            select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email == address)
        ).first()
        if row is None:
            key = conn.execute(
                subscribers.insert().values(
                    email=address,
                    name=clean_name,
                    language=language,
                    status=requested,
                    hard_bounces=0,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key
            assert key is not None  # an INSERT always has a primary key
            new_id = key[0]
            return AddResult(new_id, True, requested, False)
        new_status, refused = next_status(row.status, requested)
        values: dict[str, Any] = {"language": language, "status": new_status, "updated_at": now}
        if name is not None:  # no --name means "leave the name as it is"
            values["name"] = clean_name
        conn.execute(update(subscribers).where(subscribers.c.id == row.id).values(values))
        return AddResult(row.id, False, new_status, refused)


def remove(store: Store, email: str) -> bool:
    """Mark the subscriber unsubscribed; False when there is no such address.

    A bounced or complained subscriber keeps that status (it is already never mailed, and
    it says more than "unsubscribed").
    """
    address = normalize_address(email)
    with store.engine.begin() as conn:
        row = conn.execute(
            select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email == address)
        ).first()
        if row is None:
            return False
        if row.status not in SUPPRESSED:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == row.id)
                .values(status=SubscriberStatus.UNSUBSCRIBED, updated_at=stamp())
            )
        return True


def purge(store: Store, email: str) -> bool:
    """Delete the subscriber's row; False when there is no such address.

    Refused (SubscriberError, nothing changed) when the delivery ledger mentions them: the
    ledger must keep pointing at a real row.
    """
    address = normalize_address(email)
    with store.engine.begin() as conn:
        sub_id = conn.execute(
            select(subscribers.c.id).where(subscribers.c.email == address)
        ).scalar()
        if sub_id is None:
            return False
        sent = conn.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.subscriber_id == sub_id)
        ).scalar_one()
        if sent:
            raise SubscriberError(
                f"{address} has {sent} delivery record(s) and cannot be purged; "
                "remove it without --purge to unsubscribe it"
            )
        conn.execute(delete(subscribers).where(subscribers.c.id == sub_id))
        return True


def set_status(store: Store, subscriber_id: int, status: str) -> bool:
    """Set any status (this is the explicit override, e.g. confirming a pending address);
    False when there is no such subscriber."""
    status = check_status(status)
    return _set(store, subscriber_id, status=status)


def get(store: Store, subscriber_id: int) -> Subscriber | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber(row) if row is not None else None


def find(store: Store, email: str) -> Subscriber | None:
    """The subscriber with this address (normalised first), if any."""
    address = normalize_address(email)
    with store.engine.connect() as conn:
        row = conn.execute(select(subscribers).where(subscribers.c.email == address)).first()
    return _subscriber(row) if row is not None else None


def add_pending(store: Store, email: str, language: str, *, settings: Settings) -> Subscriber:
    """The double opt-in's first step: a new address becomes ``pending`` in ``language``;
    a known one is returned as it is, whatever its status (nothing about it changes until
    its owner confirms: see :func:`confirm`)."""
    address = normalize_address(email)
    language = check_language(language, settings)
    known = find(store, address)
    if known is not None:
        return known
    now = stamp()
    try:
        with store.engine.begin() as conn:
            conn.execute(
                subscribers.insert().values(
                    email=address,
                    language=language,
                    status=SubscriberStatus.PENDING,
                    hard_bounces=0,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:  # the same address added at the same moment: that one stands
        pass
    added = find(store, address)
    assert added is not None  # inserted, here or by the other request
    return added


def confirm(store: Store, subscriber_id: int, language: str, *, settings: Settings) -> str | None:
    """The double opt-in's second step: a pending (or already active) subscriber becomes
    active, in ``language``. An unsubscribed, bounced or complained one stays so. Returns the
    status afterwards; None when there is no such subscriber."""
    language = check_language(language, settings)
    with store.engine.begin() as conn:
        # One conditional UPDATE: an unsubscribe at the same moment is never undone.
        conn.execute(
            update(subscribers)
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.status.in_([SubscriberStatus.PENDING, SubscriberStatus.ACTIVE]),
            )
            .values(status=SubscriberStatus.ACTIVE, language=language, updated_at=stamp())
        )
        return conn.execute(
            select(subscribers.c.status).where(subscribers.c.id == subscriber_id)
        ).scalar()


def set_language(store: Store, subscriber_id: int, language: str, *, settings: Settings) -> bool:
    """Change the edition a subscriber gets (their status stays); False for no such one."""
    language = check_language(language, settings)
    return _set(store, subscriber_id, language=language)


def _set(store: Store, subscriber_id: int, **values: str) -> bool:
    """Set columns of one subscriber (``updated_at`` too); False when there is none."""
    with store.engine.begin() as conn:
        result = conn.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(**values, updated_at=stamp())
        )
        return result.rowcount == 1


def unsubscribe(store: Store, subscriber_id: int) -> str | None:
    """``remove`` by id (the unsubscribe link): the status afterwards, None for no such
    subscriber. Bounced and complained stay so; doing it twice changes nothing."""
    with store.engine.begin() as conn:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id, subscribers.c.status.not_in(SUPPRESSED))
            .values(status=SubscriberStatus.UNSUBSCRIBED, updated_at=stamp())
        )
        return conn.execute(
            select(subscribers.c.status).where(subscribers.c.id == subscriber_id)
        ).scalar()


def record_hard_bounce(store: Store, subscriber_id: int, threshold: int) -> bool:
    """Count one hard bounce; True when this bounce made the subscriber ``bounced``."""
    with store.engine.begin() as conn:
        return count_hard_bounce(conn, subscriber_id, threshold)


def count_hard_bounce(conn: Connection, subscriber_id: int, threshold: int) -> bool:
    """:func:`record_hard_bounce` inside the caller's transaction (a late bounce is counted
    in the same commit as the report that says so)."""
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    now = stamp()
    # Two conditional UPDATEs instead of read-modify-write: two senders recording bounces
    # at once still count both, and only one of them sees the transition.
    counted = conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(hard_bounces=subscribers.c.hard_bounces + 1, updated_at=now)
    )
    if counted.rowcount != 1:
        raise SubscriberError(f"no subscriber with id {subscriber_id}")
    marked = conn.execute(
        update(subscribers)
        .where(
            subscribers.c.id == subscriber_id,
            subscribers.c.hard_bounces >= threshold,
            subscribers.c.status.in_([SubscriberStatus.ACTIVE, SubscriberStatus.PENDING]),
        )
        .values(status=SubscriberStatus.BOUNCED)
    )
    return marked.rowcount == 1


def mark_complained(conn: Connection, subscriber_id: int) -> bool:
    """A spam complaint: the subscriber is ``complained`` (whatever they were) and never
    mailed again; True when this changed their status. In the caller's transaction."""
    marked = conn.execute(
        update(subscribers)
        .where(
            subscribers.c.id == subscriber_id, subscribers.c.status != SubscriberStatus.COMPLAINED
        )
        .values(status=SubscriberStatus.COMPLAINED, updated_at=stamp())
    )
    return marked.rowcount == 1


def walk(store: Store, where: ColumnElement[bool], batch: int) -> Iterator[Subscriber]:
    """Keyset pagination: one short query per batch, so the sender can write the ledger
    between batches and no transaction stays open for the whole walk."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    last = 0
    while True:
        query = (
            select(subscribers)
            .where(where, subscribers.c.id > last)
            .order_by(subscribers.c.id)
            .limit(batch)
        )
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield _subscriber(row)
        if len(rows) < batch:
            return
        last = rows[-1].id


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        language=row.language,
        status=row.status,
        hard_bounces=row.hard_bounces,
        created_at=as_aware(row.created_at),
        updated_at=as_aware(row.updated_at),
    )


def iter_active(
    store: Store, language: str | None = None, batch: int = 1000
) -> Iterator[Subscriber]:
    """Active subscribers in id order (of one language/edition when given), in batches."""
    where = subscribers.c.status == SubscriberStatus.ACTIVE
    if language is not None:
        where = and_(where, subscribers.c.language == language)
    return walk(store, where, batch)


def list_subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    where = true() if status is None else subscribers.c.status == check_status(status)
    return list(walk(store, where, 1000))
