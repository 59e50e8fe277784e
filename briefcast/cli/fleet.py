"""``briefcast up|down|worker``: the fleet that runs the editor's reviews on a Prefect
server (``flows.supervisor``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from briefcast.cli import startup
from briefcast.cli.output import fail
from briefcast.cli.output import out as out_console
from briefcast.config import Settings
from flows import prefect_defaults
from flows.supervisor import server

UP_TIMEOUT = 180.0  # a first start migrates the Prefect server's database


def up() -> None:
    """Start a Prefect server (unless PREFECT_API_URL names one), briefcast's deployments, the
    workers and the inbox watcher, in the background; `briefcast down` stops them."""
    settings = startup.settings()
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
            [sys.executable, "-m", "flows.supervisor.up"],
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
            if state.get(
                "prefect_database"
            ):  # which, and what it means (flows/supervisor/prefect_db.py)
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
    settings = startup.settings()
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
    verbose: startup.Verbose = False,
) -> None:
    """Run one process worker of briefcast's work pool here (another machine of the fleet):
    it sends batches of the email list, which need only the databases. Ctrl-C stops it."""
    settings = startup.settings()
    prefect_defaults(verbose)
    from flows.supervisor import prefork
    from flows.supervisor.up import BATCHES_QUEUE, worker_command, worker_env

    url = startup.prefect_api(settings)
    name = f"{os.uname().nodename}-{os.getpid()}"
    w = settings.workflow
    queues = () if all_queues else (BATCHES_QUEUE,)
    command = worker_command(w.work_pool, name, w.runs_per_worker, queues)
    address = prefork.new_address()
    preforked = server.spawn(prefork.server_command(address), os.environ)
    child = server.spawn(command, worker_env(url, address))
    try:
        sys.exit(child.wait())
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
    finally:
        preforked.terminate()
