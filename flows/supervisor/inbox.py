"""The inbox: a brief saved into ``[workflow] inbox`` starts a review (a flow run of the
``review`` deployment: previews, then waiting for approval).

watchdog reports a file once it is written and closed, or moved in (editors and sync tools
write a temporary file and rename it). Hidden and temporary names are ignored, and the same
bytes landing twice (an editor that saves twice) start one review.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from briefcast.config import Settings
from briefcast.safe_io import UnsafeFile, read_regular

SUFFIXES = (".md", ".txt", ".markdown")
SETTLE_SECONDS = 0.5  # quiet time after the last write before a brief is read


def is_brief(path: Path) -> bool:
    name = path.name
    return (
        path.suffix.lower() in SUFFIXES
        and not name.startswith((".", "~", "#"))
        and not name.endswith(("~", ".swp", ".tmp"))
    )


class _Handler(FileSystemEventHandler):
    """Each event on a brief (created, modified, closed, moved in) restarts its timer; when
    the file has been quiet for SETTLE_SECONDS, its bytes are read once and reviewed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.out = settings.workflow.out.expanduser().absolute()
        self._seen: dict[str, str] = {}  # path -> digest of the bytes last submitted
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened"):
            return
        name = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(str(name)).absolute()
        if not is_brief(path):
            return
        with self._lock:
            if (old := self._timers.pop(str(path), None)) is not None:
                old.cancel()
            timer = threading.Timer(SETTLE_SECONDS, self._landed, (path,))
            timer.daemon = True
            self._timers[str(path)] = timer
            timer.start()

    def _landed(self, path: Path) -> None:
        try:
            data = read_regular(path, self.settings.input.max_bytes)
        except (OSError, UnsafeFile):
            return  # gone again, or not a regular file: nothing to review
        if not data.strip():
            return
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            if self._seen.get(str(path)) == digest:
                return
            self._seen[str(path)] = digest
        try:
            run = submit(path, self.out)
        except Exception as exc:  # the server away for a moment: say so, keep watching
            print(f"inbox: {path.name}: not submitted: {exc}", file=sys.stderr, flush=True)
            with self._lock:
                self._seen.pop(str(path), None)
            return
        print(f"inbox: {path.name}: review {run.id}", file=sys.stderr, flush=True)


def submit(path: Path, out: Path) -> Any:
    """A review of ``path`` on the Prefect server (``PREFECT_API_URL``)."""
    from prefect.deployments import run_deployment

    from flows.review import REVIEW

    return run_deployment(
        REVIEW,
        parameters={"path": str(path), "out": str(out)},
        timeout=0,
        as_subflow=False,
    )


def watch(settings: Settings) -> Any:
    """Start watching the inbox; returns the observer (``.stop()`` ends it)."""
    assert settings.workflow.inbox is not None
    folder = settings.workflow.inbox.expanduser().absolute()
    folder.mkdir(parents=True, exist_ok=True)
    observer = Observer()
    observer.schedule(_Handler(settings), str(folder), recursive=False)
    observer.daemon = True
    observer.start()
    return observer
