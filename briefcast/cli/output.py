"""Where the CLI speaks: results on stdout, messages and the one-line errors on stderr."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


def error(message: str) -> None:
    # One line, whatever the message carries: a file name or a brief's text may hold breaks.
    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def fail(message: str, code: int = 2) -> NoReturn:
    """Bad input or usage: one red line, no traceback, exit ``code``."""
    error(message)
    raise typer.Exit(code)
