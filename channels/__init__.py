"""Channel adapters: one module per destination, each with the same small interface.

``preview(edition, folder)`` writes what the channel would send (dry run) and returns the
files; ``send(edition, settings)`` delivers it. Adapters do no rendering: builders did.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from briefcast.config import Settings
from briefcast.pipeline import Edition
from briefcast.render.preview import build_index
from briefcast.safe_io import inside, write_inside
from channels import email, feed, social, web

ADAPTERS: dict[str, ModuleType] = {"email": email, "feed": feed, "social": social, "web": web}


class SendUnavailable(Exception):
    """Live delivery for this channel does not exist yet."""


def staging_dir(out: Path) -> Path:
    """A new empty folder inside ``out`` (made now, ours alone) where previews are built."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=out))


def dispatch_preview(channel: str, editions: list[Edition], staging: Path) -> list[Path]:
    return [
        path for e in editions for path in ADAPTERS[channel].preview(e, inside(staging, e.brief.id))
    ]


def finish_previews(
    editions: list[Edition], channels: list[str], staging: Path, out: Path, settings: Settings
) -> list[Path]:
    """Add each brief's index.html, then swap its finished folder in whole: a reader of
    ``out/`` sees the old previews or the new ones, never half of each."""
    folders = []
    for e in editions:
        folder = inside(staging, e.brief.id)
        write_inside(folder, "index.html", build_index(e, channels, settings))
        folders.append(swap_in(folder, out, e.brief.id))
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
    editions: list[Edition], channels: list[str], out: Path, settings: Settings
) -> list[Path]:
    staging = staging_dir(out)
    try:
        for channel in channels:
            dispatch_preview(channel, editions, staging)
        return finish_previews(editions, channels, staging, out, settings)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
