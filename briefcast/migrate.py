"""Run the schema's migrations (briefcast/migrations) on a database, with Alembic.

Three kinds of database reach :func:`upgrade`:

- a new, empty one: every revision runs, from the baseline on;
- one made before migrations existed (briefcast 0.1's ``create_all``: its tables, no
  ``alembic_version``): it is stamped at the baseline, keeping its data (a baseline table an
  older briefcast had not made yet is created first), then upgraded;
- one behind the newest revision: the revisions after its own run.

A database at a revision this briefcast does not know (a newer briefcast migrated it) is
refused with :class:`SchemaError`: nothing is changed.

Every upgrade runs in one transaction, under a lock, and looks at the database again once
it holds the lock, so processes that open a new database at once wait for the first one and
then find nothing left to do:

- SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock (the others wait for it, up
  to :data:`LOCK_WAIT` seconds), on a connection of its own where the transaction covers the
  DDL too (Python's sqlite3 would otherwise commit each CREATE TABLE on its own);
- PostgreSQL: a transaction-scoped advisory lock (``pg_advisory_xact_lock``), let go at
  commit, rollback, or the holder's death; its DDL is transactional already.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, pool, text

from briefcast.errors import UserError
from briefcast.migrations import BASELINE, BASELINE_TABLES, HEAD, SCRIPT_LOCATION

LOCK_WAIT = 60  # seconds a process waits for another one's upgrade to finish
_ADVISORY_KEY = int.from_bytes(
    hashlib.sha256(b"briefcast schema migrations").digest()[:8], "big", signed=True
)


class SchemaError(UserError):
    """The database's schema is one this briefcast cannot use or upgrade."""


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: the revision before (None: no ``alembic_version``), the
    revision after, and whether a database made before migrations was stamped."""

    before: str | None
    after: str
    adopted: bool = False

    @property
    def changed(self) -> bool:
        return self.adopted or self.before != self.after


@dataclass(frozen=True)
class Status:
    """Where a database's schema stands (see :func:`status`)."""

    revision: str | None
    # head | behind | ahead (a newer briefcast's) | empty | legacy (made before migrations)
    state: str


def config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """Alembic's configuration, built in code: the scripts inside the package, and the
    connection to migrate (or, for a developer's own Alembic commands, a URL)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def script_head() -> str | None:
    """The newest revision among the scripts (the tests check it is :data:`HEAD`)."""
    return ScriptDirectory.from_config(config()).get_current_head()


def upgrade(engine: Engine) -> Upgrade:
    """Bring the database's schema to the newest revision (see the module's docstring)."""
    with _locked(engine) as conn:
        cfg = config(conn)
        before = _current(conn)
        _check_known(before)
        adopted = False
        if before is None and BASELINE_TABLES & set(inspect(conn).get_table_names()):
            # Made by create_all before migrations: the baseline's DDL is what made it.
            baseline().metadata.create_all(conn, checkfirst=True)
            command.stamp(cfg, BASELINE)
            adopted = True
        if before != HEAD:
            command.upgrade(cfg, "head")
        after = _current(conn)
    assert after is not None
    return Upgrade(before, after, adopted)


def status(engine: Engine) -> Status:
    """Where the schema stands, without changing anything."""
    with engine.connect() as conn:
        revision = _current(conn)
        if revision is None:
            legacy = BASELINE_TABLES & set(inspect(conn).get_table_names())
            return Status(None, "legacy" if legacy else "empty")
    if revision == HEAD:
        return Status(revision, "head")
    try:
        _check_known(revision)
    except SchemaError:
        return Status(revision, "ahead")
    return Status(revision, "behind")


def baseline() -> ModuleType:
    """The baseline revision's module, whose ``metadata`` is briefcast 0.1's frozen schema."""
    return importlib.import_module(f"briefcast.migrations.versions.{BASELINE}_baseline")


def _current(conn: Connection) -> str | None:
    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:  # the history is linear: two heads were never made by briefcast
        raise SchemaError(f"the database is at several schema revisions at once: {heads}")
    return heads[0] if heads else None


def _check_known(revision: str | None) -> None:
    if revision is None:
        return
    try:
        found = ScriptDirectory.from_config(config()).get_revision(revision)
    except CommandError:
        found = None
    if found is None:
        raise SchemaError(
            f"the database's schema is at revision {revision}, which this briefcast does not "
            f"know (its newest is {HEAD}): a newer briefcast upgraded it; upgrade briefcast"
        )


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the upgrade lock: committed on success, else rolled back."""
    own: Engine | None = None
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        own = engine = _sqlite_migration_engine(engine)
    try:
        with engine.connect() as conn, conn.begin():  # SQLite: BEGIN IMMEDIATE, waited for
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}s'"))
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
            yield conn
    finally:
        if own is not None:
            own.dispose()


def _sqlite_migration_engine(engine: Engine) -> Engine:
    """A connection of its own for SQLite's upgrade: the driver leaves transactions to us,
    so BEGIN IMMEDIATE covers the DDL too and takes the write lock before anything is read.
    Foreign keys stay off (SQLite's default), as Alembic's batch mode needs to copy a table."""
    own = create_engine(engine.url, poolclass=pool.NullPool, connect_args={"timeout": LOCK_WAIT})

    @event.listens_for(own, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        # The journal mode Store's connections use, settled before the first table exists.
        dbapi_conn.execute("PRAGMA journal_mode=WAL").close()

    @event.listens_for(own, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return own
