"""Fixtures shared by the test modules: a real PostgreSQL server for the store's second dialect,
a Store on each dialect, and the seed brief's email editions (the delivery tests)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from delivery_helpers import SEED, make_settings
from pg_server import Server, find_bindir, fresh_database, postgres_server

from briefcast import pipeline
from briefcast.render.email import EmailEdition, build_emails
from briefcast.store import Store

REQUIRE_POSTGRES = "BRIEFCAST_REQUIRE_POSTGRES"


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
    with fresh_database(postgres) as url:
        yield url


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
# start (flows/supervisor/server.py), started on first use with a database of its own,
# stopped at the end.
# tests/test_cli.py's seeds test (and tests/test_workflow.py's SIGKILL test) keep the CLI's
# temporary server.


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Prefect server: its API URL."""
    from flows.supervisor import server

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


# --- pytest-xdist (`make test`: -n TEST_WORKERS --dist loadgroup --no-loadscope-reorder) -----

# The modules that take longest, handed out first: the last one a worker is given should be
# short, not one that keeps it busy for minutes while the others have finished. Every module
# of 25 s or more in a clean-clone CI (dfdec4f, `TEST_DURATIONS=0 .ci/run`), longest first:
# with only the first four and test_cli first, one worker ran alone for ~80 s at the end.
LONGEST_FIRST = (
    "test_workflow.py",  # 468 s
    "test_up_events.py",  # 161 s
    "test_plugins.py",  # 55 s
    "test_hostile.py",  # 42 s
    "test_week.py",  # 38 s
    "test_social_send.py",  # 37 s
    "test_browser.py",  # 35 s
    "test_delivery_audience.py",  # 31 s
    "test_cli.py",  # 28 s
    "test_social_flow.py",  # 25 s
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test runs on the worker of its xdist group: by default its module's, so that a
    module's fixtures (servers, a browser) start once, as with --dist loadfile; a module
    may put its tests in groups of its own (tests/test_workflow.py's fleets)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


class _LongestFirst:
    @pytest.hookimpl(trylast=True)  # after pytest has ordered them for its fixtures
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Modules in LONGEST_FIRST first, in its order; within a module, as they were."""
        rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the controller, each worker's tests
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """With --dist loadgroup, xdist tells each test's group by a suffix to its node id.
    Without one, every test goes to either worker alone: a module's servers, browsers and
    fleets start on both, more than once. A pytest release that drops the suffix
    (pytest-dev/pytest-xdist#1386) stops the run here rather than slowing it down."""
    if node.config.getvalue("dist") == "loadgroup":
        ungrouped = [nodeid for nodeid in ids if "@" not in nodeid]
        if ungrouped:
            pytest.exit(
                f"--dist loadgroup: no group in the node id of {ungrouped[0]} (and "
                f"{len(ungrouped) - 1} more): this pytest-xdist does not group tests under "
                f"pytest {pytest.__version__} (see pyproject.toml)",
                returncode=4,
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_LongestFirst(), "briefcast-longest-first")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        # Prefect's temporary servers (a command run with no PREFECT_API_URL) keep their
        # SQLite database in PREFECT_HOME: one per worker, not ~/.prefect's for all at once.
        home = tempfile.mkdtemp(prefix=f"briefcast-prefect-{worker}-")
        os.environ["PREFECT_HOME"] = home
        config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
