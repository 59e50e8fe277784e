"""Social channel: X (thread when needed), Mastodon and Bluesky posts per language."""

from __future__ import annotations

import json
from pathlib import Path

from briefcast.pipeline import Edition
from briefcast.safe_io import write_inside


def preview(edition: Edition, folder: Path) -> list[Path]:
    paths = []
    summary = []
    for post in edition.social:
        numbered = [
            f"--- post {i}/{len(post.posts)} · {length}/{post.limit} ---\n{text}\n"
            for i, (text, length) in enumerate(zip(post.posts, post.lengths, strict=True), 1)
        ]
        name = f"social/{post.network}-{post.lang}.txt"
        paths.append(write_inside(folder, name, "\n".join(numbered)))
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
    index = write_inside(
        folder, "social/posts.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
    )
    return [*paths, index]
