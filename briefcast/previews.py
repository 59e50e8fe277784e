"""The dry run on disk: each brief's previews built in a staging folder, then swapped in.

A reader of ``out/`` sees a brief's old previews or its new ones, never half of each; every
file lands inside ``out/<brief-id>/`` whatever a brief or a channel says.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from briefcast import channel as registry
from briefcast.channel import Outputs
from briefcast.config import Settings
from briefcast.render.preview import build_index
from briefcast.safe_io import inside, write_inside


def staging_dir(out: Path) -> Path:
    """A new empty folder inside ``out`` (made now, ours alone) where previews are built."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=out))


def dispatch_preview(name: str, outputs: Sequence[Outputs], staging: Path) -> list[Path]:
    """One channel's previews for every brief, each in its brief's staging folder."""
    channel = registry.get(name)
    return [
        path for o in outputs for path in channel.preview(o.of(name), inside(staging, o.brief.id))
    ]


def finish_previews(
    outputs: Sequence[Outputs], names: Sequence[str], staging: Path, out: Path, settings: Settings
) -> list[Path]:
    """Add each brief's index.html, then swap its finished folder in whole."""
    chosen = [registry.get(name) for name in names]
    folders = []
    for o in outputs:
        folder = inside(staging, o.brief.id)
        write_inside(folder, "index.html", build_index(o, chosen, settings))
        folders.append(swap_in(folder, out, o.brief.id))
    shutil.rmtree(staging, ignore_errors=True)
    return folders


def swap_in(folder: Path, out: Path, name: str) -> Path:
    """Move ``folder`` to ``out/name``, replacing what was there. The old one is first moved
    into a fresh folder of our own and removed with it: nothing else is ever deleted."""
    final = inside(out, name)
    if not (final.exists() or final.is_symlink()):
        folder.rename(final)
        return final
    trash = Path(tempfile.mkdtemp(prefix=".old-", dir=out))
    try:
        final.rename(trash / name)
        try:
            folder.rename(final)
        except OSError:
            (trash / name).rename(final)  # the old previews back, rather than none
            raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    return final


def write_previews(
    outputs: Sequence[Outputs], names: Sequence[str], out: Path, settings: Settings
) -> list[Path]:
    """Every chosen channel's previews and the index page, for every brief."""
    staging = staging_dir(out)
    try:
        for name in names:
            dispatch_preview(name, outputs, staging)
        return finish_previews(outputs, names, staging, out, settings)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
