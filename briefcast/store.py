"""The archive of briefs (feeds are built from it), via SQLAlchemy Core.

SQLite by default; any SQLAlchemy URL (``postgresql+psycopg://…``) works the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    or_,
    select,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from briefcast.brief import Brief
from briefcast.migrations import HEAD

# The models the code reads and writes. The schema itself is made and changed only by the
# migrations (briefcast/migrations/versions): a change here needs a new revision there, and
# a test checks that the two agree.
metadata = MetaData()
BRIEF_ID_MAX = 200  # briefs.id and every brief_id column

briefs = Table(
    "briefs",
    metadata,
    Column("id", String(BRIEF_ID_MAX), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("data", Text, nullable=False),  # Brief.to_dict() as JSON
    Column("date", DateTime(timezone=True), nullable=False, index=True),
    Column("languages", String(200), nullable=False),  # ",en,it," for a LIKE filter
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # A dry run archives its briefs as drafts: feeds preview them, later runs ignore them.
    Column("published", Boolean, nullable=False, default=False),
)

# Subscribers: address normalised by email-validator and stored lower-cased, so the unique
# index is case-insensitive on every database.
subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200)),
    Column("language", String(10), nullable=False),  # a site language or "both"
    # pending | active | unsubscribed | bounced | complained; only active is ever mailed
    Column("status", String(20), nullable=False, index=True),
    Column("hard_bounces", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The delivery ledger: one row per (brief, subscriber), so a second copy is impossible.
# queued -> sending -> sent | deferred | bounced | unknown
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("brief_id", String(BRIEF_ID_MAX), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("edition", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_reply", Text),
    Column("message_id", String(400)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The run (LedgerWriter) whose claim moved the row to sending: its outcome lands only
    # while the claim is its own (see briefcast.delivery.ledger).
    Column("claim", String(32)),
    UniqueConstraint("brief_id", "subscriber_id", name="uq_delivery_once"),
    # No index on updated_at, though the hourly cap (when set) scans it once per run: every
    # ledger write changes it, and the index doubles what a commit costs while sending.
)

# The general send ledger (briefcast.send_ledger): one row per part a channel sends to a remote
# service (a social post, a page of the public site), so a part is sent once.
# queued -> sending -> sent | failed | unknown
sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("brief_id", String(BRIEF_ID_MAX), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("target", String(300), nullable=False),  # an account, a site; "" when only one
    Column("part", String(200), nullable=False),  # e.g. "post-1", "page-en"; "" when one
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("remote_id", Text),  # the remote service's id for what it made (a post's id)
    Column("last_reply", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("brief_id", "channel", "target", "part", name="uq_send_once"),
)

# Late bounces and complaints (briefcast.bounces): one row per report that was recorded, keyed
# by its Message-ID (or a digest), so that a report read again is never counted twice.
# kind: hard | soft | complaint
bounce_reports = Table(
    "bounce_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("report_key", String(400), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("delivery_id", Integer, ForeignKey("deliveries.id")),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id")),
    Column("detail", Text),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("report_key", name="uq_bounce_report_once"),
)


# The editor's approvals (briefcast.reviews): one row per review flow run, the digest of what
# it previewed. waiting -> approved | refused | cancelled; approved -> scheduled | sending ->
# sent | failed
reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_run_id", String(64), nullable=False),
    Column("brief_id", String(BRIEF_ID_MAX), nullable=False, index=True),
    Column("path", Text, nullable=False),  # the brief file, absolute
    Column("preview", Text, nullable=False),  # its preview folder, absolute
    Column("digest", String(64), nullable=False),
    Column("state", String(20), nullable=False),
    Column("approved_by", String(200)),
    Column("send_at", DateTime(timezone=True)),
    Column("send_flow_run_id", String(64)),
    Column("detail", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The brief's bytes as previewed (0005): the send builds from them, so a worker on
    # another machine needs no shared storage. None for reviews recorded before.
    Column("brief", LargeBinary),
    # The brief's title (0006), one line, for the listings; None before, or when the brief
    # could not be read (a failed review, named by its file).
    Column("title", Text),
    UniqueConstraint("flow_run_id", name="uq_review_flow_run"),
)

# Editors who log in to the editor's pages of briefcast serve (argon2 password hashes), and
# their sessions, stored by the sha256 of the cookie's token (a leaked table opens nothing).
editors = Table(
    "editors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("password_hash", String(300), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", name="uq_editor_name"),
)

editor_sessions = Table(
    "editor_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("editor_id", Integer, ForeignKey("editors.id"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


class Store:
    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        # The schema upgrades itself on open: a database made by an older briefcast (or by
        # briefcast 0.1's create_all, or a brand-new one) is migrated to HEAD by the first
        # command that opens it, under a lock (SQLite's write lock, a PostgreSQL advisory
        # lock), so several first starts at once are safe. A database already at HEAD, the
        # usual case, costs one SELECT on a connection the pool keeps; `briefcast db
        # upgrade` does the same by hand. A database from a newer briefcast is refused.
        try:
            if schema_revisions(self.engine) != [HEAD]:
                from briefcast.migrate import upgrade  # Alembic's import only when behind

                upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        # Each CLI step opens its own Store; close its pooled connections when done.
        self.engine.dispose()

    def archive(self, items: Iterable[Brief], *, published: bool, tz: tzinfo) -> list[Brief]:
        """Upsert briefs; an undated brief takes the time it was first archived, so its
        date (and every feed built from it) stays the same on every later run."""
        now = datetime.now(UTC).replace(microsecond=0)
        out = []
        with self.engine.begin() as conn:
            for brief in items:
                row = conn.execute(
                    select(briefs.c.first_seen_at, briefs.c.published).where(
                        briefs.c.id == brief.id
                    )
                ).first()
                # A brief the pipeline dated already (undated, first seen moments ago) keeps
                # that date as its first sighting: a re-run dates it the same.
                assigned = (
                    brief.date.astimezone(UTC) if brief.date and brief.date_assigned else None
                )
                first_seen = as_aware(row.first_seen_at) if row else assigned or now
                dated = brief.dated(first_seen.astimezone(tz))
                assert dated.date is not None  # dated() gives every brief a date
                values = {
                    "digest": brief.digest,
                    "data": json.dumps(dated.to_dict(), ensure_ascii=False, sort_keys=True),
                    # In UTC: SQLite keeps a datetime's wall-clock time and drops its offset,
                    # so briefs dated in different zones would sort by wall clock, not instant.
                    "date": dated.date.astimezone(UTC),
                    "languages": "," + ",".join(brief.languages) + ",",
                    "updated_at": now,
                    "published": published or bool(row and row.published),
                }
                if row:
                    conn.execute(briefs.update().where(briefs.c.id == brief.id).values(values))
                else:
                    conn.execute(
                        briefs.insert().values(id=brief.id, first_seen_at=first_seen, **values)
                    )
                out.append(dated)
        return out

    def archived(self, ids: Iterable[str]) -> dict[str, tuple[str, str, bool]]:
        """For each of these ids that is archived: its title, source file name and whether
        it is published."""
        query = select(briefs.c.id, briefs.c.data, briefs.c.published).where(
            briefs.c.id.in_(list(ids))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        found = {}
        for row in rows:
            data = json.loads(row.data)
            found[row.id] = (str(data.get("title", "")), str(data.get("source", "")), row.published)
        return found

    def first_seen(self, ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these briefs was first archived (those archived before)."""
        query = select(briefs.c.id, briefs.c.first_seen_at).where(briefs.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return {row.id: as_aware(row.first_seen_at) for row in conn.execute(query)}

    def feed_briefs(
        self, lang: str, limit: int, include: Iterable[str] = (), exclude: Iterable[str] = ()
    ) -> list[Brief]:
        """Newest first: the published archive, plus the drafts named in ``include``, less
        the briefs named in ``exclude`` (the caller has newer versions of them)."""
        query = (
            select(briefs.c.data)
            .where(or_(briefs.c.published, briefs.c.id.in_(list(include))))
            .where(briefs.c.id.not_in(list(exclude)))
            .where(briefs.c.languages.contains(f",{lang},"))
            .order_by(briefs.c.date.desc(), briefs.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Brief.from_dict(json.loads(data)) for (data,) in conn.execute(query)]

    # --- the public site (briefcast.site): the whole published archive, read in pages ------

    def published_briefs(self, batch: int = 200) -> Iterator[Brief]:
        """Every published brief, newest first (same date: by id), read ``batch`` at a time
        by keyset (after the last date and id seen), each batch on a connection of its own:
        memory stays bounded and no read is held open while the caller works. A brief whose
        date changed during the walk is given once."""
        after: tuple[Any, str] | None = None
        seen: set[str] = set()
        while True:
            query = select(briefs.c.id, briefs.c.date, briefs.c.data).where(briefs.c.published)
            if after is not None:
                date, last = after
                query = query.where(
                    or_(briefs.c.date < date, and_(briefs.c.date == date, briefs.c.id > last))
                )
            query = query.order_by(briefs.c.date.desc(), briefs.c.id).limit(batch)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                if row.id not in seen:
                    seen.add(row.id)
                    yield Brief.from_dict(json.loads(row.data))
            if len(rows) < batch:
                return
            after = (rows[-1].date, rows[-1].id)  # as the database gave it: compares exactly

    def published_marks(self, batch: int = 2000) -> Iterator[tuple[str, str, str, str]]:
        """For every published brief, by id: its id, digest, date and last update, which
        change whenever what the site shows of it may (the public site's fingerprint).
        Read ``batch`` at a time by keyset on the id."""
        last = ""
        while True:
            query = (
                select(briefs.c.id, briefs.c.digest, briefs.c.date, briefs.c.updated_at)
                .where(briefs.c.published, briefs.c.id > last)
                .order_by(briefs.c.id)
                .limit(batch)
            )
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield (
                    row.id,
                    row.digest,
                    as_aware(row.date).isoformat(),
                    as_aware(row.updated_at).isoformat(),
                )
            if len(rows) < batch:
                return
            last = rows[-1].id

    def published_by_id(self, ids: Iterable[str], batch: int = 500) -> list[Brief]:
        """These briefs, if published, newest first (same date: by id)."""
        wanted = list(dict.fromkeys(ids))
        found: list[Brief] = []
        for start in range(0, len(wanted), batch):
            query = select(briefs.c.data).where(
                briefs.c.published, briefs.c.id.in_(wanted[start : start + batch])
            )
            with self.engine.connect() as conn:
                found += [Brief.from_dict(json.loads(data)) for (data,) in conn.execute(query)]
        by_id = sorted(found, key=lambda b: b.id)
        return sorted(by_id, key=lambda b: b.date or datetime.min.replace(tzinfo=UTC), reverse=True)


def sqlite_file(url: URL) -> str | None:
    """The file of a SQLite database; None for another database or SQLite's in-memory one."""
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return database
    return None


def make_engine(url: str) -> Engine:
    """An engine for ``url``, with SQLite's pragmas on every connection; no schema check."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def schema_revisions(engine: Engine) -> list[str] | None:
    """The migration revisions the database is at (one, on a linear history), or None
    when it has no ``alembic_version`` table (new, or made before migrations)."""
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:
        # No such table (or no database at all: the upgrade that follows says so properly).
        return None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers and the sender's ledger writes overlap; NORMAL keeps commits cheap
    # while still surviving a killed process (only an OS crash can lose the last commits).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def as_aware(when: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; they were UTC.
    return when if when.tzinfo else when.replace(tzinfo=UTC)
