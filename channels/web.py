"""Web channel: one page per brief per language (the "view in browser" target)."""

from __future__ import annotations

from pathlib import Path

from briefcast.pipeline import Edition
from briefcast.safe_io import write_inside


def preview(edition: Edition, folder: Path) -> list[Path]:
    return [write_inside(folder, f"web/{lang}.html", html) for lang, html in edition.pages.items()]
