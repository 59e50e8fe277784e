"""The ``briefcast`` command, one module per group of commands (as Prefect's own
``prefect.cli``): ``main`` assembles them and holds ``publish``; ``startup`` opens the
settings and the database for every command, ``output`` is where they speak."""

from __future__ import annotations

from briefcast.cli.main import app, run

__all__ = ["app", "run"]
