"""Social channel: X (thread when needed), Mastodon and Bluesky posts per language, and their
live posting from the configured accounts (``[[social.accounts]]``, ``briefcast.posting``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from briefcast.brief import Brief
from briefcast.channel import BuildContext, Limit, Outputs, Pacer, Row, SendUnit
from briefcast.config import Settings
from briefcast.posting.accounts import Route, check_ready, routes
from briefcast.posting.run import SocialSummary, post_account
from briefcast.render.preview import fragment
from briefcast.render.social import SocialPost, build_social
from briefcast.safe_io import write_inside

NO_ACCOUNTS = "no [[social.accounts]] configured: previews only, nothing is posted"


@dataclass(frozen=True)
class SocialPosts:
    """The brief's posts, and which configured account would post each one."""

    posts: list[SocialPost]
    routes: list[Route]  # empty when no account is configured
    configured: bool  # whether any account is
    idle: tuple[
        str, ...
    ] = ()  # one line per account with nothing to post: no text in its languages

    def accounts_of(self, post: SocialPost) -> list[str]:
        return [r.account.name for r in self.routes if r.post is post]


def _structure(k: int, n: int) -> str:
    if n == 1:
        return "a single post"
    return f"part {k} of {n}, " + ("starts the thread" if k == 1 else f"replies to {k - 1}/{n}")


class SocialChannel:
    name = "social"
    title = "Social posts"
    order = 30

    def build(self, brief: Brief, ctx: BuildContext) -> SocialPosts:
        posts = build_social(brief, ctx.settings.site)
        accounts = ctx.settings.social.accounts
        chosen = routes(accounts, posts)
        # An account posts only text in its own languages (never a translation it lacks).
        idle = tuple(
            f"{a.name} ({a.network}, {', '.join(a.languages)}): posts nothing, the brief has "
            f"no text in {' or '.join(a.languages)}"
            for a in accounts
            if not any(r.account is a for r in chosen)
        )
        return SocialPosts(posts, chosen, bool(accounts), idle)

    def preview(self, built: SocialPosts, folder: Path) -> list[Path]:
        paths = []
        summary = []
        for post in built.posts:
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
                    "accounts": built.accounts_of(post),
                    "posts": [
                        {"text": t, "length": n}
                        for t, n in zip(post.posts, post.lengths, strict=True)
                    ],
                }
            )
        listing = json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
        return [
            *paths,
            write_inside(folder, "social/posts.json", listing),
            write_inside(folder, "social/accounts.txt", self._plan(built)),
        ]

    def _plan(self, built: SocialPosts) -> str:
        """Who posts what, in which order: the accounts' part of the dry run."""
        if not built.configured:
            return NO_ACCOUNTS + "\n"
        lines = []
        for route in built.routes:
            a, post = route.account, route.post
            n = len(post.posts)
            shape = f"a thread of {n}" if n > 1 else "one post"
            lines.append(f"{a.name} ({a.network}, {post.lang}): {shape}")
            lines += [f"  {k}/{n}: {_structure(k, n)}" for k in range(1, n + 1)]
        unposted = [f"{p.network} · {p.lang}" for p in built.posts if not built.accounts_of(p)]
        if unposted:
            lines.append(f"no account posts: {', '.join(unposted)}")
        lines += built.idle
        return "\n".join(lines) + "\n"

    def preview_html(self, built: SocialPosts, brief: Brief, settings: Settings) -> str:
        cards = [
            {
                "post": post,
                "accounts": built.accounts_of(post),
                "structure": [
                    _structure(k, len(post.posts)) for k in range(1, len(post.posts) + 1)
                ],
            }
            for post in built.posts
        ]
        return fragment(
            "social.html.j2",
            cards=cards,
            configured=built.configured,
            no_accounts=NO_ACCOUNTS,
            idle=built.idle,
        )

    def preview_rows(self, built: SocialPosts) -> list[Row]:
        rows: list[Row] = []
        for post in built.posts:
            n = len(post.posts)
            accounts = built.accounts_of(post)
            if not built.configured:
                targets = [""]
            else:
                targets = [f" → {a}" for a in accounts] or [" → no account"]
            for target in targets:
                for k, (text, length) in enumerate(zip(post.posts, post.lengths, strict=True), 1):
                    reply = f" (reply to {k - 1}/{n})" if k > 1 and targets != [""] else ""
                    rows.append(
                        {
                            "target": f"{post.network} · {post.lang} post {k}/{n}{target}{reply}",
                            "text": text,
                            "length": length,
                            "limit": post.limit,
                        }
                    )
        return rows

    def check_ready(self, settings: Settings) -> None:
        """Every configured account's credentials are there and the network takes them
        (nothing is posted); none configured: nothing to check."""
        check_ready(settings.social)

    def limits(self, settings: Settings) -> list[Limit]:
        """Each network's posts, fleet-wide: a rate limit per network an account posts to,
        in the settings' order (``social_limits``)."""
        return [Limit(name, slots, decay) for name, slots, decay in social_limits(settings)]

    def send_units(self, outputs: Outputs, settings: Settings) -> list[SendUnit]:
        """One unit per configured account, in the settings' order: each account holds its
        own send lock and rows of the send ledger, so they post side by side. None with no
        account configured (``combine`` says so)."""
        return [
            SendUnit(self.name, outputs.brief.id, a.name, {"account": a.name})
            for a in settings.social.accounts
        ]

    def send_unit(
        self,
        unit: SendUnit,
        outputs: Outputs,
        settings: Settings,
        *,
        resend_unknown: bool,
        pacer: Pacer,
    ) -> SocialSummary:
        """Post the brief from one account in its languages, once only
        (``briefcast.posting``), each post after a slot of its network's fleet-wide rate
        limit (waiting at most ``[social] max_wait_seconds``: then the account stops and its
        rest is left for the next run)."""
        timeout = settings.social.max_wait_seconds or None

        def before_post(network: str) -> None:
            pacer.tick(limit_name(network), timeout)

        built: SocialPosts = outputs.of(self.name)
        return post_account(
            outputs.brief,
            built.posts,
            settings,
            str(unit.params["account"]),
            resend_unknown=resend_unknown,
            before_post=before_post,
        )

    def combine(
        self, outputs: Outputs, settings: Settings, summaries: list[SocialSummary]
    ) -> SocialSummary:
        """Every account's summary as one: what posting from them all in one run says
        (none: no account is configured, nothing was posted)."""
        return SocialSummary.combine(outputs.brief.id, summaries)


def limit_name(network: str) -> str:
    """The fleet-wide rate limit of one social network (a Prefect global concurrency limit)."""
    return f"social-{network}"


def social_limits(settings: Settings) -> list[tuple[str, int, float]]:
    """(limit name, slots, slot_decay_per_second) for each network an account posts to, in
    the settings' order: ``posts_per_minute`` per network for the whole fleet.

    A slot decays at ``posts_per_minute / 60`` a second: the lasting rate. The slots are the
    burst allowed after a quiet spell: one second's worth of posts, at least one (at the
    default 30 a minute: one post, then one every two seconds). Prefect decays whole slots
    only, counted from the limit's last change, so under contention the pace is at most
    this, never above it."""
    ppm = settings.workflow.posts_per_minute
    networks = dict.fromkeys(a.network for a in settings.social.accounts)
    return [(limit_name(n), max(1, math.ceil(ppm / 60)), ppm / 60) for n in networks]


channel = SocialChannel()
