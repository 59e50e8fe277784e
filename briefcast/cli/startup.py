"""What the commands open first: the settings, the database and the Prefect server, each
failing in one line."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from briefcast.cli.output import fail, first_line
from briefcast.config import Settings, load_settings
from briefcast.errors import ConfigError
from briefcast.store import Store
from flows.supervisor import server

# The option of every command that runs Prefect flows: its logs are shown only when asked.
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect logs.")]


def settings() -> Settings:
    """The settings, or one line and exit 2."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(f"configuration: {exc}")


def store(settings: Settings) -> Store:
    """The database (made or upgraded on first open), or one line and exit 2."""
    try:
        return Store(settings.database.url)
    except (SQLAlchemyError, ImportError) as exc:
        fail(f"database: {first_line(exc)}")  # not the URL: it may carry a password


def prefect_api(settings: Settings) -> str:
    """The Prefect server's API (``briefcast up``'s, or ``PREFECT_API_URL``), set for
    Prefect in this process; none: one line and exit 2."""
    url = server.api_url(settings)
    if url is None:
        fail("no Prefect server: start one with `briefcast up` (or set PREFECT_API_URL)")
    os.environ[server.API_URL_ENV] = url
    return url
