"""Where briefcast's own templates and default settings file are.

Installed from a wheel, they are inside the package, in ``briefcast/_resources/templates``
and ``briefcast/_resources/config`` (``pyproject.toml`` puts them there), found through
``importlib.resources``. Run from a checkout or an editable install, that folder does not
exist, and they are the repository's top-level ``templates/`` and ``config/``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

RESOURCES = "_resources"  # inside the package, in an installed wheel
REPOSITORY = Path(__file__).resolve().parent.parent  # a checkout, when run from source


@cache
def _folder(name: str) -> Path | None:
    """``templates`` or ``config``: the installed copy, else the checkout's, else None."""
    installed = files("briefcast") / RESOURCES / name
    # A real folder: Jinja's loaders and the settings reader want paths. pip always unpacks
    # a wheel; an import from a zip file would give another kind of Traversable.
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    # Only next to our pyproject.toml: installed, REPOSITORY is site-packages, where a
    # top-level "templates" or "config" would be another distribution's.
    source = REPOSITORY / name
    if (REPOSITORY / "pyproject.toml").is_file() and source.is_dir():
        return source
    return None


def templates_root() -> Path:
    """Our templates: ``email/``, ``web/``, ``preview/`` and ``i18n/``."""
    root = _folder("templates")
    if root is None:
        raise RuntimeError(
            f"briefcast's templates are missing: neither {Path(__file__).parent / RESOURCES} "
            f"nor {REPOSITORY / 'templates'} exists; reinstall briefcast"
        )
    return root


def default_config() -> Path | None:
    """The settings file read when BRIEFCAST_CONFIG names none, if it is there."""
    folder = _folder("config")
    return folder / "briefcast.toml" if folder is not None else None
