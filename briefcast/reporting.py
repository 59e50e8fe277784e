"""What a live send tells whoever watches it while it runs, whatever the channel: the
progress of a long step (with a note, e.g. a rate-limit wait); and the shape of the summary
each channel's send ends with (:class:`Summary`: the flow returns it, and makes it an
artifact).

The CLI runs the Prefect flow in its own process and shows every channel's sending live; a
flow parameter cannot carry a callback, so the CLI registers its :class:`Reporter` here
(:func:`watch`) and the senders report to :func:`current`. With nobody watching (a Prefect
worker), reports go nowhere. The email newsletter's own progress (its sending process
reports messages per second) goes through :mod:`briefcast.delivery.summary`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

Row = dict[str, str | int]
W = TypeVar("W")


class Watched(Generic[W]):
    """Who watches, for the length of a ``with``: the CLI registers itself, the code that
    reports asks for it (None: nobody). One per kind of watcher."""

    def __init__(self) -> None:
        self._watcher: W | None = None

    @contextmanager
    def by(self, watcher: W) -> Iterator[None]:
        previous, self._watcher = self._watcher, watcher
        try:
            yield
        finally:
            self._watcher = previous

    def current(self) -> W | None:
        return self._watcher


class Summary(Protocol):
    """What a channel's ``send`` returns: one line for logs, and rows for a table. It may
    also have ``notes() -> list[str]``: lines worth reading in full (what went wrong where),
    shown after the table."""

    def line(self) -> str: ...

    def rows(self) -> list[Row]: ...


def notes(summary: Summary) -> list[str]:
    """The summary's notes, if it has any."""
    method = getattr(summary, "notes", None)
    return list(method()) if callable(method) else []


class Reporter(Protocol):
    def status(self, label: str, done: int, total: int, note: str = "") -> None:
        """``label`` (one step, e.g. ``social desk-x``) has done ``done`` of ``total``;
        ``note`` says what it is doing now (``""``: nothing worth saying)."""
        ...


_watched: Watched[Reporter] = Watched()
watch = _watched.by
current = _watched.current
