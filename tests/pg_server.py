"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, listening on a
free loopback port only, stopped and deleted at the end. Nothing of the machine's own
PostgreSQL (if any runs) is touched."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from smtp_servers import HOST, free_port

from flows.supervisor.prefect_db import (
    find_bindir as find_bindir,  # moved there; conftest imports it
)

SUPERUSER = "briefcast"
# Durability is no use to a database deleted a minute later; without it commits are cheap.
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
_databases = itertools.count(1)
# Not UTC, as on many a real server: timestamps read back must not depend on the session zone.
TIMEZONE = "America/Los_Angeles"


@dataclass(frozen=True)
class Server:
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{database}"


def _as_owner(folder: Path) -> Callable[[list[str]], list[str]]:
    """initdb and postgres refuse to run as root: as root, run them as the ``postgres``
    user (Debian's package creates it) and give it the folder."""
    if os.geteuid() != 0:
        return lambda cmd: cmd
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, and there is no 'postgres' user to run as") from None
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    return lambda cmd: ["runuser", "-u", "postgres", "--", *cmd]


def _ram_folder() -> str | None:
    """/dev/shm when it has room: CREATE DATABASE copies its template, ten times faster in
    memory than on disk even without fsync. Docker's /dev/shm is 64 MB, too small."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30:
        return str(shm)
    return None  # the system's temporary folder


@contextmanager
def postgres_server(bindir: Path) -> Iterator[Server]:
    # Not pytest's tmp_path: its parent folders are private to us, and the server's user
    # must reach the data folder.
    folder = Path(tempfile.mkdtemp(prefix="briefcast-pg-", dir=_ram_folder()))
    data, sockets, log = folder / "data", folder / "sockets", folder / "server.log"
    sockets.mkdir()
    wrap = _as_owner(folder)

    def run(*cmd: str | Path) -> None:
        subprocess.run(wrap([str(c) for c in cmd]), check=True, capture_output=True, timeout=120)

    port = free_port()
    # Its own socket folder: the default one may be missing, or the machine's server's.
    options = f"-c listen_addresses={HOST} -p {port} -k {sockets} -c TimeZone={TIMEZONE} {FAST}"
    try:
        run(
            bindir / "initdb",
            *("-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"),
            *("--no-sync", "--no-instructions"),
        )
        run(bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (exc.stderr or b"").decode(errors="replace")
        detail += log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {detail}") from exc
    try:
        yield Server(port)
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(wrap(stop), capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database(server: Server) -> Iterator[str]:
    """A SQLAlchemy URL to a new, empty database on ``server``, dropped when the block ends.
    Its name has this process's id: pytest-xdist's workers may share a server's name space."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    admin = f"host={HOST} port={server.port} user={SUPERUSER} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            # FORCE: a test that failed may have left a Store's pooled connections open.
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
