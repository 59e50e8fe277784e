"""The ``briefcast`` command."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from briefcast import channel as registry
from briefcast import reporting
from briefcast.brief import Brief
from briefcast.channel import ChannelError, sends
from briefcast.cli import startup
from briefcast.cli.bounces import bounces_app
from briefcast.cli.db import db_app
from briefcast.cli.editors import editors_app
from briefcast.cli.fleet import down, up, worker
from briefcast.cli.output import err as console
from briefcast.cli.output import error, fail, first_line
from briefcast.cli.output import out as out_console
from briefcast.cli.review import approve, list_reviews, review, scheduled
from briefcast.cli.serve import serve
from briefcast.cli.social import social_app
from briefcast.cli.subscribers import subscribers_app
from briefcast.config import Settings
from briefcast.errors import BriefcastError
from briefcast.pipeline import check, read
from flows import prefect_defaults, without_heartbeats
from flows.supervisor import server

if TYPE_CHECKING:
    from briefcast.delivery import DeliverySummary, TestSend

# Sending (briefcast.delivery: SMTP, the ledger, the email renderer) is imported where
# publish uses it: every other command starts ~0.3 s sooner without it.

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(subscribers_app, name="subscribers", help="Manage newsletter subscribers.")
app.add_typer(db_app, name="db", help="Show and upgrade the database schema.")
app.add_typer(bounces_app, name="bounces", help="Late bounces and spam complaints.")
app.add_typer(social_app, name="social", help="The social accounts posted from.")
app.add_typer(
    editors_app, name="editors", help="Editors who log in to the editor's pages of briefcast serve."
)
app.command("serve")(serve)
for _command in (up, down, worker, review, approve, scheduled):
    app.command()(_command)
app.command("reviews")(list_reviews)


@app.callback()
def main() -> None:
    """briefcast: one brief in; newsletter, feeds and social posts out."""


@app.command("channels")
def list_channels() -> None:
    """List the installed channels (briefcast's own and plug-ins)."""
    table = Table("channel", "title", "sends", "from")
    for name, channel in registry.registry().items():
        table.add_row(
            name,
            channel.title,
            "yes" if sends(channel) else "preview only",
            type(channel).__module__,
        )
    out_console.print(table)


@app.command()
def publish(
    paths: Annotated[list[Path], typer.Argument(help="Brief files (.txt, .md).")],
    out: Annotated[Path, typer.Option(help="Previews go to OUT/<brief-id>/.")] = Path("out"),
    channels: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated channel names (default: every installed channel; "
            "`briefcast channels` lists them)."
        ),
    ] = None,
    send: Annotated[
        bool,
        typer.Option(
            "--send",
            help="Really send on every chosen channel that sends (email: the list; social: "
            "the configured accounts).",
        ),
    ] = False,
    resend_unknown: Annotated[
        bool,
        typer.Option(
            "--resend-unknown",
            help="With --send: also resend the messages and posts whose outcome is unknown "
            "(a connection lost after they went out); some may arrive twice.",
        ),
    ] = False,
    test_to: Annotated[
        str | None,
        typer.Option(
            "--test-to",
            metavar="ADDR,ADDR",
            help="Mail every edition, subject marked [TEST], to these addresses only "
            "(no subscribers, no ledger; the rest stays a dry run).",
        ),
    ] = None,
    to_everyone: Annotated[
        bool,
        typer.Option(
            "--to-everyone",
            help="Mail every subscriber, also those whose edition's language a brief is not "
            "written in (by default they are left out; front matter: audience: everyone).",
        ),
    ] = False,
    verbose: startup.Verbose = False,
) -> None:
    """Read briefs, build every channel's output and write the previews; with --send, mail
    the newsletter to the subscribers who read each brief's languages."""
    try:
        chosen = registry.parse(channels) if channels is not None else registry.names()
    except ChannelError as exc:
        fail(f"--channels: {exc}")
    if resend_unknown and not send:
        fail("--resend-unknown only applies with --send")
    if send and test_to is not None:
        fail("--send and --test-to: choose one (--test-to mails only the addresses given)")
    testers = _test_addresses(test_to, chosen) if test_to is not None else []
    settings = startup.settings()
    if send:  # every channel that will send is ready, or nothing is sent on any of them
        for name in chosen:
            channel: Any = registry.get(name)
            if sends(channel):
                try:
                    channel.check_ready(settings)
                except BriefcastError as exc:
                    fail(f"--send: {exc}; nothing was sent.")
    prefect_defaults(verbose)
    # Read every brief and build every output before the flow runs: bad input fails fast,
    # changes nothing and starts no Prefect server.
    briefs = read(paths, settings)
    check(briefs, settings, chosen)
    _check_out(out)
    # The Prefect API: briefcast up's server (or PREFECT_API_URL's) when one runs, else a
    # temporary one for this command, started only now that every check has passed (a
    # refused brief costs no server) and killed with this command whatever kills it
    # (flows/supervisor/server.py). Its address is set before Prefect is imported, which reads
    # it then.
    api = server.api_url(settings)
    temporary = server.Temporary() if api is None else None
    os.environ[server.API_URL_ENV] = temporary.url if temporary is not None else str(api)
    try:
        _publish(
            briefs,
            paths,
            out,
            settings,
            chosen,
            send,
            resend_unknown,
            testers,
            temporary,
            to_everyone,
        )
    finally:
        if temporary is not None:
            temporary.stop()


