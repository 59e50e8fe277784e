"""The dry run on disk: each brief's previews built in a staging folder, then swapped in.

A reader of ``out/`` sees a brief's old previews or its new ones, never half of each; every
file lands inside ``out/<brief-id>/`` whatever a brief or a channel says.

``out/<brief-id>/`` is the latest dry run of that id, whichever file it came from. A review
also keeps its own copy, addressed by the digest its approval is bound to:
``out/_reviewed/<brief-id>/<digest>/``. A later dry run of another file with the same id (or a
``--test-to``) replaces the latest folder only, so the editor who opens a review's preview
sees the very previews whose digest they approve.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from briefcast import channel as registry
from briefcast.channel import Outputs
from briefcast.config import Settings
from briefcast.errors import BriefcastError
from briefcast.render.layout import INDEX
from briefcast.render.preview import build_index
from briefcast.safe_io import inside, write_inside

# A name no brief id can take (ids are lower-case letters, digits and dashes): the reviews'
# copies never meet a brief's own folder.
REVIEWED = "_reviewed"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def reviewed_dir(out: Path, brief_id: str, digest: str) -> Path:
    """Where a review's previews are kept: by brief id, then by the digest it approves."""
    if not _DIGEST.fullmatch(digest):
        raise BriefcastError(f"not a preview digest: {digest[:80]!r}")
    return inside(out, REVIEWED, brief_id, digest)


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
    outputs: Sequence[Outputs],
    names: Sequence[str],
    staging: Path,
    out: Path,
    settings: Settings,
    *,
    digest: str | None = None,
) -> list[Path]:
    """Add each brief's index.html, then swap its finished folder in whole. With ``digest``
    (a review's: one brief), a copy of the same files is swapped in first at
    :func:`reviewed_dir`: built once, so the kept copy is byte for byte the latest one."""
    if digest is not None and len(outputs) != 1:
        raise BriefcastError("a review previews one brief at a time")
    chosen = [registry.get(name) for name in names]
    folders = []
    for o in outputs:
        folder = inside(staging, o.brief.id)
        write_inside(folder, INDEX, build_index(o, chosen, settings))
        if digest is not None:
            kept = reviewed_dir(out, o.brief.id, digest)
            copy = inside(staging, REVIEWED, o.brief.id)
            shutil.copytree(folder, copy, symlinks=True)
            kept.parent.mkdir(parents=True, exist_ok=True)
            swap_in(copy, kept.parent, digest)
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
