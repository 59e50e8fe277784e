"""One sender per brief, or per batch of a brief's subscribers, at a time, across processes
and machines sharing the database.

Two runs sending the same rows would each read the other's ``sending`` rows as a crashed
run's and call them ``unknown``, and race for the same queued rows. The lock is held for the
whole send and let go by the system if the holder dies (kill -9 included):

- SQLite: ``flock`` on small files beside the database;
- PostgreSQL: session advisory locks, on a connection kept open for the send.

Two levels, so that the batches of one brief can be sent in parallel:

- a whole-brief run (``subscribers=None``) holds the brief's lock **exclusively**;
- a batch run (``subscribers=(first_id, last_id)``) holds the brief's lock **shared** and
  the batch's own lock (brief and range) exclusively.

So batches with different ranges run side by side; the same batch twice is refused (its
range lock); a whole-brief run is refused while any batch of the brief runs, and every batch
while a whole-brief run does (the brief lock). The batch lock is taken on its exact range:
batches sent at the same time must not overlap, as those of ``ledger.subscriber_batches``
never do.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import Connection, text

from briefcast.store import Store, sqlite_file

POLL_SECONDS = 0.1


class BriefBusy(Exception):
    """Another run is sending this brief (or this batch of it)."""


def _key(brief_id: str, subscribers: tuple[int, int] | None = None) -> bytes:
    name = brief_id if subscribers is None else f"{brief_id}\0{subscribers[0]}-{subscribers[1]}"
    return hashlib.sha256(name.encode()).digest()


@contextmanager
def sending(
    store: Store,
    brief_id: str,
    wait: float = 10.0,
    *,
    subscribers: tuple[int, int] | None = None,
) -> Iterator[None]:
    """Hold the send lock of the brief, or of one batch of its subscribers (ids ``first``
    to ``last``, both included); waits up to ``wait`` seconds in all (a run that was just
    told to stop finishes its messages in flight), then raises BriefBusy."""
    dialect = store.engine.dialect.name
    database = sqlite_file(store.engine.url)
    deadline = time.monotonic() + wait
    what = _what(brief_id, subscribers)
    if database is not None:
        folder = Path(database).with_name(Path(database).name + ".sending")
        folder.mkdir(exist_ok=True)
        with _brief_and_batch(
            lambda key, shared: _file_lock(folder, key, shared, what, deadline),
            brief_id,
            subscribers,
        ):
            yield
    elif dialect == "postgresql":
        with store.engine.connect() as conn:
            # Autocommit: the locks belong to the session, not to a transaction left open.
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            with _brief_and_batch(
                lambda key, shared: _advisory_lock(conn, key, shared, what, deadline),
                brief_id,
                subscribers,
            ):
                yield
    else:  # an in-memory database lives and dies with this process: nobody to race
        yield


@contextmanager
def _brief_and_batch(
    lock: Callable[[bytes, bool], AbstractContextManager[None]],
    brief_id: str,
    subscribers: tuple[int, int] | None,
) -> Iterator[None]:
    """The two levels on either database: the brief's lock (``lock(key, shared)``), shared
    by a batch run, then the batch's own range, exclusive."""
    with ExitStack() as held:
        held.enter_context(lock(_key(brief_id), subscribers is not None))
        if subscribers is not None:
            held.enter_context(lock(_key(brief_id, subscribers), False))
        yield


def _what(brief_id: str, subscribers: tuple[int, int] | None) -> str:
    if subscribers is None:
        return f"brief {brief_id}"
    return f"brief {brief_id} (subscribers {subscribers[0]}-{subscribers[1]})"


@contextmanager
def _file_lock(
    folder: Path, key: bytes, shared: bool, what: str, deadline: float
) -> Iterator[None]:
    fd = os.open(folder / f"{key.hex()[:32]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        _retry(lambda: _try_flock(fd, mode), what, deadline)
        yield
    finally:
        os.close(fd)  # closing lets the lock go


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _advisory_lock(
    conn: Connection, key: bytes, shared: bool, what: str, deadline: float
) -> Iterator[None]:
    number = int.from_bytes(key[:8], "big", signed=True)
    suffix = "_shared" if shared else ""
    take = text(f"SELECT pg_try_advisory_lock{suffix}(:key)").bindparams(key=number)
    _retry(lambda: bool(conn.execute(take).scalar_one()), what, deadline)
    try:
        yield
    finally:
        conn.execute(text(f"SELECT pg_advisory_unlock{suffix}(:key)").bindparams(key=number))


def _retry(attempt: Callable[[], bool], what: str, deadline: float) -> None:
    while not attempt():
        if time.monotonic() >= deadline:
            raise BriefBusy(
                f"{what} is being sent by another run; "
                "try again once it has finished (nothing was sent by this one)"
            )
        time.sleep(POLL_SECONDS)
