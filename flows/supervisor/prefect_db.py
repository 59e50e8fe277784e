"""Prefect's own database for the server ``briefcast up`` starts: PostgreSQL when this
machine has it, else SQLite without the heartbeat automations.

Why not SQLite: Prefect's server writes events from several services at once (the event
persister, the automations' triggers, the API). On SQLite those writers contend for its one
write lock and lose: "database is locked" tracebacks, and events moved to the dead-letter
folder after three tries. Among the lost were "completed" events: the heartbeat automation
(flows/supervisor/up.py) then waited for one in vain and marked finished runs Crashed. busy_timeout
does not help: a deferred transaction that read before another wrote cannot upgrade its
lock and fails at once, whatever the timeout (SQLite's SQLITE_BUSY_SNAPSHOT).

So ``briefcast up`` runs a PostgreSQL of its own for Prefect, in ``state_dir/postgres``,
when initdb and postgres are found (Debian: ``apt install postgresql``; no system service
is used or needed). It listens on a free loopback port, no Unix socket, with a password
made at initdb (``state_dir/postgres.password``, mode 0600), and dies with the supervisor.
Run as root, it runs as the ``postgres`` user (PostgreSQL refuses root).

Without PostgreSQL (or with ``[workflow] prefect_database = "sqlite"``) the server keeps
SQLite, and the automations that crash runs on missing heartbeats are not made: a lost
event would crash a finished run. ``briefcast up`` says so in one line.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from briefcast.config import Settings
from flows.supervisor.server import HOST, free_port, spawn

DATA = "postgres"  # in state_dir
PASSWORD = "postgres.password"  # in state_dir
USER = "prefect"
DATABASE = "prefect"
START_TIMEOUT = 60.0
# Like Prefect's SQLite (synchronous=NORMAL): a machine crash may lose the last commits,
# a process crash loses nothing. Prefect writes many small rows; each would wait for fsync.
OPTIONS = ("-c", "synchronous_commit=off", "-c", "max_connections=200", "-c", "log_checkpoints=off")


@dataclass
class PrefectDatabase:
    """What the server is given, and what `briefcast up` says about it."""

    url: str | None  # PREFECT_API_DATABASE_CONNECTION_URL; None: Prefect's SQLite
    kind: str  # "postgresql" or "sqlite"
    note: str  # one line for the user
    process: subprocess.Popen[bytes] | None = None

    @property
    def loses_events(self) -> bool:
        return self.kind == "sqlite"

    def stop(self) -> None:
        """A fast shutdown (SIGINT): open sessions are ended, the data stays consistent."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(2)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class NoPostgres(Exception):
    """PostgreSQL could not be set up here; the message says why."""


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).resolve().parent / "initdb").exists():
        return Path(on_path).resolve().parent
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    # Debian names the folders by major version ("15"; old ones "9.6" sort as the oldest).
    return max(
        debian, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, default=None
    )


def choose(settings: Settings, folder: Path, log: IO[bytes]) -> PrefectDatabase:
    """Prefect's database for the server started with state in ``folder``: a PostgreSQL
    started here (its process returned, to stop with the supervisor) or SQLite."""
    wanted = settings.workflow.prefect_database
    sqlite_file = folder / "prefect" / "prefect.db"
    why = ""
    if wanted == "sqlite":
        why = "[workflow] prefect_database is sqlite"
    elif sqlite_file.exists() and not (folder / DATA).exists():
        # Scheduled sends live in Prefect's database: switching would drop them unseen.
        why = f"{sqlite_file} holds this server's earlier runs (remove it to move)"
    elif (bindir := find_bindir()) is None:
        why = "no PostgreSQL here (initdb, postgres)"
    else:
        try:
            return _postgres(bindir, folder, free_port(), log)
        except NoPostgres as exc:
            if wanted == "postgresql":
                raise
            why = str(exc)
    if wanted == "postgresql":
        raise NoPostgres(why)
    return PrefectDatabase(
        url=None,
        kind="sqlite",
        note=(
            f"Prefect's database is SQLite ({why}): it can lose events under load, so runs "
            "are not crashed on missing heartbeats (a lost worker's runs stay Running); "
            "install PostgreSQL for that"
        ),
    )


def _owner() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as: ourselves, or ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise NoPostgres("running as root, and there is no 'postgres' user to run it as") from None


def _postgres(bindir: Path, folder: Path, port: int, log: IO[bytes]) -> PrefectDatabase:
    owner = _owner()
    uid, gid = (owner.pw_uid, owner.pw_gid) if owner else (None, None)
    data, password_file = folder / DATA, folder / PASSWORD
    if not (data / "PG_VERSION").exists():
        _initdb(bindir, data, password_file, owner)
    password = password_file.read_text().strip()
    command = [
        str(bindir / "postgres"),
        *("-D", str(data), "-p", str(port), "-c", f"listen_addresses={HOST}"),
        *("-c", "unix_socket_directories="),  # loopback TCP only, password required
        *OPTIONS,
    ]
    # In its data folder: the postgres user may not enter the folder `up` runs in.
    process = spawn(command, os.environ, log=log, cwd=data, user=uid, group=gid)
    deadline = time.monotonic() + START_TIMEOUT
    while not _accepts(bindir, port):
        if process.poll() is not None:
            raise NoPostgres(f"PostgreSQL exited with code {process.returncode} (see up.log)")
        if time.monotonic() > deadline:
            process.kill()
            raise NoPostgres(f"PostgreSQL did not start within {START_TIMEOUT:.0f} s")
        time.sleep(0.1)
    url = f"postgresql+asyncpg://{USER}:{password}@{HOST}:{port}/{DATABASE}"
    return PrefectDatabase(
        url=url,
        kind="postgresql",
        note=f"Prefect's database is PostgreSQL ({bindir.parent.name}) in {data}",
        process=process,
    )


def _initdb(bindir: Path, data: Path, password_file: Path, owner: pwd.struct_passwd | None) -> None:
    """A new cluster in ``data`` with the role and database Prefect uses. A half-made one
    (initdb interrupted) is made again."""
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(mode=0o700, parents=True)
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(24) + "\n")
    uid, gid = (owner.pw_uid, owner.pw_gid) if owner else (None, None)
    if owner is not None:
        for path in (data, password_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(command: list[str], stdin: bytes | None = None) -> None:
        try:
            subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                check=True,
                timeout=120,
                cwd=data,
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            text = detail.decode(errors="replace").strip().splitlines()
            shutil.rmtree(data, ignore_errors=True)
            why = text[-1] if text else exc
            raise NoPostgres(f"{Path(command[0]).name} failed: {why}") from exc

    run(
        [
            str(bindir / "initdb"),
            *("-D", str(data), "-U", USER, "--pwfile", str(password_file)),
            *("--auth", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions"),
        ]
    )
    # Single-user mode: the database made before the server ever listens.
    run(
        [str(bindir / "postgres"), "--single", "-D", str(data), "-j", "postgres"],
        stdin=f"CREATE DATABASE {DATABASE};\n".encode(),
    )


def _accepts(bindir: Path, port: int) -> bool:
    """The server takes connections (pg_isready when there, else a TCP connect)."""
    ready = bindir / "pg_isready"
    if ready.exists():
        result = subprocess.run(
            [str(ready), "-q", "-h", HOST, "-p", str(port)], capture_output=True
        )
        return result.returncode == 0
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False
