"""Alembic's environment for briefcast, run by :mod:`briefcast.migrate` (never from an
alembic.ini): the caller hands over a connection already in a transaction, and every
revision of one command runs in it.

SQLite gets ``render_as_batch``: its ALTER TABLE cannot change a column, so Alembic copies
the table instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from briefcast.store import metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,  # the models, for `alembic revision --autogenerate`
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("briefcast's migrations run on a live connection, not as SQL scripts")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    # A developer's own use (e.g. autogenerate) with only a URL: briefcast.migrate.config(url=…)
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection and no sqlalchemy.url: use briefcast.migrate")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


_run()
