"""Fixtures shared by the test modules: a real PostgreSQL server for the store's second dialect,
a Store on each dialect, and the seed brief's email editions (the delivery tests)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from delivery_helpers import SEED, make_settings
from pg_server import SUPERUSER, Server, find_bindir, postgres_server
from smtp_servers import HOST

from briefcast import pipeline
from briefcast.render.email import EmailEdition, build_emails
from briefcast.store import Store

REQUIRE_POSTGRES = "BRIEFCAST_REQUIRE_POSTGRES"
_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """One throwaway server for the whole session (started only if a test asks for it)."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get(REQUIRE_POSTGRES) == "1":
            pytest.fail(f"PostgreSQL (initdb, pg_ctl) not found and {REQUIRE_POSTGRES}=1")
        pytest.skip(f"PostgreSQL (initdb, pg_ctl) not found; set {REQUIRE_POSTGRES}=1 to fail")
    started = time.perf_counter()
    with postgres_server(bindir) as server:
        print(f"\nPostgreSQL from {bindir} up in {time.perf_counter() - started:.2f} s")
        yield server


@pytest.fixture
def postgres_url(postgres: Server) -> Iterator[str]:
    """A SQLAlchemy URL to a fresh, empty database of its own, dropped after the test."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    admin = f"host={HOST} port={postgres.port} user={SUPERUSER} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        # FORCE: a test that failed may have left a Store's pooled connections open.
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's two dialects: each test using this runs on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'briefcast.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module")
def brief_and_mails() -> tuple[str, list[EmailEdition]]:
    """Seed 001's id and email editions, dated 7 January 2026 in Rome."""
    settings = make_settings()
    (brief,) = pipeline.read([SEED], settings)
    dated = brief.dated(datetime(2026, 1, 7, 18, 23, tzinfo=ZoneInfo("Europe/Rome")))
    return dated.id, build_emails(dated, settings)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A Store on a fresh database, on each dialect."""
    with Store(database_url) as store:
        yield store


# --- One Prefect server for the session's `briefcast publish` runs (issue 17) ----------------
# Without a Prefect API, every `briefcast publish` starts a temporary server of its own (6-8 s
# of a core, each). The tests that publish through the CLI point it at this one server instead,
# as Prefect's own tests do (their `hosted_api_server` fixture): it is the server the CLI would
# start (flows/server.py), started on first use with a database of its own, stopped at the end.
# tests/test_cli.py's seeds test (and tests/test_workflow.py's SIGKILL test) keep the CLI's
# temporary server.


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Prefect server: its API URL."""
    from flows import server

    database = tmp_path_factory.mktemp("prefect") / "prefect.db"
    started = time.perf_counter()
    shared = server.Temporary(
        {"PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}"}
    )
    try:
        server.wait_healthy(shared.process, shared.url, server.START_TIMEOUT)
        print(f"\nPrefect server for the session up in {time.perf_counter() - started:.2f} s")
        yield shared.url
    finally:
        shared.stop()


@pytest.fixture
def use_prefect_api(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every command this test runs (they inherit the environment) uses the session's Prefect
    server: ``briefcast publish`` starts no temporary one."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    return prefect_api


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server for one test module (``prefect_test_harness``): the client
    calls of the tests and of the code under test in this process go to it."""
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as env:
        # The server's telemetry cannot reach the internet from a closed network anyway.
        env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=120):
            yield
