"""The social channel's scale-out send: one Prefect task per configured account, side by
side, each paced by a fleet-wide rate limit per social network.

Every post an account makes first takes a slot of the network's Prefect global concurrency
limit ``social-<network>``, used as a rate limit (``rate_limit``: the slot is not given
back, it decays at ``slot_decay_per_second``). The limit lives on the Prefect server, so
every task of every send on every worker shares it: the whole fleet stays within
``[workflow] posts_per_minute`` on each network, however many accounts post at once.
``briefcast up`` creates the limits (``social_limits``); where none exists (a Prefect of
your own without them), posting goes on unpaced, with a warning in the run's logs.

The accounts' tasks are submitted at once and run in the send run's thread pool: each one
opens its own database connections and poster, holds its own account's send lock and
touches only its own rows of the send ledger (``briefcast.posting.run``), so they share
nothing but the rate limits. A task waits for a slot at most ``[social] max_wait_seconds``
(unbounded when 0); if none comes, that account stops and its rest is left for the next run,
as when a network itself rate-limits it for longer.
"""

from __future__ import annotations

import math
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import rate_limit
from prefect.futures import wait

from briefcast.channel import Outputs
from briefcast.config import Settings
from briefcast.posting.run import SocialSummary
from channels import social


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


def _artifact_key(*parts: str) -> str:
    return "-".join(parts)[:100].lower()


@task(
    name="send-social-account",
    task_run_name="social-{account}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def send_account(outputs: Outputs, settings: Settings, account: str) -> SocialSummary:
    """One account's posts, each after a slot of its network's fleet-wide rate limit."""
    timeout = settings.social.max_wait_seconds or None

    def before_post(network: str) -> None:
        rate_limit(limit_name(network), timeout_seconds=timeout, strict=False)

    summary = social.send_account(outputs, settings, account, before_post=before_post)
    create_table_artifact(
        key=_artifact_key("social", account, outputs.brief.id),
        table=summary.rows(),
        description=summary.line(),
    )
    return summary


def send_social(outputs: Outputs, settings: Settings) -> SocialSummary:
    """Post the brief from every configured account, one task each (called from a flow):
    the channel's summary, combined from the accounts' in the settings' order."""
    futures: list[Any] = [
        send_account.submit(outputs, settings, name) for name in social.accounts(settings)
    ]
    wait(futures)
    # Every task has ended: the first one that raised (a bug; posting problems are in the
    # summaries) fails the send, the others having done their part.
    summary = social.combine(outputs, [f.result() for f in futures])
    create_table_artifact(
        key=_artifact_key("send-social", outputs.brief.id),
        table=summary.rows(),
        description=summary.line(),
    )
    return summary
