"""What the commands open first: the settings and the database, each failing in one line."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from briefcast.cli_output import fail, first_line
from briefcast.config import Settings, load_settings
from briefcast.errors import ConfigError
from briefcast.store import Store


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
