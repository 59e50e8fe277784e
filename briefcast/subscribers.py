"""Subscribers: add, remove, import and export them; walk the active ones for the sender.

Plain functions over a :class:`~briefcast.store.Store`; nothing here prints. Addresses are
normalised by email-validator and lower-cased, so one person is one row whatever the case
they typed. A subscriber is never deleted by ``remove`` (the delivery ledger points at the
row, and the row is what keeps an unsubscribed address from being mailed again).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, and_, bindparam, delete, func, select, true, update
from sqlalchemy.exc import IntegrityError

from briefcast.config import Settings
from briefcast.errors import UserError
from briefcast.safe_io import UnsafeFile, read_regular
from briefcast.store import Store, as_aware, deliveries, subscribers

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
# These people asked not to be mailed, or their mailbox refused us: nothing but an explicit
# set_status() may make them active again.
SUPPRESSED = frozenset({"unsubscribed", "bounced", "complained"})
IMPORT_BATCH = 1000
EXPORT_COLUMNS = ("email", "language", "name", "status")
NAME_MAX = 200  # subscribers.name is String(200): PostgreSQL enforces it, SQLite does not
FALLBACK_ENCODING = "cp1252"  # Excel on Windows saves "CSV" in the ANSI code page
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Another import may insert the same addresses between our SELECT and our INSERT; each retry
# sees what it wrote, so more than a few conflicts in a row means something else is wrong.
WRITE_ATTEMPTS = 5


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


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass(slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    not_reactivated: int = 0  # rows asking to make a suppressed subscriber active again
    rejected: list[Rejected] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.created + self.updated + self.unchanged


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


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = unicodedata.normalize("NFC", " ".join(name.split()))
    # NUL and friends reach us from UTF-16 "Unicode text" files; PostgreSQL refuses NUL.
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise SubscriberError("name contains control characters")
    if len(name) > NAME_MAX:
        raise SubscriberError(f"name longer than {NAME_MAX} characters")
    return name or None


def _next_status(current: str, requested: str | None) -> tuple[str, bool]:
    """(status to store, whether a reactivation was refused)."""
    if requested is None or requested == current:
        return current, False
    if current in SUPPRESSED and requested not in SUPPRESSED:
        return current, True
    return requested, False


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def add(
    store: Store,
    email: str,
    language: str,
    name: str | None = None,
    status: str = "active",
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
    clean_name = _clean_name(name)
    now = _now()
    with store.engine.begin() as conn:
        row = conn.execute(
            select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email == address)
        ).first()
        if row is None:
            new_id = conn.execute(
                subscribers.insert().values(
                    email=address,
                    name=clean_name,
                    language=language,
                    status=requested,
                    hard_bounces=0,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            return AddResult(new_id, True, requested, False)
        new_status, refused = _next_status(row.status, requested)
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
                .values(status="unsubscribed", updated_at=_now())
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
    with store.engine.begin() as conn:
        result = conn.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(status=status, updated_at=_now())
        )
        return result.rowcount == 1


def record_hard_bounce(store: Store, subscriber_id: int, threshold: int) -> bool:
    """Count one hard bounce; True when this bounce made the subscriber ``bounced``."""
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    now = _now()
    with store.engine.begin() as conn:
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
                subscribers.c.status.in_(["active", "pending"]),
            )
            .values(status="bounced")
        )
        return marked.rowcount == 1


def _walk(store: Store, where: ColumnElement[bool], batch: int) -> Iterator[Subscriber]:
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
            yield Subscriber(
                id=row.id,
                email=row.email,
                name=row.name,
                language=row.language,
                status=row.status,
                hard_bounces=row.hard_bounces,
                created_at=as_aware(row.created_at),
                updated_at=as_aware(row.updated_at),
            )
        if len(rows) < batch:
            return
        last = rows[-1].id


def iter_active(
    store: Store, language: str | None = None, batch: int = 1000
) -> Iterator[Subscriber]:
    """Active subscribers in id order (of one language/edition when given), in batches."""
    where = subscribers.c.status == "active"
    if language is not None:
        where = and_(where, subscribers.c.language == language)
    return _walk(store, where, batch)


def list_subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    where = true() if status is None else subscribers.c.status == check_status(status)
    return list(_walk(store, where, 1000))


def _neutralize(cell: str) -> str:
    """``'`` before a formula-like cell, so a spreadsheet shows it as text (OWASP).

    Also before a cell that only looks escaped (``'=x`` becomes ``''=x``), so that
    :func:`_unneutralize` gives back every value exactly.
    """
    return "'" + cell if cell.lstrip("'").startswith(FORMULA_START) else cell


def _unneutralize(cell: str) -> str:
    """The value :func:`_neutralize` wrote ``cell`` for: addresses may start with ``-`` or
    ``+``, and an export must import back unchanged."""
    return cell[1:] if cell.startswith("'") and _neutralize(cell[1:]) == cell else cell


def export_csv(store: Store, out: TextIO | Path) -> int:
    """Every subscriber, every status (so an export re-imported elsewhere keeps the
    unsubscribed unsubscribed), as UTF-8 CSV; returns the number of rows. A cell that a
    spreadsheet would run as a formula is written with a ``'`` before it."""
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8", newline="") as handle:
            return export_csv(store, handle)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for sub in _walk(store, true(), 1000):
        cells = (sub.email, sub.language, sub.name or "", sub.status)
        writer.writerow([_neutralize(cell) for cell in cells])
        count += 1
    return count


# --- import -------------------------------------------------------------------------------


class _Row(NamedTuple):
    line: int
    email: str
    language: str
    name: str | None
    status: str | None  # None: leave an existing subscriber's status alone


def import_csv(store: Store, path: Path | str, settings: Settings) -> ImportReport:
    """Import ``email,language[,name][,status]`` rows (a header row names the columns).

    The whole file is read and checked before anything is written, so a file that turns
    out to be unusable half way changes nothing. Rejected rows do not stop the good ones.
    """
    path = Path(path)
    text = _read_text(path, settings.input.max_csv_bytes)
    report = ImportReport()
    rows = _parse(path, text, settings, report)
    for start in range(0, len(rows), IMPORT_BATCH):
        _write_batch(store, rows[start : start + IMPORT_BATCH], report)
    return report


def _read_text(path: Path, max_bytes: int) -> str:
    try:
        # Not path.read_bytes(): a FIFO would block it forever, /dev/zero fill the memory.
        data = read_regular(path, max_bytes)
    except UnsafeFile as exc:
        raise ImportFileError(f"{path}: {exc}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise ImportFileError(f"{path}: is not valid UTF-16 text") from None
    elif b"\x00" in data[:65536]:
        raise ImportFileError(f"{path}: is a binary file, not CSV")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode(FALLBACK_ENCODING)
            except UnicodeDecodeError:
                raise ImportFileError(f"{path}: is neither UTF-8 nor Windows-1252 text") from None
    head = text[:65536]
    if sum(1 for ch in head if unicodedata.category(ch) == "Cc" and ch not in "\r\n\t") > 2:
        raise ImportFileError(f"{path}: is a binary file, not CSV")
    if not text.strip():
        raise ImportFileError(f"{path}: is empty")
    return text


class _Layout(NamedTuple):
    """Where each column is in the file's rows."""

    columns: list[str]
    email: int
    language: int
    name: int | None
    status: int | None

    @classmethod
    def from_header(cls, path: Path, header: list[str], line: int) -> _Layout:
        columns = [cell.strip().lower() for cell in header]
        missing = [name for name in ("email", "language") if name not in columns]
        if missing:
            if any("@" in cell for cell in header):
                hint = "the first line looks like data, not a header"
            else:
                hint = f"no {' or '.join(missing)} column"
            raise ImportFileError(
                f"{path}: line {line}: {hint}; the first line must name the columns "
                "email,language[,name]"
            )
        twice = sorted({name for name in columns if name and columns.count(name) > 1})
        if twice:
            raise ImportFileError(f"{path}: line {line}: column {twice[0]!r} appears twice")
        return cls(
            columns,
            columns.index("email"),
            columns.index("language"),
            columns.index("name") if "name" in columns else None,
            columns.index("status") if "status" in columns else None,
        )

    def cell(self, values: list[str], index: int | None) -> str:
        """The stripped value (without the ``'`` our export puts before a formula-like
        cell), or "" when the row stops before that column."""
        if index is None or index >= len(values):
            return ""
        return _unneutralize(values[index].strip())


def _parse(path: Path, text: str, settings: Settings, report: ImportReport) -> list[_Row]:
    first = text.lstrip("\r\n").split("\n", 1)[0]
    # Excel writes ";" in an Italian (or any comma-decimal) locale, and tabs in its UTF-16
    # "Unicode text"; the header line tells which one this file uses (ties go to ",").
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        header = next(row for row in reader if any(cell.strip() for cell in row))
    except StopIteration:
        raise ImportFileError(f"{path}: is empty") from None
    except csv.Error as exc:
        raise ImportFileError(f"{path}: line {reader.line_num}: not CSV ({exc})") from None
    layout = _Layout.from_header(path, header, reader.line_num)
    report.ignored_columns = [c for c in layout.columns if c not in EXPORT_COLUMNS]

    seen: dict[str, int] = {}  # address -> line of its first good row
    rows: list[_Row] = []
    end = reader.line_num
    while True:
        line = end + 1  # a quoted field may span lines: report the line the record starts on
        try:
            values = next(reader)
        except StopIteration:
            return rows
        except csv.Error as exc:
            raise ImportFileError(f"{path}: line {line}: not CSV ({exc})") from None
        end = reader.line_num
        if not any(cell.strip() for cell in values):
            continue
        try:
            row = _parse_row(line, values, layout, settings)
            if row.email in seen:
                raise SubscriberError(f"duplicate of line {seen[row.email]} ({row.email})")
        except SubscriberError as exc:
            report.rejected.append(Rejected(line, str(exc)))
            continue
        seen[row.email] = line
        rows.append(row)


def _parse_row(line: int, values: list[str], layout: _Layout, settings: Settings) -> _Row:
    missing = [c for c in ("email", "language") if getattr(layout, c) >= len(values)]
    if missing:
        raise SubscriberError(f"missing column: {', '.join(missing)}")
    if any(v.strip() for v in values[len(layout.columns) :]):
        raise SubscriberError(
            f"{len(values)} values but the header names {len(layout.columns)} columns "
            "(quote a name that contains the separator)"
        )
    raw_email, raw_language = (
        layout.cell(values, layout.email),
        layout.cell(values, layout.language),
    )
    if not raw_email:
        raise SubscriberError("missing email")
    if not raw_language:
        raise SubscriberError("missing language")
    status = layout.cell(values, layout.status)
    return _Row(
        line,
        normalize_address(raw_email),
        check_language(raw_language, settings),
        _clean_name(layout.cell(values, layout.name)),
        check_status(status) if status else None,
    )


def _write_batch(store: Store, rows: list[_Row], report: ImportReport) -> None:
    """Write one batch in one transaction; counted in ``report`` once it is committed."""
    # Sorted: concurrent imports then take PostgreSQL's row locks in the same order and
    # wait for each other instead of deadlocking.
    rows = sorted(rows, key=lambda row: row.email)
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            done = _try_batch(store, rows)
        except IntegrityError:
            # Another import inserted some of these addresses after our SELECT: the
            # transaction was rolled back, and the next attempt sees its rows.
            if attempt == WRITE_ATTEMPTS:
                raise
            continue
        report.created += done.created
        report.updated += done.updated
        report.unchanged += done.unchanged
        report.not_reactivated += done.not_reactivated
        return


def _try_batch(store: Store, rows: list[_Row]) -> ImportReport:
    done = ImportReport()
    now = _now()
    with store.engine.begin() as conn:
        existing = {
            r.email: r
            for r in conn.execute(
                select(
                    subscribers.c.id,
                    subscribers.c.email,
                    subscribers.c.language,
                    subscribers.c.name,
                    subscribers.c.status,
                ).where(subscribers.c.email.in_([row.email for row in rows]))
            )
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for row in rows:
            old = existing.get(row.email)
            if old is None:
                inserts.append(
                    {
                        "email": row.email,
                        "name": row.name,
                        "language": row.language,
                        "status": row.status or "active",
                        "hard_bounces": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                continue
            status, refused = _next_status(old.status, row.status)
            done.not_reactivated += refused
            # A missing or empty name in the file keeps the name we have.
            name = row.name if row.name is not None else old.name
            if (old.language, old.name, old.status) == (row.language, name, status):
                done.unchanged += 1
                continue
            updates.append({"_id": old.id, "_lang": row.language, "_name": name, "_status": status})
        if inserts:
            conn.execute(subscribers.insert(), inserts)
            done.created = len(inserts)
        if updates:
            updates.sort(key=lambda values: values["_id"])  # same lock order, as above
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == bindparam("_id"))
                .values(
                    language=bindparam("_lang"),
                    name=bindparam("_name"),
                    status=bindparam("_status"),
                    updated_at=now,
                ),
                updates,
            )
            done.updated = len(updates)
    return done
