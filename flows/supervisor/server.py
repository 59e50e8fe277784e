"""Which Prefect API a command talks to, and the servers briefcast starts.

1. ``PREFECT_API_URL`` when set: a Prefect server of your own (production, a fleet).
2. Else the server ``briefcast up`` runs, found through its state file.
3. Else a temporary server for this command only. Prefect's own temporary server outlives a
   command killed with SIGKILL (an OOM kill, a supervisor's timeout, ``kill -9``): it is a
   child process nobody tells to stop, ~200 MB each, for ever. Ours is the same server
   started the same way, but the kernel kills it when the command dies
   (``PR_SET_PDEATHSIG``), whatever killed the command.

Every child briefcast starts for Prefect (servers, workers) dies with its parent this way.
Importing this module does not import Prefect.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from briefcast.config import Settings
from briefcast.errors import BriefcastError
from flows import NO_ANALYTICS

STATE_FILE = "up.json"
API_URL_ENV = "PREFECT_API_URL"  # where Prefect, and every command here, finds its API
HOST = "127.0.0.1"  # the servers started here listen on this machine only
START_TIMEOUT = 60.0  # a cold server migrates its database first: ~10 s here
PR_SET_PDEATHSIG = 1


class ServerError(BriefcastError):
    """A Prefect server could not be started or reached."""


def die_with_parent() -> None:
    """``preexec_fn``: the kernel sends SIGKILL to this child when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl: do not outlive it
        os._exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def state_dir(settings: Settings) -> Path:
    return settings.workflow.state_dir.expanduser().absolute()


def running_up(settings: Settings) -> dict[str, Any] | None:
    """The state ``briefcast up`` wrote, when its supervisor is alive; else None."""
    path = state_dir(settings) / STATE_FILE
    try:
        state = json.loads(path.read_text())
        pid = int(state["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state.get("api_url"), str) else None


def api_url(settings: Settings) -> str | None:
    """The Prefect API to use, when there is one already (1 or 2 above)."""
    if os.environ.get(API_URL_ENV):
        return os.environ[API_URL_ENV]
    state = running_up(settings)
    return state["api_url"] if state else None


def local_api(port: int) -> str:
    """The API address of a Prefect server started here on ``port``."""
    return f"http://{HOST}:{port}/api"


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def spawn(
    args: list[str],
    env: Mapping[str, str],
    *,
    log: IO[bytes] | None = None,
    cwd: Path | None = None,
    user: int | None = None,
    group: int | None = None,
) -> subprocess.Popen[bytes]:
    """A child that dies with this process (see the module's docstring), run as ``user``
    when given (Popen changes it before ``die_with_parent``, which a change would undo)."""
    out = log if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        args,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        preexec_fn=die_with_parent,
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
    )


def server_command(port: int) -> list[str]:
    """Prefect's API (and UI, and its services) in one uvicorn process, as ``prefect server
    start`` runs it, but with no launcher process in between whose death would orphan it."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"the Prefect server exited with code {process.returncode}")
        if healthy(url, timeout=1.0):
            return
        time.sleep(0.1)
    process.kill()
    raise ServerError(f"the Prefect server did not answer at {url} within {timeout:.0f} s")


class Temporary:
    """A temporary Prefect server for one command (``start`` early, ``ready`` when needed:
    it migrates its database while the command imports Prefect). ``environ`` adds to the
    server's environment (the tests' shared server: a database of its own)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = local_api(self.port)
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **NO_ANALYTICS,
            **(environ or {}),
        }
        env.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
        self.process = spawn(server_command(self.port), env)

    def ready(self) -> str:
        wait_healthy(self.process, self.url, START_TIMEOUT)
        os.environ[API_URL_ENV] = self.url  # this command's flows talk to it
        return self.url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
