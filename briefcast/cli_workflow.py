"""``briefcast up|down|worker|review|approve|scheduled|reviews``: the editor's workflow on a
Prefect server."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from briefcast import approval, cli_open
from briefcast import channel as registry
from briefcast.cli_output import err as console
from briefcast.cli_output import fail
from briefcast.cli_output import out as out_console
from briefcast.config import Settings
from briefcast.pipeline import check, read, settled
from briefcast.store import Store
from flows import prefect_defaults, server

UP_TIMEOUT = 180.0  # a first start migrates the Prefect server's database
MAX_AHEAD = timedelta(days=90)


def _api(settings: Settings) -> str:
    url = server.api_url(settings)
    if url is None:
        fail("no Prefect server: start one with `briefcast up` (or set PREFECT_API_URL)")
    os.environ["PREFECT_API_URL"] = url
    return url


def up() -> None:
    """Start a Prefect server (unless PREFECT_API_URL names one), briefcast's deployments, the
    workers and the inbox watcher, in the background; `briefcast down` stops them."""
    settings = cli_open.settings()
    state = server.running_up(settings)
    if state is not None:
        out_console.print(f"briefcast is up already: {state['api_url']}")
        return
    inbox = _inbox(settings)
    folder = server.state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "up.log"
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "flows.up"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives this command: `briefcast down` stops it
        )
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        state = server.running_up(settings)
        if state is not None and state.get("pid") == child.pid:
            w = settings.workflow
            out_console.print(
                f"briefcast up: Prefect API {state['api_url']} (UI: "
                f"{state['api_url'].removesuffix('/api')}), {w.workers} worker(s) on pool "
                f"{w.work_pool}",
                markup=False,
                soft_wrap=True,
            )
            if inbox is None:
                out_console.print(
                    "inbox: none (set [workflow] inbox to have briefs saved there reviewed)",
                    markup=False,
                    soft_wrap=True,
                )
            else:
                out_console.print(
                    f"inbox: {inbox} (a brief saved here is previewed, then waits for "
                    "approval; `briefcast reviews` lists them)",
                    markup=False,
                    soft_wrap=True,
                )
            if state.get("prefect_database"):  # which, and what it means (flows/prefect_db.py)
                out_console.print(
                    f"briefcast up: {state['prefect_database']}", soft_wrap=True, markup=False
                )
            return
        if child.poll() is not None:
            fail(f"briefcast up failed: {_last_line(log_path)} (log: {log_path})")
        time.sleep(0.2)
    child.terminate()
    fail(f"briefcast up: not ready within {UP_TIMEOUT:.0f} s (log: {log_path})")


def _inbox(settings: Settings) -> Path | None:
    """The inbox folder, absolute, made when missing (the watcher needs it, and the editor
    needs to know where to save briefs); None when none is set."""
    if settings.workflow.inbox is None:
        return None
    inbox = settings.workflow.inbox.expanduser().absolute()
    try:
        inbox.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        fail(f"[workflow] inbox {inbox}: is not a folder")
    except OSError as exc:
        fail(f"[workflow] inbox {inbox}: cannot be made: {exc.strerror or exc}")
    return inbox


def _last_line(path: object) -> str:
    try:
        with open(str(path), errors="replace") as log:
            lines = [ln for ln in log.read().splitlines() if ln]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def down() -> None:
    """Stop what `briefcast up` started (server, workers, inbox watcher)."""
    settings = cli_open.settings()
    state = server.running_up(settings)
    if state is None:
        out_console.print("briefcast is not up.")
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out_console.print("briefcast is down.")
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
    out_console.print("briefcast is down (killed after 30 s).")


def worker(
    all_queues: Annotated[
        bool,
        typer.Option(
            "--all-queues",
            help="Also run reviews and sends: only where the inbox, out and public_dir are "
            "the same folders as on the machine of `briefcast up` (shared storage).",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect logs.")] = False,
) -> None:
    """Run one process worker of briefcast's work pool here (another machine of the fleet):
    it sends batches of the email list, which need only the databases. Ctrl-C stops it."""
    settings = cli_open.settings()
    prefect_defaults(verbose)
    from flows.up import BATCHES_QUEUE, worker_command, worker_env

    url = _api(settings)
    name = f"{os.uname().nodename}-{os.getpid()}"
    w = settings.workflow
    queues = () if all_queues else (BATCHES_QUEUE,)
    command = worker_command(w.work_pool, name, w.runs_per_worker, queues)
    child = server.spawn(command, worker_env(url))
    try:
        sys.exit(child.wait())
    except KeyboardInterrupt:
        child.terminate()
        child.wait()


def review(
    paths: Annotated[list[Path], typer.Argument(help="Brief files (.txt, .md).")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect logs.")] = False,
) -> None:
    """Preview briefs on the Prefect server and wait for approval (as if saved into the
    inbox): previews in [workflow] out and as artifacts; `briefcast approve` sends."""
    settings = cli_open.settings()
    briefs = read(paths, settings)  # a bad brief fails here, in one line, not in a worker
    check(briefs, settings, registry.names())
    prefect_defaults(verbose)
    _api(settings)
    from flows.inbox import submit

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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect logs.")] = False,
) -> None:
    """Approve a brief's newest preview: it is sent (or scheduled) exactly as previewed;
    refused when the brief, a template or a setting changed since the preview."""
    settings = cli_open.settings()
    send_at = parse_at(at, settings) if at is not None else None
    prefect_defaults(verbose)
    _api(settings)
    from flows.approve import approve as approve_review

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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect logs.")] = False,
) -> None:
    """List the approved briefs waiting for their send time; --cancel one of them."""
    settings = cli_open.settings()
    prefect_defaults(verbose)
    _api(settings)
    with Store(settings.database.url) as store:
        if cancel is not None:
            review = approval.latest(store, cancel, ("scheduled",))
            if review is None or review.send_flow_run_id is None:
                fail(f"{cancel}: no send of it is scheduled")
            from flows.approve import cancel_run

            cancel_run(review.send_flow_run_id)
            approval.set_state(store, review.flow_run_id, "cancelled", detail="cancelled")
            out_console.print(f"cancelled the scheduled send of {cancel}")
            return
        rows = approval.listed(store, ("scheduled",))
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


def reviews(
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="Only this state: " + ", ".join(approval.STATES) + ".",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 200,
) -> None:
    """Every review, newest first: waiting for approval, failed (with the reason: a brief
    dropped into the inbox that could not be read shows here, by its file name), approved,
    scheduled, sending, sent, cancelled, ... with its title, when, and its digest's prefix."""
    settings = cli_open.settings()
    if state is not None and state not in approval.STATES:
        fail(f"--state {state!r}: not one of {', '.join(approval.STATES)}")
    with cli_open.store(settings) as store:
        rows = approval.listed(store, (state,) if state else approval.STATES, limit)
    if not rows:
        console.print("No reviews." if state is None else f"No {state} reviews.")
        return
    tz = settings.site.tz
    for r in rows:
        out_console.print(review_line(r, tz), markup=False, soft_wrap=True)


def review_line(r: approval.Review, tz: Any) -> str:
    """One review in one line: when, state, digest prefix, id, title; then what the state
    says (the send time, the reason it failed or was refused)."""
    when = f"{r.created_at.astimezone(tz):%Y-%m-%d %H:%M %Z}"
    digest = r.digest[:12] if r.digest else "-" * 12
    title = f'"{r.title}"' if r.title else ("(not read)" if not r.digest else "(no title)")
    line = f"{when}  {r.state:<10}  {digest}  {r.brief_id}  {title}"
    if r.send_at is not None and r.state in ("approved", "scheduled", "cancelled"):
        line += f"  send at {r.send_at.astimezone(tz):%Y-%m-%d %H:%M %Z}"
    if r.detail:
        line += f"  - {r.detail}"
    return line
