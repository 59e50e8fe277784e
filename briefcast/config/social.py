"""``[social]``: the accounts posted from and how long a post may wait."""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Field

from briefcast.config.fields import Languages, Section, esc, is_http, seconds_field


def _account_name(name: str) -> str:
    # The name picks the account's credentials from the environment
    # (BRIEFCAST_SOCIAL_<NAME>_<KEY>, dashes as underscores) and keys its ledger rows.
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", name) or len(name) > 40:
        raise ValueError(
            f'"{esc(name)}" is not an account name: lower-case letters, digits and dashes'
        )
    return name


def _api_url(url: str) -> str:
    if not is_http(url):
        raise ValueError(f'"{esc(url)}" is not an absolute http(s) URL')
    return url.rstrip("/")


# The networks an account may post to, written once: the field's type and the list.
Network = Literal["x", "mastodon", "bluesky"]
SOCIAL_NETWORKS: tuple[str, ...] = get_args(Network)

# Where each network's API is when an account does not say (tests point at local fakes).
DEFAULT_API = {
    "x": "https://api.x.com",
    "mastodon": "https://mastodon.social",
    "bluesky": "https://bsky.social",
}


class AccountSettings(Section):
    """One account the desk posts from. Its credentials come only from the environment:
    BRIEFCAST_SOCIAL_<NAME>_<KEY> (see README, "Posting to social networks")."""

    name: Annotated[str, AfterValidator(_account_name)]
    network: Network
    languages: Languages  # the briefs' languages this account posts
    api_url: Annotated[str, AfterValidator(_api_url)] | None = None  # None: DEFAULT_API
    handle: str | None = None  # Bluesky: the handle to log in with (e.g. desk.bsky.social)

    @property
    def base_url(self) -> str:
        return self.api_url or DEFAULT_API[self.network]

    def env_name(self, key: str) -> str:
        """The environment variable holding this account's ``key`` (e.g. ACCESS_TOKEN)."""
        return f"BRIEFCAST_SOCIAL_{self.name.upper().replace('-', '_')}_{key.upper()}"


def _unique_accounts(accounts: list[AccountSettings]) -> list[AccountSettings]:
    names = [a.name for a in accounts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f'account "{twice[0]}" is named twice')
    return accounts


class SocialSettings(Section):
    """Live posting (``publish --send``): the accounts, and how long to wait when a network
    says "too many requests" before leaving that account's rest for the next run."""

    accounts: Annotated[list[AccountSettings], AfterValidator(_unique_accounts)] = Field(
        default_factory=list, max_length=50
    )
    max_wait_seconds: float = seconds_field(900, ge=0)  # longest single rate-limit wait
    timeout_seconds: float = seconds_field(30, gt=0)  # per API request
