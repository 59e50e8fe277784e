"""Late bounces and spam complaints: read the bounce mailbox and record what it reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from briefcast.cli import startup
from briefcast.cli.output import err, fail, first_line
from briefcast.store import Store

if TYPE_CHECKING:
    from briefcast import bounces

bounces_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
# Results on stdout; no markup: the reasons quote the reports, which may hold [brackets].
out = Console(highlight=False, soft_wrap=True, markup=False)


@bounces_app.command()
def fetch(
    max_messages: Annotated[
        int | None,
        typer.Option(
            "--max-messages",
            min=1,
            help="Read at most this many messages (default: [bounces] max_messages).",
        ),
    ] = None,
) -> None:
    """Read the bounce mailbox (IMAP or Maildir) once: record each late bounce and spam
    complaint on its delivery and subscriber, move what was read out of the way."""
    from briefcast import bounces  # IMAP, mail parsing, the ledger: for this command only

    settings = startup.settings()
    try:  # before the database is opened (or made)
        bounces.check_ready(settings)
    except bounces.BouncesConfigError as exc:
        fail(str(exc))
    try:
        store = Store(settings.database.url)
    except (SQLAlchemyError, ImportError) as exc:
        fail(f"database: {first_line(exc)}")  # not the URL: it may carry a password
    try:
        with store:
            summary = bounces.fetch(store, settings, limit=max_messages)
    except bounces.BouncesConfigError as exc:
        fail(str(exc))
    except bounces.BouncesError as exc:
        fail(str(exc), 1)
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}", 1)
    _print(summary)


def _print(summary: bounces.BounceSummary) -> None:
    table = Table("reports", "count", title=f"Bounce mailbox {summary.mailbox}")
    table.title_justify = "left"
    table.add_row("hard bounces", f"{summary.hard:,}")
    table.add_row("soft bounces", f"{summary.soft:,}")
    table.add_row("complaints", f"{summary.complaints:,}")
    table.add_row("unknown", f"{summary.unknown:,}")
    table.add_row("duplicates", f"{summary.duplicates:,}")
    out.print(table)
    line = (
        f"{summary.read:,} read, {summary.moved:,} moved; subscribers now bounced: "
        f"{summary.subscribers_bounced:,}, complained: {summary.subscribers_complained:,}"
    )
    if summary.truncated:
        line += f"; {summary.truncated:,} read in part (over [bounces] max_message_bytes)"
    out.print(line)
    if summary.not_moved:
        err.print(
            f"[yellow]note:[/] {summary.not_moved:,} message(s) could not be moved; the next "
            "run reads them again and counts none of them twice"
        )
    if summary.left:
        err.print(
            f"[yellow]note:[/] {summary.left:,} more message(s) wait for the next run "
            + escape("([bounces] max_messages)")
        )
    for detail in summary.unknown_details:
        out.print(f"unknown: {detail}")
