"""Web channel: one page per brief per language (the "view in browser" target)."""

from __future__ import annotations

from pathlib import Path

from briefcast.pipeline import Edition


def preview(edition: Edition, folder: Path) -> list[Path]:
    target = folder / "web"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for lang, html in edition.pages.items():
        path = target / f"{lang}.html"
        path.write_text(html, "utf-8")
        paths.append(path)
    return paths
