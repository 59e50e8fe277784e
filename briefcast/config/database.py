"""``[database]``: where briefcast keeps its tables (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from briefcast.config.fields import Section


class DatabaseSettings(Section):
    url: str = "sqlite:///briefcast.db"
