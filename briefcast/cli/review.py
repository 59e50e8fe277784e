"""``briefcast review|approve|scheduled|reviews``: a brief's review on the Prefect server
``briefcast up`` runs: preview it, approve it (now or at a time), list the reviews."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from briefcast import channel as registry
from briefcast import reviews
from briefcast.cli import startup
from briefcast.cli.output import err as console
from briefcast.cli.output import fail
from briefcast.cli.output import out as out_console
from briefcast.config import Settings
from briefcast.pipeline import check, read, settled
from briefcast.reviews import ReviewState
from briefcast.store import Store
from flows import prefect_defaults

MAX_AHEAD = timedelta(days=90)


def review(
    paths: Annotated[list[Path], typer.Argument(help="Brief files (.txt, .md).")],
    verbose: startup.Verbose = False,
) -> None:
    """Preview briefs on the Prefect server and wait for approval (as if saved into the
    inbox): previews in [workflow] out and as artifacts; `briefcast approve` sends."""
    settings = startup.settings()
    briefs = read(paths, settings)  # a bad brief fails here, in one line, not in a worker
    check(briefs, settings, registry.names())
    prefect_defaults(verbose)
    startup.prefect_api(settings)
    from flows.supervisor.inbox import submit

    out = settings.workflow.out.expanduser().absolute()
    # The ids the review flow gives them (a taken id made from a title takes -2, ...).
    for path, brief in zip(paths, settled(briefs, settings), strict=True):
        run = submit(path.absolute(), out)
        out_console.print(f"{brief.id}: previewing (flow run {run.id}); then `briefcast approve`")


def parse_at(text: str, settings: Settings) -> datetime:
    """ "2026-12-02 07:00" in the site's time zone; must be in the future, within 90 days."""
    try:
        naive = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f'--at {text!r}: not a date and time like "2026-12-02 07:00"')
    if naive.tzinfo is not None:
        fail(f"--at {text!r}: give the time without a zone (it is {settings.site.timezone})")
    at = naive.replace(tzinfo=settings.site.tz)
    now = datetime.now(UTC)
    if at <= now:
        fail(f"--at {text}: is in the past ({settings.site.timezone})")
    if at - now > MAX_AHEAD:
        fail(f"--at {text}: more than {MAX_AHEAD.days} days ahead")
    return at


def approve(
    brief_id: Annotated[str, typer.Argument(help="The brief's id (its preview folder's name).")],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar='"YYYY-MM-DD HH:MM"',
            help="Send at this time (the site's time zone) instead of now.",
        ),
    ] = None,
    verbose: startup.Verbose = False,
) -> None:
    """Approve a brief's newest preview: it is sent (or scheduled) exactly as previewed;
    refused when the brief, a template or a setting changed since the preview."""
    settings = startup.settings()
    send_at = parse_at(at, settings) if at is not None else None
    prefect_defaults(verbose)
    startup.prefect_api(settings)
    from flows.review_actions import approve as approve_review

    done = approve_review(brief_id, settings, send_at=send_at, by=f"{getpass.getuser()} (cli)")
    when = f"scheduled for {send_at:%Y-%m-%d %H:%M %Z}" if send_at else "sending now"
    # One line however long the id: a wrapped line split "scheduled for" for some lengths.
    out_console.print(
        f"approved {done.brief_id} (digest {done.digest[:12]}): {when}", soft_wrap=True
    )


def scheduled(
    cancel: Annotated[
        str | None,
        typer.Option("--cancel", metavar="BRIEF_ID", help="Cancel this brief's scheduled send."),
    ] = None,
    verbose: startup.Verbose = False,
) -> None:
    """List the approved briefs waiting for their send time; --cancel one of them."""
    settings = startup.settings()
    prefect_defaults(verbose)
    startup.prefect_api(settings)
    with Store(settings.database.url) as store:
        if cancel is not None:
            review = reviews.latest(store, cancel, (ReviewState.SCHEDULED,))
            if review is None or review.send_flow_run_id is None:
                fail(f"{cancel}: no send of it is scheduled")
            from flows.review_actions import cancel_run

            cancel_run(review.send_flow_run_id)
            reviews.set_state(store, review.flow_run_id, ReviewState.CANCELLED, detail="cancelled")
            out_console.print(f"cancelled the scheduled send of {cancel}")
            return
        rows = reviews.listed(store, (ReviewState.SCHEDULED,))
    if not rows:
        console.print("Nothing is scheduled.")
        return
    for r in rows:
        when = r.send_at.astimezone(settings.site.tz) if r.send_at else None
        out_console.print(
            f"{r.brief_id}  {when:%Y-%m-%d %H:%M %Z}  by {r.approved_by or '?'}  "
            f"flow run {r.send_flow_run_id or '(being made)'}",
            soft_wrap=True,
        )


def list_reviews(
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="Only this state: " + ", ".join(reviews.STATES) + ".",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 200,
) -> None:
    """Every review, newest first: waiting for approval, failed (with the reason: a brief
    dropped into the inbox that could not be read shows here, by its file name), approved,
    scheduled, sending, sent, cancelled, ... with its title, when, and its digest's prefix."""
    settings = startup.settings()
    if state is not None and state not in reviews.STATES:
        fail(f"--state {state!r}: not one of {', '.join(reviews.STATES)}")
    with startup.store(settings) as store:
        rows = reviews.listed(store, (state,) if state else reviews.STATES, limit)
    if not rows:
        console.print("No reviews." if state is None else f"No {state} reviews.")
        return
    tz = settings.site.tz
    for r in rows:
        out_console.print(review_line(r, tz), markup=False, soft_wrap=True)


def review_line(r: reviews.Review, tz: Any) -> str:
    """One review in one line: when, state, digest prefix, id, title; then what the state
    says (the send time, the reason it failed or was refused)."""
    when = f"{r.created_at.astimezone(tz):%Y-%m-%d %H:%M %Z}"
    digest = r.digest[:12] if r.digest else "-" * 12
    title = f'"{r.title}"' if r.title else ("(not read)" if not r.digest else "(no title)")
    line = f"{when}  {r.state:<10}  {digest}  {r.brief_id}  {title}"
    if r.send_at is not None and r.state in (
        ReviewState.APPROVED,
        ReviewState.SCHEDULED,
        ReviewState.CANCELLED,
    ):
        line += f"  send at {r.send_at.astimezone(tz):%Y-%m-%d %H:%M %Z}"
    if r.detail:
        line += f"  - {r.detail}"
    return line
