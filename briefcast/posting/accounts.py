"""The configured accounts (``[[social.accounts]]``): their posters, which posts each one
makes, and the check that every one of them can post before anything is sent.

Each network's poster lives in ``briefcast.posting.<network>`` and is made by that module's
``from_account(account, settings, environ)``; the credentials come from the environment
(``BRIEFCAST_SOCIAL_<NAME>_<KEY>``, see ``AccountSettings.env_name``).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from briefcast.config import AccountSettings, SocialSettings
from briefcast.errors import UserError
from briefcast.posting import Poster, PostingError, RateLimited, ratelimit
from briefcast.render.social import SocialPost

# A check that passed is not asked again for this long by the same process: `publish --send`
# checks before the flow starts and the flow checks again, and X allows few /2/users/me calls.
CHECK_TTL_SECONDS = 600.0
_checked: dict[tuple[str, ...], tuple[str, float]] = {}


class SocialNotReady(UserError):
    """An account that cannot post: its credentials are missing or refused."""


def make_poster(
    account: AccountSettings, settings: SocialSettings, environ: Mapping[str, str] = os.environ
) -> Poster:
    """The account's poster (``briefcast.posting.<network>.from_account``); raises
    ``CredentialsRejected`` when a credential is missing."""
    module = importlib.import_module(f"briefcast.posting.{account.network}")
    return cast(Poster, module.from_account(account, settings, environ))


def posters(settings: SocialSettings, environ: Mapping[str, str] = os.environ) -> list[Poster]:
    """Every configured account's poster, in the settings' order."""
    return [make_poster(account, settings, environ) for account in settings.accounts]


@dataclass(frozen=True)
class Route:
    """One post (a thread, on X) that one account makes."""

    account: AccountSettings
    post: SocialPost


def routes(accounts: Sequence[AccountSettings], posts: Sequence[SocialPost]) -> list[Route]:
    """Each account posts its network's post in each of its languages the brief has."""
    return [
        Route(account, post)
        for account in accounts
        for post in posts
        if post.network == account.network and post.lang in account.languages
    ]


@dataclass(frozen=True)
class AccountCheck:
    """An account's handle, or its one-line problem."""

    account: AccountSettings
    handle: str = ""
    problem: str = ""
    rate_limited: bool = False  # could not be verified now; the credentials were not refused

    @property
    def ok(self) -> bool:
        return not self.problem


def check_account(
    account: AccountSettings,
    settings: SocialSettings,
    environ: Mapping[str, str] = os.environ,
) -> AccountCheck:
    """Ask the network whether the account's credentials work (nothing is posted)."""
    key = _check_key(account, environ)
    handle, when = _checked.get(key, ("", 0.0))
    if handle and time.monotonic() - when < CHECK_TTL_SECONDS:
        return AccountCheck(account, handle)
    try:
        handle = make_poster(account, settings, environ).check()
    except RateLimited as exc:
        until = ""
        if exc.reset_at is not None:
            until = " until " + ratelimit.utc(exc.reset_at)
        problem = f"{exc} (rate limited{until}: the credentials could not be checked)"
        return AccountCheck(account, problem=problem, rate_limited=True)
    except PostingError as exc:
        return AccountCheck(account, problem=str(exc) or type(exc).__name__)
    _checked[key] = (handle, time.monotonic())
    return AccountCheck(account, handle)


def check_all(
    settings: SocialSettings, environ: Mapping[str, str] = os.environ
) -> list[AccountCheck]:
    """Every configured account, checked in the settings' order."""
    return [check_account(account, settings, environ) for account in settings.accounts]


def check_ready(settings: SocialSettings, environ: Mapping[str, str] = os.environ) -> None:
    """Raise ``SocialNotReady`` naming every account whose credentials are missing or
    refused (or whose network cannot be reached). An account the network only rate-limits
    now is let through: its credentials were not refused, and posting waits or leaves its
    posts for the next run."""
    problems = [c.problem for c in check_all(settings, environ) if not c.ok and not c.rate_limited]
    if problems:
        raise SocialNotReady("; ".join(" ".join(p.split()) for p in problems))


def _check_key(account: AccountSettings, environ: Mapping[str, str]) -> tuple[str, ...]:
    """What a check depends on: the account's settings and its variables' values (hashed)."""
    prefix = account.env_name("")
    secrets = sorted((k, v) for k, v in environ.items() if k.startswith(prefix))
    digest = hashlib.sha256(repr(secrets).encode()).hexdigest()
    return (account.model_dump_json(), digest)
