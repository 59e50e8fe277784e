"""Prefect flows. Importing this package does not import Prefect (slow to import)."""

from __future__ import annotations

import os


def prefect_defaults(verbose: bool = False) -> None:
    """Environment defaults for Prefect's local mode; call before importing Prefect.
    Anything the user has set already wins."""
    if not verbose:
        # A failed task logs its traceback at ERROR; the CLI reports every failure itself,
        # in one line (-v shows Prefect's logs, tracebacks included).
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    # The local server's telemetry heartbeat races its own SQLite writes ("database is
    # locked" tracebacks) and cannot reach the internet from a closed network anyway.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
