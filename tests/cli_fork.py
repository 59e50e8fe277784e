"""The `briefcast` command in the tests: a process of its own, forked from a warm one.

The suite runs the CLI a few hundred times, each a new Python process that imports Prefect
and briefcast before it reads its arguments (0.75-2 s of a core each, most of the suite's
CPU after the fleets). As `briefcast up` does for flow runs (flows/supervisor/prefork.py),
each pytest worker starts one server that has imported that once, and a test's command is a
launcher that has the server fork ``python -m briefcast.cli`` with its arguments, streams,
folder and environment. It is still a process of its own: its exit code, its stdout and
stderr, the signals sent to it, and a launcher killed takes its run along.

What is imported in the server is the libraries only (Prefect, SQLAlchemy, the renderers):
briefcast's CLI modules import in the child, so anything they read from the environment
when imported (a console's width) is the command's own. ``BRIEFCAST_TEST_COLD_CLI=1`` runs
every command cold instead, as a user's shell does; the tests that start the CLI from a
fresh interpreter on purpose (tests/test_structure.py, tests/test_install.py) still do.

Run as a script, this module is that server: ``python cli_fork.py ADDRESS``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from flows.supervisor import prefork

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "cli_launch.py"
COLD_ENV = "BRIEFCAST_TEST_COLD_CLI"
PRELOAD = (
    "prefect",
    "prefect.flow_runs",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.client.orchestration",
    "prefect.deployments",
    "typer",
    "rich.console",
    "sqlalchemy",
    "alembic.command",
    "httpx",
    "jinja2",
    "markdown_it",
    "feedgen.feed",
    "premailer",
    "pydantic_settings",
    "email_validator",
    "babel.dates",
)

_server: subprocess.Popen[bytes] | None = None
_address: str | None = None


def start(log: Path) -> None:
    """Start this process's server (once); commands are forked from it from now on."""
    global _server, _address
    if _server is not None or os.environ.get(COLD_ENV) == "1":
        return
    address = prefork.new_address()
    with log.open("ab") as out:
        _server = subprocess.Popen(
            [sys.executable, str(Path(__file__)), address], stdout=out, stderr=out
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _server.poll() is None:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect("\0" + address)
            except OSError:
                time.sleep(0.1)
                continue
        _address = address
        return
    stop()  # it did not come up: the commands run cold


def stop() -> None:
    global _server, _address
    if _server is not None:
        _server.terminate()
        try:
            _server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _server.kill()
    _server = _address = None


def briefcast_command() -> list[str]:
    """The `briefcast` command: forked from the server when there is one (its launcher
    runs the command cold if the server has gone), else ``python -m briefcast.cli``."""
    if _address is None:
        return [sys.executable, "-m", "briefcast.cli"]
    return [sys.executable, str(LAUNCHER), _address]


if __name__ == "__main__":
    # A command's imports look in its working folder first, as `python -m` has them, not in
    # this script's folder.
    sys.path[0] = ""
    prefork.serve(sys.argv[1], module="briefcast.cli", preload=PRELOAD)
