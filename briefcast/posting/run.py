"""A brief's live posting: every configured account posts its network's post (an X thread
when needed) in each of its languages, once only (:mod:`briefcast.posting.thread`).

One run per brief at a time (the ``social:<brief>`` send lock, as for the other channels of
the send ledger); the accounts one after the other, in the settings' order. An account that
cannot go on (credentials refused, rate-limited beyond ``max_wait_seconds``) stops there and
the others carry on; what it did not post is left for the next run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from briefcast.brief import Brief
from briefcast.config import AccountSettings, Settings
from briefcast.delivery.lock import BriefBusy, sending
from briefcast.errors import BriefError
from briefcast.posting import LinkCard, PostingError
from briefcast.posting.accounts import make_poster, routes
from briefcast.posting.thread import CHANNEL, ThreadResult, Waits, post_thread
from briefcast.render.social import SocialPost, network_post
from briefcast.reporting import Reporter, Row, current
from briefcast.sends import SendLedger
from briefcast.store import Store


@dataclass(frozen=True)
class SocialSummary:
    """What one run posted for one brief, thread by thread (account and language)."""

    brief_id: str
    threads: list[ThreadResult] = field(default_factory=list)
    note: str = ""  # e.g. no accounts configured
    error: str | None = None  # why the run ends with exit 1 (a thread failed, an account stopped)

    def total(self, what: str) -> int:
        return sum(
            len(t.unknown) if what == "unknown" else int(getattr(t, what)) for t in self.threads
        )

    def line(self) -> str:
        if not self.threads:
            return f"social for brief {self.brief_id}: {self.note or 'nothing to post'}"
        counts = ", ".join(
            f"{label} {self.total(what):,}"
            for label, what in (
                ("posted", "posted"),
                ("unknown", "unknown"),
                ("failed", "failed"),
                ("queued", "queued"),
                ("skipped", "before"),
            )
        )
        accounts = len({t.account for t in self.threads})
        return f"social for brief {self.brief_id}: {counts} ({accounts} account(s))"

    def rows(self) -> list[Row]:
        """One row per account and language (the flow's table artifact, the CLI's table)."""
        return [
            {
                "account": t.account,
                "network": t.network,
                "lang": t.lang,
                "parts": t.parts,
                "posted": t.posted,
                "unknown": len(t.unknown),
                "failed": t.failed,
                "queued": t.queued,
                "skipped": t.before,
            }
            for t in self.threads
        ]

    def notes(self) -> list[str]:
        """Why a thread stopped short (which part is unknown, what failed), one line each."""
        return [f"{t.account} ({t.network}, {t.lang}): {t.note}" for t in self.threads if t.note]


def post_brief(
    brief: Brief,
    posts: Sequence[SocialPost],
    settings: Settings,
    *,
    resend_unknown: bool = False,
    environ: Mapping[str, str] = os.environ,
    reporter: Reporter | None = None,
    waits: Waits | None = None,
) -> SocialSummary:
    """Post ``posts`` (the brief's, as ``render.social`` built them) from every configured
    account whose network and languages they are; safe to re-run at any time."""
    social = settings.social
    planned = routes(social.accounts, posts)
    if not social.accounts:
        return SocialSummary(brief.id, note="no [[social.accounts]] configured: nothing posted")
    if not planned:
        return SocialSummary(brief.id, note="no account posts in the brief's languages")
    reporter = reporter or current()
    waits = waits or Waits(social.max_wait_seconds)
    threads: list[ThreadResult] = []
    with Store(settings.database.url) as store:
        ledger = SendLedger(store)
        try:
            with sending(store, f"{CHANNEL}:{brief.id}", wait=settings.delivery.lock_wait_seconds):
                ledger.recover(brief.id, CHANNEL)  # a dead run's "sending" rows: unknown
                for account in social.accounts:
                    mine = [r.post for r in planned if r.account is account]
                    if mine:
                        threads += _post_account(
                            ledger,
                            brief,
                            account,
                            mine,
                            settings,
                            environ,
                            resend_unknown=resend_unknown,
                            waits=waits,
                            reporter=reporter,
                        )
        except BriefBusy as exc:
            return SocialSummary(brief.id, threads, error=f"social: {exc}")
    errors = [f"{t.account} ({t.lang}): {t.error}" for t in threads if t.error]
    return SocialSummary(brief.id, threads, error="; ".join(errors) or None)


def _post_account(
    ledger: SendLedger,
    brief: Brief,
    account: AccountSettings,
    posts: list[SocialPost],
    settings: Settings,
    environ: Mapping[str, str],
    *,
    resend_unknown: bool,
    waits: Waits,
    reporter: Reporter | None,
) -> list[ThreadResult]:
    """The account's threads, one after the other, until one says the account must stop."""
    results: list[ThreadResult] = []

    def stopped(post: SocialPost, why: str, *, error: bool = True) -> ThreadResult:
        n = len(post.posts)
        result = ThreadResult(account.name, account.network, post.lang, n, queued=n, note=why)
        result.error = why if error else ""
        return result

    try:
        poster = make_poster(account, settings.social, environ)
        limit = poster.limit()
    except PostingError as exc:
        return [stopped(post, str(exc)) for post in posts]
    for i, post in enumerate(posts):
        try:
            parts = _parts(brief, post, limit, settings)
            result = post_thread(
                ledger,
                poster,
                brief.id,
                post.lang,
                parts,
                waits=waits,
                resend_unknown=resend_unknown,
                card=_card(brief, post.lang, settings),
                reporter=reporter,
                label=f"{account.name} {post.lang}",
            )
        except BriefError as exc:  # the post cannot be made at the instance's limit
            result = stopped(post, exc.reason)
        except Exception as exc:  # a poster's bug: this account stops, the others go on
            what = " ".join(f"{type(exc).__name__}: {exc}".split())
            result = stopped(post, f"unexpected error (a bug): {what}")
            result.stop_account = True
        results.append(result)
        if result.stop_account:
            why = f"not tried: {account.name} stopped ({result.note})"
            results += [stopped(p, why, error=False) for p in posts[i + 1 :]]
            break
    return results


def _parts(brief: Brief, post: SocialPost, limit: int, settings: Settings) -> tuple[str, ...]:
    """The post's parts, made again for the account's own limit when a single post was
    built for another (a Mastodon instance allowing more, or less, than 500)."""
    if post.network == "x" or limit == post.limit or len(post.posts) != 1:
        return post.posts
    return network_post(brief, settings.site, post.network, post.lang, limit).posts


def _card(brief: Brief, lang: str, settings: Settings) -> LinkCard:
    """The brief's page, for networks that show a link card (Bluesky)."""
    return LinkCard(
        url=settings.site.brief_url(brief.id, lang),
        title=brief.title_in(lang),
        description=brief.summary_in(lang),
    )
