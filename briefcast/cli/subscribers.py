"""Import, add, remove, list and export subscribers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from briefcast import subscribers as subs
from briefcast import subscribers_csv as subs_csv
from briefcast.cli import startup
from briefcast.cli.output import err, fail, first_line
from briefcast.config import Settings
from briefcast.store import Store
from briefcast.subscribers import SubscriberStatus

subscribers_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
# Results go to stdout (so `export -` and `list` can be piped); messages and errors to stderr.
# soft_wrap: one-line messages stay one line whatever the terminal's width. No markup on
# stdout: names and reasons come from the file and may contain [brackets].
out = Console(highlight=False, soft_wrap=True, markup=False)


def _open() -> tuple[Settings, Store]:
    settings = startup.settings()
    return settings, startup.store(settings)


@subscribers_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV with a header: email,language[,name]")],
) -> None:
    """Import subscribers from CSV; importing the same file again changes nothing."""
    settings, store = _open()
    try:
        report = subs_csv.import_csv(store, file, settings)
    except subs.ImportFileError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    out.print(
        f"{file}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.rejected)} rejected"
    )
    if report.not_reactivated:
        out.print(
            f"{report.not_reactivated} unsubscribed/bounced/complained subscriber(s) "
            "were left as they are (import never reactivates them)"
        )
    if report.ignored_columns:
        out.print(f"ignored column(s): {', '.join(report.ignored_columns)}")
    if report.rejected:
        table = Table("line", "reason", title="Rejected rows", title_justify="left")
        for rejected in report.rejected:
            table.add_row(str(rejected.line), rejected.reason)
        out.print(table)


@subscribers_app.command()
def add(
    email: Annotated[str, typer.Argument(help="The address.")],
    language: Annotated[str, typer.Option(help="Edition: a site language or 'both'.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    status: Annotated[str, typer.Option(help="pending or active.")] = SubscriberStatus.ACTIVE,
) -> None:
    """Add a subscriber, or change an existing one's language and name."""
    if status.strip().lower() not in (SubscriberStatus.PENDING, SubscriberStatus.ACTIVE):
        fail(f"--status: {status!r} is not pending or active")
    settings, store = _open()
    try:
        result = subs.add(store, email, language, name, status, settings=settings)
    except subs.SubscriberError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    verb = "added" if result.created else "updated"
    out.print(f"{verb} #{result.id} {subs.normalize_address(email)} ({result.status})")
    if result.not_reactivated:
        err.print(
            f"[yellow]note:[/] this address is {result.status} and stays so; it will not be mailed"
        )


@subscribers_app.command()
def remove(
    email: Annotated[str, typer.Argument(help="The address.")],
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Delete the row (only if nothing was ever sent to it)."),
    ] = False,
) -> None:
    """Unsubscribe an address: it stays on file so it is never mailed again."""
    _, store = _open()
    try:
        found = subs.purge(store, email) if purge else subs.remove(store, email)
    except subs.SubscriberError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    address = subs.normalize_address(email)
    if not found:
        fail(f"no subscriber {address}")
    out.print(f"{'purged' if purge else 'unsubscribed'} {address}")


@subscribers_app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="Only this status: " + ", ".join(subs.STATUSES))
    ] = None,
) -> None:
    """Show subscribers as a table."""
    _, store = _open()
    try:
        rows = subs.list_subscribers(store, status)
    except subs.SubscriberError as exc:
        fail(f"--status: {exc}")
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    table = Table("id", "email", "name", "language", "status", "bounces", "since")
    for sub in rows:
        table.add_row(
            str(sub.id),
            sub.email,
            sub.name or "",
            sub.language,
            sub.status,
            str(sub.hard_bounces),
            sub.created_at.date().isoformat(),
        )
    # As wide as the rows need, even past the terminal: a cut-short address is useless.
    Console(highlight=False, markup=False, width=10_000).print(table)
    out.print(f"{len(rows)} subscriber(s)")


@subscribers_app.command()
def export(
    file: Annotated[str, typer.Argument(help="CSV file to write, or - for stdout.")] = "-",
) -> None:
    """Write every subscriber as CSV (email,language,name,status), re-importable."""
    _, store = _open()
    try:
        if file == "-":
            count = subs_csv.export_csv(store, sys.stdout)
        else:
            count = subs_csv.export_csv(store, Path(file))
    except OSError as exc:
        fail(f"{file}: cannot be written ({exc.strerror or exc})")
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    err.print(f"exported {count} subscriber(s) to {'stdout' if file == '-' else file}")
