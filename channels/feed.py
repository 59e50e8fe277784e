"""Feed channel: RSS 2.0, Atom 1.0 and JSON Feed 1.1 per language."""

from __future__ import annotations

from pathlib import Path

from briefcast.pipeline import Edition

FILES = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}


def preview(edition: Edition, folder: Path) -> list[Path]:
    paths = []
    for feeds in edition.feeds:
        target = folder / "feed" / feeds.lang
        target.mkdir(parents=True, exist_ok=True)
        for kind, name in FILES.items():
            path = target / name
            path.write_bytes(getattr(feeds, kind))
            paths.append(path)
    return paths