def _publish(
    briefs: list[Brief],
    paths: list[Path],
    out: Path,
    settings: Settings,
    chosen: list[str],
    send: bool,
    resend_unknown: bool,
    testers: list[str],
    temporary: server.Temporary | None,
    to_everyone: bool,
) -> None:
    mode = "live" if send else "test send" if testers else "dry run"
    reporter = _Reporter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=16),
        _SendColumn(),
        TimeElapsedColumn(),
        console=console,
        # Gone when done: what stays on the screen is the result, or the one-line error.
        # Not drawn at all when stderr is not a terminal (a log, a pipe, a test).
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        reporter.bar = progress
        progress.add_task(f"Publishing {len(briefs)} brief(s), {mode}…", total=None)
        # Prefect's import is slow: only now, while the temporary server migrates its database.
        from briefcast import delivery
        from flows.publish import publish as publish_flow

        if temporary is not None:
            temporary.ready()
        with delivery.reporting(reporter), reporting.watch(reporter), without_heartbeats():
            published = publish_flow(
                [str(p) for p in paths],
                chosen,
                dry_run=not send,
                out=str(out),
                resend_unknown=resend_unknown,
                test_to=testers or None,
                to_everyone=to_everyone,
            )
    for brief, folder in zip(briefs, published.folders, strict=True):
        print(f"{brief.id}  languages={','.join(brief.languages)}  {folder}/index.html")
    if testers:
        from briefcast.delivery.smtp import ResultStatus

        _print_tests(published.tested)
        if any(r.status != ResultStatus.SENT for r in published.tested):
            raise typer.Exit(1)
        return
    if not send:
        if "email" in chosen:
            _print_reach(briefs, settings, to_everyone)
        console.print(f"[green]Dry run complete:[/] previews in {out}/ (nothing was sent).")
        return
    from briefcast.delivery import DeliverySummary

    for name, summary in published.sent:
        if isinstance(summary, DeliverySummary):
            _print_summary(summary)
        else:
            _print_channel_summary(name, summary)
    errors = [
        f"{name}: {getattr(s, 'brief_id', '')}: {s_error}"
        for name, s in published.sent
        if (s_error := getattr(s, "error", None))
    ]
    for line in errors:
        error(line)
    if errors:
        raise typer.Exit(1)


def _print_reach(briefs: list[Brief], settings: Settings, to_everyone: bool) -> None:
    """Whom --send would mail each brief to now: the active subscribers per edition."""
    from briefcast.delivery import audience
    from briefcast.delivery.summary import reach_line
    from briefcast.render.email import edition_names
    from briefcast.store import Store

    with Store(settings.database.url) as store:
        for brief in briefs:
            readers = audience.of_brief(brief, settings, everyone=to_everyone)
            reach = audience.reach(store, readers, edition_names(settings.site))
            print(f"{brief.id}  email {reach_line(reach, readers.left_out)}")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out {out}: cannot be made ({exc.strerror or exc})")


def _test_addresses(value: str, channels: list[str]) -> list[str]:
    if "email" not in channels:
        fail("--test-to needs the email channel")
    from briefcast.subscribers import SubscriberError, normalize_address

    addresses = []
    for raw in (a.strip() for a in value.split(",")):
        if not raw:
            continue
        try:
            addresses.append(normalize_address(raw))
        except SubscriberError as exc:
            fail(f"--test-to: not an email address: {exc}")
    if not addresses:
        fail("--test-to: no address given")
    return list(dict.fromkeys(addresses))


