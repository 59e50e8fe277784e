"""A brief's live posting: every configured account posts its network's post (an X thread
when needed) in each of its languages, once only (:mod:`briefcast.posting.thread`).

``post_brief`` posts from every account, one after the other in the settings' order (the
CLI's ``publish --send``); ``post_account`` from one (the scale-out send flow runs one task
per account, side by side). Each account's posting holds that account's send lock
(``social:<brief>:<account>``) and touches only that account's rows of the send ledger, so
two runs never post the same account's parts at once, while different accounts may. An
account that cannot go on (credentials refused, rate-limited beyond ``max_wait_seconds``)
stops there and the others carry on; what it did not post is left for the next run.

``before_post(network)``, when given, is called before each attempt at a post (retries
included, parts already posted or left unknown excluded), before its ledger row says
``sending``: a fleet-wide pacing (the send flow's Prefect rate limit) may block there, and a
run killed while it waits leaves the part queued, not unknown. If it raises, the account
stops there: ``TimeoutError`` (no slot in time) leaves the rest for the next run, anything
else is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from briefcast.brief import Brief
from briefcast.config import AccountSettings, Settings
from briefcast.delivery.lock import BriefBusy, sending
from briefcast.errors import BriefError
from briefcast.posting import LinkCard, PostingError
from briefcast.posting.accounts import make_poster, routes
from briefcast.posting.thread import CHANNEL, ThreadResult, Waits, part_name, post_thread
from briefcast.render.social import SocialPost, headed, headline, network_post
from briefcast.reporting import Reporter, Row, current
from briefcast.send_ledger import (
    Attempt,
    Outcome,
    SendKey,
    SendLedger,
    SendRecord,
    SendStatus,
    Sent,
)
from briefcast.store import Store

BeforePost = Callable[[str], None]  # called with the network's name before each post
NO_ACCOUNTS = "no [[social.accounts]] configured: nothing posted"
NO_POSTS = "no account posts in the brief's languages"
INTERRUPTED = "interrupted while sending: it may or may not have reached the service"


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

    @classmethod
    def combine(cls, brief_id: str, summaries: Iterable[SocialSummary]) -> SocialSummary:
        """One summary of several runs' (e.g. one per account, in the settings' order): the
        same as one run of them all would give."""
        parts = list(summaries)
        threads = [t for s in parts for t in s.threads]
        errors = [s.error for s in parts if s.error]
        notes = list(dict.fromkeys(s.note for s in parts if s.note))
        note = "" if threads else "; ".join(notes) or NO_ACCOUNTS
        return cls(brief_id, threads, note=note, error="; ".join(errors) or None)


def post_brief(
    brief: Brief,
    posts: Sequence[SocialPost],
    settings: Settings,
    *,
    resend_unknown: bool = False,
    environ: Mapping[str, str] = os.environ,
    reporter: Reporter | None = None,
    waits: Waits | None = None,
    before_post: BeforePost | None = None,
) -> SocialSummary:
    """Post ``posts`` (the brief's, as ``render.social`` built them) from every configured
    account whose network and languages they are; safe to re-run at any time."""
    return _post(
        brief,
        posts,
        settings,
        settings.social.accounts,
        resend_unknown=resend_unknown,
        environ=environ,
        reporter=reporter,
        waits=waits,
        before_post=before_post,
    )


def post_account(
    brief: Brief,
    posts: Sequence[SocialPost],
    settings: Settings,
    account: str,
    *,
    resend_unknown: bool = False,
    environ: Mapping[str, str] = os.environ,
    reporter: Reporter | None = None,
    waits: Waits | None = None,
    before_post: BeforePost | None = None,
) -> SocialSummary:
    """``post_brief`` for the configured account named ``account`` only (``ValueError``
    when there is none); ``SocialSummary.combine`` of every account's is ``post_brief``'s."""
    chosen = [a for a in settings.social.accounts if a.name == account]
    if not chosen:
        raise ValueError(f'no [[social.accounts]] named "{account}"')
    return _post(
        brief,
        posts,
        settings,
        chosen,
        resend_unknown=resend_unknown,
        environ=environ,
        reporter=reporter,
        waits=waits,
        before_post=before_post,
    )


def _post(
    brief: Brief,
    posts: Sequence[SocialPost],
    settings: Settings,
    accounts: Sequence[AccountSettings],
    *,
    resend_unknown: bool,
    environ: Mapping[str, str],
    reporter: Reporter | None,
    waits: Waits | None,
    before_post: BeforePost | None,
) -> SocialSummary:
    planned = routes(accounts, posts)
    if not accounts:
        return SocialSummary(brief.id, note=NO_ACCOUNTS)
    if not planned:
        return SocialSummary(brief.id, note=NO_POSTS)
    reporter = reporter or current()
    waits = waits or Waits(settings.social.max_wait_seconds)
    threads: list[ThreadResult] = []
    with Store(settings.database.url) as store:
        for account in accounts:
            mine = [r.post for r in planned if r.account is account]
            if not mine:
                continue
            ledger = _PacedLedger(store, account.network, before_post)
            lock = f"{CHANNEL}:{brief.id}:{account.name}"
            try:
                with sending(store, lock, wait=settings.delivery.lock_wait_seconds):
                    _recover(ledger, brief.id, account.name)
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
                threads += [_stopped(account, post, f"social: {exc}") for post in mine]
    errors = [f"{t.account} ({t.lang}): {t.error}" for t in threads if t.error]
    return SocialSummary(brief.id, threads, error="; ".join(errors) or None)


def _recover(ledger: SendLedger, brief_id: str, account: str) -> None:
    """The account's rows a dead run left ``sending``: ``unknown`` (the other accounts'
    may be another run's, in flight: they are left alone)."""
    for record in ledger.for_brief(brief_id, CHANNEL):
        if record.key.target == account and record.status == SendStatus.SENDING:
            ledger.record_unknown(record.key, INTERRUPTED)


class PacingStopped(Exception):
    """``before_post`` raised: the account stops (``__cause__`` is what it raised)."""


class _PacedLedger(SendLedger):
    """The send ledger, calling ``before_post`` before each attempt it is going to make
    (see the module's docstring), and keeping what each part's last call gave."""

    def __init__(self, store: Store, network: str, before_post: BeforePost | None) -> None:
        super().__init__(store)
        self.network = network
        self.before_post = before_post
        self.outcomes: dict[SendKey, Outcome] = {}

    def send_once(
        self, key: SendKey, fn: Callable[[Attempt], Sent], *, resend_unknown: bool = False
    ) -> Outcome:
        if self.before_post is not None and _will_try(self.get(key), resend_unknown):
            try:
                self.before_post(self.network)
            except Exception as exc:
                raise PacingStopped(" ".join(f"{type(exc).__name__}: {exc}".split())) from exc
        outcome = super().send_once(key, fn, resend_unknown=resend_unknown)
        previous = self.outcomes.get(key)
        called = outcome.called or (previous is not None and previous.called)
        self.outcomes[key] = outcome._replace(called=called)
        return outcome


def _will_try(record: SendRecord | None, resend_unknown: bool) -> bool:
    """Whether ``record_attempt`` will claim this part for a call (its own rule)."""
    status = record.status if record is not None else None
    if status == SendStatus.SENT:
        return False
    return resend_unknown or status not in (SendStatus.SENDING, SendStatus.UNKNOWN)


def _stopped(
    account: AccountSettings, post: SocialPost, why: str, *, error: bool = True
) -> ThreadResult:
    n = len(post.posts)
    result = ThreadResult(account.name, account.network, post.lang, n, queued=n, note=why)
    result.error = why if error else ""
    return result


def _post_account(
    ledger: _PacedLedger,
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
    try:
        poster = make_poster(account, settings.social, environ)
        limit = poster.limit()
    except PostingError as exc:
        return [_stopped(account, post, str(exc)) for post in posts]
    for i, post in enumerate(posts):
        parts = post.posts
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
        except PacingStopped as exc:  # before_post raised: the account stops here
            result = _paced_out(ledger, brief.id, account, post.lang, len(parts), exc)
        except BriefError as exc:  # the post cannot be made at the instance's limit
            result = _stopped(account, post, exc.reason)
        except Exception as exc:  # a poster's bug: this account stops, the others go on
            what = " ".join(f"{type(exc).__name__}: {exc}".split())
            # What the summary says is what the ledger says (the part in flight is unknown).
            result = _from_ledger(ledger, brief.id, account, post.lang, len(parts))
            result.note = result.error = f"unexpected error (a bug): {what}"
            result.stop_account = True
        results.append(result)
        if result.stop_account:
            why = f"not tried: {account.name} stopped ({result.note})"
            results += [_stopped(account, p, why, error=False) for p in posts[i + 1 :]]
            break
    return results


def _from_ledger(
    ledger: _PacedLedger, brief_id: str, account: AccountSettings, lang: str, n: int
) -> ThreadResult:
    """A thread's counts as its ledger rows say them (parts called by this run: ``posted``),
    for a thread whose run ended in an exception: the summary never says other than the
    ledger."""
    result = ThreadResult(account.name, account.network, lang, n)
    for k in range(1, n + 1):
        key = SendKey(brief_id, CHANNEL, account.name, part_name(account.network, lang, k, n))
        record = ledger.get(key)
        status = record.status if record is not None else SendStatus.QUEUED
        outcome = ledger.outcomes.get(key)
        if status == SendStatus.SENT:
            called = outcome is not None and outcome.called
            result.posted += called
            result.before += not called
        elif status in (SendStatus.UNKNOWN, SendStatus.SENDING):
            result.unknown.append(f"{k}/{n}")
        elif status == SendStatus.FAILED:
            result.failed += 1
        else:
            result.queued += 1
    return result


def _paced_out(
    ledger: _PacedLedger,
    brief_id: str,
    account: AccountSettings,
    lang: str,
    n: int,
    exc: PacingStopped,
) -> ThreadResult:
    """The thread cut short by ``before_post``: its parts sent so far (this run's calls or
    an earlier run's, as the ledger answered), the rest queued for the next run."""
    result = ThreadResult(account.name, account.network, lang, n, stop_account=True)
    for k in range(1, n + 1):
        key = SendKey(brief_id, CHANNEL, account.name, part_name(account.network, lang, k, n))
        outcome = ledger.outcomes.get(key)
        if outcome is None or outcome.record.status != SendStatus.SENT:
            break
        result.posted += outcome.called
        result.before += not outcome.called
    result.queued = n - result.done
    if isinstance(exc.__cause__, TimeoutError):
        result.note = f"no {account.network} posting slot in time ({exc}): left for the next run"
    else:
        result.note = result.error = f"posting pace failed ({exc}): left for the next run"
    return result


def _parts(brief: Brief, post: SocialPost, limit: int, settings: Settings) -> tuple[str, ...]:
    """The post's parts, made again for the account's own limit when a single post was
    built for another (a Mastodon instance allowing more, or less, than 500)."""
    if post.network == "x" or limit == post.limit or len(post.posts) != 1:
        return post.posts
    return network_post(brief, settings.site, post.network, post.lang, limit).posts


def _card(brief: Brief, lang: str, settings: Settings) -> LinkCard:
    """What the post links to (the brief's page, or the link it chose), for networks that
    show a link card (Bluesky)."""
    # In the post's language, as the post: never another language's title.
    return LinkCard(
        url=brief.post_link(lang, settings.site.brief_url(brief.id, lang)),
        title=headline(brief, lang),
        description=headed(brief, lang)[1],
    )
