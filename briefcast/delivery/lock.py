"""One sender per brief at a time, across processes and machines sharing the database.

Two runs sending the same brief would each read the other's ``sending`` rows as a crashed
run's and call them ``unknown``, and race for the same queued rows. The lock is held for the
whole send and let go by the system if the holder dies (kill -9 included):

- SQLite: ``flock`` on a small file beside the database, one per brief;
- PostgreSQL: a session advisory lock, on a connection kept open for the send.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from briefcast.store import Store

POLL_SECONDS = 0.1


class BriefBusy(Exception):
    """Another run is sending this brief."""


def _key(brief_id: str) -> bytes:
    return hashlib.sha256(brief_id.encode()).digest()


@contextmanager
def sending(store: Store, brief_id: str, wait: float = 10.0) -> Iterator[None]:
    """Hold the brief's send lock; waits up to ``wait`` seconds (a run that was just told
    to stop finishes its messages in flight), then raises BriefBusy."""
    dialect = store.engine.dialect.name
    database = store.engine.url.database
    if dialect == "sqlite" and database and database != ":memory:":
        with _file_lock(Path(database), brief_id, wait):
            yield
    elif dialect == "postgresql":
        with _advisory_lock(store, brief_id, wait):
            yield
    else:  # an in-memory database lives and dies with this process: nobody to race
        yield


@contextmanager
def _file_lock(database: Path, brief_id: str, wait: float) -> Iterator[None]:
    folder = database.with_name(database.name + ".sending")
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / f"{_key(brief_id).hex()[:32]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _retry(lambda: _try_flock(fd), brief_id, wait)
        yield
    finally:
        os.close(fd)  # closing lets the lock go


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _advisory_lock(store: Store, brief_id: str, wait: float) -> Iterator[None]:
    key = int.from_bytes(_key(brief_id)[:8], "big", signed=True)
    with store.engine.connect() as conn:
        # Autocommit: the lock belongs to the session, not to a transaction left open.
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        take = text("SELECT pg_try_advisory_lock(:key)").bindparams(key=key)
        _retry(lambda: bool(conn.execute(take).scalar_one()), brief_id, wait)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)").bindparams(key=key))


def _retry(attempt: Callable[[], bool], brief_id: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not attempt():
        if time.monotonic() >= deadline:
            raise BriefBusy(
                f"brief {brief_id} is being sent by another run; "
                "try again once it has finished (nothing was sent by this one)"
            )
        time.sleep(POLL_SECONDS)