class _SendColumn(ProgressColumn):
    """done/total, messages per second and time left, for the sending bars only; a step
    with a note (a social account waiting out a rate limit) shows the note instead."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        done = f"{task.completed:,.0f}/{task.total:,.0f}"
        if "note" in task.fields:
            note = task.fields["note"]
            return Text(f"{done} posts" + (f" · {note}" if note else ""))
        speed = task.speed or 0.0
        left = task.remaining or 0
        eta = str(timedelta(seconds=round(left / speed))) if speed else "-:--:--"
        return Text(f"{done} {speed:,.0f} msg/s ETA {eta}")


class _Reporter:
    """Receives the flow's sending progress (same process): the email newsletter's
    (``delivery.Reporter``) and every channel's steps (``reporting.Reporter``). What was
    sent is the flow's value (``flows.publish.Published``)."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def progress(self, brief_id: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if brief_id not in self.tasks:
            self.tasks[brief_id] = self.bar.add_task(f"Sending {brief_id[:20]}…", total=total)
        self.bar.update(self.tasks[brief_id], completed=done, total=total)

    def finished(self, summary: DeliverySummary) -> None:
        pass  # the flow returns every channel's summary, this one too (Published.sent)

    def status(self, label: str, done: int, total: int, note: str = "") -> None:
        if self.bar is None:
            return
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(f"Posting {label[:30]}", total=total, note="")
        self.bar.update(self.tasks[label], completed=done, total=total, note=note)

    def tested(self, results: list[TestSend]) -> None:
        pass  # the flow returns them (Published.tested)


def _print_summary(summary: DeliverySummary) -> None:
    from briefcast.delivery.ledger import DeliveryStatus

    out_console.print(f"Delivery of {summary.brief_id}:", soft_wrap=True)
    table = Table()
    table.add_column("status")
    table.add_column("this run", justify="right")
    table.add_column("all runs", justify="right")
    for status, n in summary.this_run.items():
        if status != DeliveryStatus.QUEUED or n or summary.ledger[status]:
            table.add_row(status, f"{n:,}", f"{summary.ledger[status]:,}")
    table.add_row("skipped", f"{summary.skipped:,}", "")
    table.add_row("rate", f"{summary.rate:,.0f} msg/s", "")
    out_console.print(table)
    out_console.print(summary.line(), soft_wrap=True)
    if summary.unknown:
        unknown = _listed(summary.unknown, summary.ledger, DeliveryStatus.UNKNOWN)
        out_console.print(
            "unknown (the connection was lost after the message went out; not resent "
            f"unless you pass --resend-unknown): {unknown}",
            soft_wrap=True,
        )
    if summary.deferred:
        out_console.print(
            "deferred (the relay said try later; a re-run of this publish retries them): "
            f"{_listed(summary.deferred, summary.ledger, DeliveryStatus.DEFERRED)}",
            soft_wrap=True,
        )


def _print_channel_summary(channel: str, summary: reporting.Summary) -> None:
    """Any channel's summary: its rows as a table (when it has any), its notes, its line."""
    rows = summary.rows()
    if rows:
        table = Table(
            title=f"{channel}:",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
        )
        for column in rows[0]:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()))
        out_console.print(table)
    for note in reporting.notes(summary):
        out_console.print(note, soft_wrap=True, markup=False)
    out_console.print(summary.line(), soft_wrap=True, markup=False)


def _listed(addresses: list[str], ledger: dict[str, int], status: str) -> str:
    more = ledger[status] - len(addresses)
    return ", ".join(addresses) + (f" and {more:,} more" if more > 0 else "")


def _print_tests(results: list[TestSend]) -> None:
    table = Table(title="Test send ([TEST] in the subject)", title_justify="left")
    for column in ("to", "edition", "status", "reply"):
        table.add_column(column)
    for r in results:
        table.add_row(r.address, r.edition, r.status, r.reply)
    out_console.print(table)


def run() -> None:
    """The entry point: every failure is one line. A user's mistake exits 2, a runtime
    failure 1; anything unexpected says so, with the traceback only when asked for."""
    debug = os.environ.get("BRIEFCAST_DEBUG") == "1" or bool({"-v", "--verbose"} & set(sys.argv))
    try:
        app(prog_name="briefcast")
    except BriefcastError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            raise
        error(
            f"unexpected error: {type(exc).__name__}: {first_line(exc)} (this is a bug; run "
            "again with -v, or BRIEFCAST_DEBUG=1, to see the traceback)"
        )
        sys.exit(1)
