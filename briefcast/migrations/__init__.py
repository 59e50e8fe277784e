"""The database schema's history, as Alembic migrations shipped inside the package.

``versions/`` holds one revision per schema change, oldest first; :mod:`briefcast.migrate`
runs them (``Store`` on open, ``briefcast db upgrade`` by hand) with a configuration built
in code: no ``alembic.ini`` at run time.

This module stays import-light: ``Store`` reads :data:`HEAD` on every open, and only a
database behind it pays for importing Alembic.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT_LOCATION = Path(__file__).resolve().parent

# The revision briefcast 0.1's create_all schema is stamped at (briefs, subscribers,
# deliveries), and the newest revision. A new revision moves HEAD here: a test checks that
# it names the newest file in versions/.
BASELINE = "0001"
HEAD = "0007"

BASELINE_TABLES = frozenset({"briefs", "subscribers", "deliveries"})
