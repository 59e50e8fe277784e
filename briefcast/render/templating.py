"""The one way templates are loaded: a Jinja environment per folder of ``templates/``.

Every environment is strict (an unknown name in a template is an error, not an empty
string) and, when the site sets ``[site] templates_dir``, looks in the site's folder first
and in ours for whatever the site does not have, file by file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

from briefcast.resources import templates_root

# True, False, or a function of the template's name (jinja2.select_autoescape); keep such a
# function at module level, so that the same one comes back and the cache finds it.
Autoescape = bool | Callable[[str | None], bool]


def environment(
    folder: str,
    templates_dir: Path | None = None,
    *,
    autoescape: Autoescape = True,
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> Environment:
    """The environment for ``templates/<folder>`` (``email``, ``web``, ``preview``), over
    the site's ``<templates_dir>/<folder>`` when ``templates_dir`` is set. One per set of
    arguments, made once."""
    return _environment(folder, templates_dir, autoescape, tuple(sorted((filters or {}).items())))


@cache
def _environment(
    folder: str,
    templates_dir: Path | None,
    autoescape: Autoescape,
    filters: tuple[tuple[str, Callable[..., Any]], ...],
) -> Environment:
    ours = FileSystemLoader(templates_root() / folder)
    loader: BaseLoader = ours
    if templates_dir is not None:
        loader = ChoiceLoader([FileSystemLoader(templates_dir / folder), ours])
    env = Environment(
        loader=loader,
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(filters)
    return env
