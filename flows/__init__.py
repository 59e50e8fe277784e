"""Prefect flows. Importing this package does not import Prefect (slow to import)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# The local server's telemetry heartbeat races its own SQLite writes ("database is locked"
# tracebacks) and cannot reach the internet from a closed network anyway.
NO_ANALYTICS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


# A flow run's worker, when the run was forked from the prefork server rather than started by
# the worker itself (flows/supervisor/prefork.py): set by the run's launcher.
WORKER_PID_ENV = "BRIEFCAST_WORKER_PID"


def worker_pid() -> int:
    """The pid of the Prefect worker running this flow run (its parent, started cold)."""
    return int(os.environ.get(WORKER_PID_ENV) or os.getppid())


def prefect_defaults(verbose: bool = False) -> None:
    """Environment defaults for Prefect's local mode; call before importing Prefect.
    Anything the user has set already wins."""
    if not verbose:
        # A failed task logs its traceback at ERROR; the CLI reports every failure itself,
        # in one line (-v shows Prefect's logs, tracebacks included).
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    for name, value in NO_ANALYTICS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow runs made inside skip Prefect's heartbeat thread. Its end joins a thread that
    sleeps in one-second steps: ~1 s added to every flow run (0.08 s without, measured
    against a running server). Heartbeats let a server mark a run crashed when its worker
    dies; a run the CLI makes in its own process has no worker to lose."""
    from prefect.context import SettingsContext
    from prefect.settings import get_current_settings

    current = get_current_settings()
    flows = current.flows.model_copy(update={"heartbeat_frequency": None})
    context = SettingsContext.get()
    assert context is not None
    with SettingsContext(
        profile=context.profile, settings=current.model_copy(update={"flows": flows})
    ):
        yield
