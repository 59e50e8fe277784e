"""Feed channel: RSS 2.0, Atom 1.0 and JSON Feed 1.1 per language."""

from __future__ import annotations

from pathlib import Path

from briefcast.pipeline import Edition
from briefcast.safe_io import write_inside

FILES = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}


def preview(edition: Edition, folder: Path) -> list[Path]:
    return [
        write_inside(folder, f"feed/{feeds.lang}/{name}", getattr(feeds, kind))
        for feeds in edition.feeds
        for kind, name in FILES.items()
    ]
