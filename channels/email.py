"""Email channel: the three editions (en, it, both) as .html, .txt and .eml."""

from __future__ import annotations

from pathlib import Path

from briefcast.pipeline import Edition


def preview(edition: Edition, folder: Path) -> list[Path]:
    target = folder / "email"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for mail in edition.emails:
        for suffix, data in (
            ("html", mail.html.encode("utf-8")),
            ("txt", mail.text.encode("utf-8")),
            ("eml", mail.eml),
        ):
            path = target / f"{mail.edition}.{suffix}"
            path.write_bytes(data)
            paths.append(path)
    return paths
