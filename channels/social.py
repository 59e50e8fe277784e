"""Social channel: X (thread when needed), Mastodon and Bluesky posts per language."""

from __future__ import annotations

import json
from pathlib import Path

from briefcast.brief import Brief
from briefcast.channel import BuildContext, Row
from briefcast.config import Settings
from briefcast.render.preview import fragment
from briefcast.render.social import SocialPost, build_social
from briefcast.safe_io import write_inside

Posts = list[SocialPost]


class SocialChannel:
    name = "social"
    title = "Social posts"
    order = 30

    def build(self, brief: Brief, ctx: BuildContext) -> Posts:
        return build_social(brief, ctx.settings.site)

    def preview(self, built: Posts, folder: Path) -> list[Path]:
        paths = []
        summary = []
        for post in built:
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
                        {"text": t, "length": n}
                        for t, n in zip(post.posts, post.lengths, strict=True)
                    ],
                }
            )
        listing = json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
        return [*paths, write_inside(folder, "social/posts.json", listing)]

    def preview_html(self, built: Posts, brief: Brief, settings: Settings) -> str:
        return fragment("social.html.j2", social=built)

    def preview_rows(self, built: Posts) -> list[Row]:
        return [
            {
                "target": f"{post.network} · {post.lang} post {i}/{len(post.posts)}",
                "text": text,
                "length": length,
                "limit": post.limit,
            }
            for post in built
            for i, (text, length) in enumerate(zip(post.posts, post.lengths, strict=True), 1)
        ]


channel = SocialChannel()
