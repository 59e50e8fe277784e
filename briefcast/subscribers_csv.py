"""Subscribers from and to CSV: ``import_csv`` a file, ``export_csv`` every subscriber.

Plain functions over a :class:`~briefcast.store.Store`, with the same checks as adding one
subscriber (:mod:`briefcast.subscribers`); nothing here prints. An export re-imports
unchanged, although a cell a spreadsheet would run as a formula is written neutralised.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from sqlalchemy import bindparam, select, true, update
from sqlalchemy.exc import IntegrityError

from briefcast.config import Settings
from briefcast.safe_io import SNIFF_BYTES, UnsafeFile, read_regular
from briefcast.store import Store, subscribers
from briefcast.subscribers import (
    ImportFileError,
    SubscriberError,
    SubscriberStatus,
    check_language,
    check_status,
    next_status,
    normalize_address,
    normalize_name,
    stamp,
    walk,
)

IMPORT_BATCH = 1000
EXPORT_COLUMNS = ("email", "language", "name", "status")
FALLBACK_ENCODING = "cp1252"  # Excel on Windows saves "CSV" in the ANSI code page
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Another import may insert the same addresses between our SELECT and our INSERT; each retry
# sees what it wrote, so more than a few conflicts in a row means something else is wrong.
WRITE_ATTEMPTS = 5


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


# --- export -------------------------------------------------------------------------------


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
    for sub in walk(store, true(), 1000):
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
    elif b"\x00" in data[:SNIFF_BYTES]:
        raise ImportFileError(f"{path}: is a binary file, not CSV")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode(FALLBACK_ENCODING)
            except UnicodeDecodeError:
                raise ImportFileError(f"{path}: is neither UTF-8 nor Windows-1252 text") from None
    head = text[:SNIFF_BYTES]
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
        normalize_name(layout.cell(values, layout.name)),
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
    now = stamp()
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
                        "status": row.status or SubscriberStatus.ACTIVE,
                        "hard_bounces": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                continue
            status, refused = next_status(old.status, row.status)
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
