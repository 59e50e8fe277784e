"""The errors a user can meet, each printed by the CLI as one line.

``UserError`` is something the user can fix (input, usage, configuration): exit 2.
``BriefcastError`` itself is a runtime failure (a relay down, a send stopped): exit 1.
Anything else reaching the CLI is a bug: one line saying so, the traceback only with -v.
"""

from __future__ import annotations

from pathlib import Path


class BriefcastError(Exception):
    """A runtime failure the CLI reports in one line, exit 1."""

    exit_code = 1


class UserError(BriefcastError):
    """Bad input, usage or configuration: one line, exit 2, nothing changed."""

    exit_code = 2


class ConfigError(UserError):
    """The settings file or a BRIEFCAST_* variable is missing, unreadable or wrong."""


class BriefError(UserError):
    """A brief that cannot be published as it is: ``path: reason``, one line."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
