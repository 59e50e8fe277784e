"""Show and upgrade the database's schema (the migrations shipped with briefcast)."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from briefcast.cli import startup
from briefcast.cli.output import fail, first_line
from briefcast.migrations import BASELINE, HEAD
from briefcast.store import make_engine, sqlite_file

db_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
out = Console(highlight=False, soft_wrap=True, markup=False)


def _url() -> str:
    return startup.settings().database.url


def _engine(url: str) -> Engine:
    try:
        return make_engine(url)
    except ArgumentError:
        fail("database: [database] url is not a database URL (e.g. sqlite:///briefcast.db)")
    except (SQLAlchemyError, ImportError) as exc:
        _fail_database(exc, url)


def _fail_database(exc: BaseException, url: str) -> NoReturn:
    # Never the URL itself, nor its password: a message may quote them.
    message = first_line(exc)
    secrets = [url]
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password:
        secrets.append(str(password))
    for secret in secrets:
        message = message.replace(secret, "***")
    fail(f"database: {message}")


@db_app.command()
def upgrade() -> None:
    """Bring the schema up to date (creating it in a new database); safe to run again.
    Every command does this too when it opens the database."""
    from briefcast import migrate  # Alembic: for these commands only (Store imports it when behind)

    url = _url()
    engine = _engine(url)
    try:
        done = migrate.upgrade(engine)
    except migrate.SchemaError as exc:
        fail(str(exc))
    except (SQLAlchemyError, ImportError, OSError) as exc:
        _fail_database(exc, url)
    finally:
        engine.dispose()
    if done.adopted:
        out.print(
            f"a database made before migrations: stamped at {BASELINE} (baseline), "
            f"upgraded to {done.after} (head)"
        )
    elif done.before is None:
        out.print(f"created the schema at {done.after} (head)")
    elif done.changed:
        out.print(f"upgraded the schema from {done.before} to {done.after} (head)")
    else:
        out.print(f"already up to date: {done.after} (head)")


@db_app.command()
def current() -> None:
    """Print the schema's revision; changes nothing."""
    from briefcast import migrate

    url = _url()
    engine = _engine(url)
    upgrade_hint = "`briefcast db upgrade`, or any command that opens the database"
    try:
        database = sqlite_file(engine.url)
        # A SQLite file that is not there is not made here: this command changes nothing.
        if database is not None and not Path(database).exists():
            out.print(f"none: no database yet ({upgrade_hint}, creates it at {HEAD})")
            return
        state = migrate.status(engine)
    except (SQLAlchemyError, ImportError) as exc:
        _fail_database(exc, url)
    finally:
        engine.dispose()
    messages = {
        "head": f"{state.revision} (head)",
        "behind": f"{state.revision} (behind head {HEAD}: {upgrade_hint}, upgrades it)",
        "ahead": f"{state.revision} (newer than this briefcast's head {HEAD}: upgrade briefcast)",
        "empty": f"none: an empty database ({upgrade_hint}, creates the schema at {HEAD})",
        "legacy": f"none: made before migrations ({upgrade_hint}, stamps it at {BASELINE}, "
        "then upgrades it)",
    }
    out.print(messages[state.state])
