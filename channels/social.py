"""Social channel: X (thread when needed), Mastodon and Bluesky posts per language."""

from __future__ import annotations

import json
from pathlib import Path

from briefcast.pipeline import Edition


def preview(edition: Edition, folder: Path) -> list[Path]:
    target = folder / "social"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    summary = []
    for post in edition.social:
        path = target / f"{post.network}-{post.lang}.txt"
        numbered = [
            f"--- post {i}/{len(post.posts)} · {length}/{post.limit} ---\n{text}\n"
            for i, (text, length) in enumerate(zip(post.posts, post.lengths, strict=True), 1)
        ]
        path.write_text("\n".join(numbered), "utf-8")
        paths.append(path)
        summary.append(
            {
                "network": post.network,
                "lang": post.lang,
                "limit": post.limit,
                "posts": [
                    {"text": t, "length": n} for t, n in zip(post.posts, post.lengths, strict=True)
                ],
            }
        )
    index = target / "posts.json"
    index.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return [*paths, index]
