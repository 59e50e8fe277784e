"""Channel adapters: one module per destination, each with the same small interface.

``preview(edition, folder)`` writes what the channel would send (dry run) and returns the
files; ``send(edition, settings)`` delivers it. Adapters do no rendering: builders did.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType

from briefcast.build.preview import build_index
from briefcast.config import Settings
from briefcast.pipeline import Edition
from channels import email, feed, social, web

ADAPTERS: dict[str, ModuleType] = {"email": email, "feed": feed, "social": social, "web": web}


class SendUnavailable(Exception):
    """Live delivery for this channel does not exist yet."""


def staging_dir(out: Path) -> Path:
    return out / f".staging-{os.getpid()}"


def dispatch_preview(channel: str, editions: list[Edition], staging: Path) -> list[Path]:
    return [path for e in editions for path in ADAPTERS[channel].preview(e, staging / e.brief.id)]


def finish_previews(
    editions: list[Edition], channels: list[str], staging: Path, out: Path, settings: Settings
) -> list[Path]:
    """Add each brief's index.html, then swap its finished folder in whole: a reader of
    ``out/`` sees the old previews or the new ones, never half of each."""
    folders = []
    for e in editions:
        folder = staging / e.brief.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text(build_index(e, channels, settings), "utf-8")
        final = out / e.brief.id
        if final.exists():
            old = out / f".old-{e.brief.id}-{os.getpid()}"
            final.rename(old)
            folder.rename(final)
            shutil.rmtree(old)
        else:
            folder.rename(final)
        folders.append(final)
    shutil.rmtree(staging, ignore_errors=True)
    return folders


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
