"""Posting to X with tweepy: API v2 ``POST /2/tweets``, OAuth 1.0a user context.

The four credentials of an X app's user (consumer key and secret, access token and secret)
come from the environment: ``BRIEFCAST_SOCIAL_<NAME>_API_KEY``, ``_API_SECRET``,
``_ACCESS_TOKEN``, ``_ACCESS_SECRET``. ``check`` asks ``GET /2/users/me``; ``post`` creates one
tweet, a reply (``in_reply_to_tweet_id``) for a thread's later parts.

tweepy writes its host into every request (``https://api.twitter.com`` + route). The account's
``base_url`` (``https://api.x.com`` by default; a local fake in the tests) is reached through
tweepy's own ``requests`` session: a transport adapter mounted there for tweepy's hosts sends
each request to ``base_url`` instead, signed again for the URL it really goes to (an OAuth 1.0a
signature covers the URL), within our timeout for the whole request and with an answer of
bounded size (``briefcast.posting.http``; tweepy sets none), and never retried.

How a call ended, for the ledger:

- 2xx with the tweet's id: posted;
- 429: ``RateLimited``, until ``x-rate-limit-reset`` (read by its shape; unreadable: no time);
- 403 "duplicate content": X already has this text from this account, most likely our own
  earlier attempt that was lost on the way back: ``MaybePosted``;
- 401: ``CredentialsRejected`` (the request was not taken: nothing can be posted);
- another 403: ``CredentialsRejected`` on ``check``, ``PostFailed`` on a post (X refused
  this post: a permission or content rule);
- 503 (over capacity: nothing done): ``PostFailed(retry=True)``; another 5xx on a post (a
  500, a proxy's 502 or 504 may come after the tweet was made): ``MaybePosted``; on ``check``
  ``PostFailed(retry=True)``; other 4xx: ``PostFailed``;
- no connection (refused, DNS, connect timeout): ``PostFailed(retry=True)``, nothing left;
- a read timeout (or the whole request's deadline), a connection lost after the request went
  out, an answer too large to read: ``MaybePosted``;
- a 2xx without a readable tweet id: ``MaybePosted``.

X has no idempotency key: the ledger's ``unknown`` state is the only guard against a second
copy, and X's own duplicate-content check the last one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
import tweepy
from requests_oauthlib import OAuth1
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from briefcast.config import DEFAULT_API, AccountSettings, SocialSettings
from briefcast.posting import (
    CredentialsRejected,
    LinkCard,
    MaybePosted,
    PostFailed,
    PostingError,
    PostRef,
    RateLimited,
    Reply,
    one_line,
    ratelimit,
)
from briefcast.posting.http import DEFAULT_TIMEOUT, BoundedAdapter
from briefcast.render.social import X_LIMIT

KEYS = ("API_KEY", "API_SECRET", "ACCESS_TOKEN", "ACCESS_SECRET")
# Where tweepy sends its requests (its code says api.twitter.com; newer releases api.x.com).
TWEEPY_HOSTS = ("https://api.twitter.com/", "https://api.x.com/")
WEB = "https://x.com"
RESET_HEADER = "x-rate-limit-reset"  # when a 429 lifts (else Retry-After)


class BaseUrlAdapter(BoundedAdapter):
    """Mounted on tweepy's session for tweepy's hosts: each request goes to ``base_url``
    (same path and query), signed for that URL, within ``timeout`` seconds all told."""

    def __init__(self, base_url: str, auth: OAuth1, timeout: float) -> None:
        super().__init__(timeout)  # never retried: a POST retried by urllib3 could post twice
        self._base = base_url.rstrip("/")
        self._auth = auth

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        request.url = self._base + url.path + (f"?{url.query}" if url.query else "")
        if str(request.headers.get("Authorization", "")).startswith("OAuth "):
            del request.headers["Authorization"]
            self._auth(request)  # signed again: the signature covers the URL
        # requests chose the proxies for tweepy's host; choose them for the real one
        kwargs["proxies"] = requests.utils.get_environ_proxies(request.url or "")
        return super().send(request, **kwargs)


class XPoster:
    """An X account posting through API v2 (``Poster``)."""

    network = "x"

    def __init__(
        self,
        account: str,
        credentials: Mapping[str, str],
        *,
        base_url: str = DEFAULT_API["x"],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.account = account
        self._base_url = base_url.rstrip("/")
        keys = [credentials[k] for k in KEYS]
        self._client = tweepy.Client(
            consumer_key=keys[0],
            consumer_secret=keys[1],
            access_token=keys[2],
            access_token_secret=keys[3],
        )
        self._adapter = BaseUrlAdapter(self._base_url, OAuth1(*keys), timeout)
        for host in TWEEPY_HOSTS:
            self._client.session.mount(host, self._adapter)
        self.handle = ""  # "@name" once check() has asked

    @classmethod
    def from_account(
        cls,
        account: AccountSettings,
        settings: SocialSettings,
        environ: Mapping[str, str] = os.environ,
    ) -> XPoster:
        """The account's poster; its credentials from BRIEFCAST_SOCIAL_<NAME>_<KEY>."""
        if account.network != cls.network:
            raise ValueError(f'account "{account.name}" is a {account.network} account')
        credentials = {key: environ.get(account.env_name(key), "").strip() for key in KEYS}
        missing = [account.env_name(key) for key, value in credentials.items() if not value]
        if missing:
            raise CredentialsRejected(
                f'x account "{account.name}": {", ".join(missing)} '
                f"{'is' if len(missing) == 1 else 'are'} not set"
            )
        return cls(
            account.name, credentials, base_url=account.base_url, timeout=settings.timeout_seconds
        )

    # --- Poster -------------------------------------------------------------------------

    def check(self) -> str:
        self._adapter.last = None
        try:
            me = self._client.get_me(user_auth=True)
        except Exception as exc:
            self._fail(exc, "check the credentials", posting=False)
        username = getattr(me.data, "username", None) if me is not None else None
        if not username:
            raise PostFailed(f"{self._where('check the credentials')}: no user in the answer")
        self.handle = f"@{username}"
        return self.handle

    def limit(self) -> int:
        return X_LIMIT

    def post(
        self,
        text: str,
        *,
        lang: str,
        reply: Reply | None,
        idempotency_key: str,
        card: LinkCard | None = None,
    ) -> PostRef:
        # X detects the language itself, has no idempotency key and makes its own card from
        # the link's Open Graph tags.
        del lang, idempotency_key, card
        self._adapter.last = None
        try:
            created = self._client.create_tweet(
                text=text,
                in_reply_to_tweet_id=reply.parent.id if reply is not None else None,
                user_auth=True,
            )
        except Exception as exc:
            self._fail(exc, "post", posting=True)
        data = getattr(created, "data", None)
        tweet_id = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(tweet_id, bool) or not isinstance(tweet_id, str | int) or tweet_id == "":
            # X took the request (a 2xx) but its answer does not say the tweet: it may exist.
            raise MaybePosted(f"{self._where('post')}: answered without the tweet's id")
        return PostRef(id=str(tweet_id), url=f"{WEB}/i/web/status/{tweet_id}")

    # --- outcomes -------------------------------------------------------------------------

    def _where(self, doing: str) -> str:
        return f"x {self.account} ({self._base_url}): {doing}"

    def _fail(self, exc: Exception, doing: str, *, posting: bool) -> NoReturn:
        raise self._error(exc, doing, posting=posting) from exc

    def _error(self, exc: Exception, doing: str, *, posting: bool) -> PostingError:
        """What ``exc``, raised while ``doing``, says of the post (see the module's docstring)."""
        where = self._where(doing)
        if isinstance(exc, tweepy.HTTPException):
            status = exc.response.status_code
            said = f"{where}: {one_line(exc)}"
            if status == 429:
                return RateLimited(
                    said, reset_at=ratelimit.reset_at(exc.response.headers, RESET_HEADER)
                )
            if status >= 500 and posting and status != 503:
                # A 500, 502 or 504 can come after X made the tweet (a proxy's 502 after the
                # server got it): only 503, "over capacity", says nothing was done. As
                # Mastodon's poster: retried only when provably not posted.
                return MaybePosted(f"{said} (X may have made the tweet before failing)")
            if status == 403 and _duplicate(exc):
                return MaybePosted(f"{said} (X has this text already: an earlier attempt?)")
            if status == 401 or (status == 403 and not posting):
                return CredentialsRejected(said)
            return PostFailed(said, retry=status >= 500)
        what = one_line(f"{type(exc).__name__}: {exc}")
        answer = self._adapter.last
        if answer is not None and answer.status_code == 429:
            # tweepy itself failed over the 429 (it reads x-rate-limit-reset as an int): a 429
            # is a refusal all the same, its reset read here, or none.
            said = f"{where}: 429 Too Many Requests ({what})"
            return RateLimited(said, reset_at=ratelimit.reset_at(answer.headers, RESET_HEADER))
        if isinstance(exc, requests.exceptions.SSLError):
            return PostFailed(f"{where}: TLS failed ({what})")
        if isinstance(exc, requests.exceptions.ConnectTimeout) or _never_connected(exc):
            return PostFailed(f"{where}: cannot reach X ({what})", retry=True)
        if isinstance(exc, requests.exceptions.RequestException):
            if posting:  # the request went out: the tweet may exist
                return MaybePosted(f"{where}: no answer after sending the tweet ({what})")
            return PostFailed(f"{where}: no answer ({what})", retry=True)
        if posting:  # an answer we could not read
            return MaybePosted(f"{where}: {what}")
        return PostFailed(f"{where}: {what}")


def _duplicate(exc: tweepy.HTTPException) -> bool:
    said = " ".join([*map(str, exc.api_messages), exc.response.text or ""]).lower()
    return "duplicate" in said


def _never_connected(exc: BaseException) -> bool:
    """Whether the request failed before a connection was made (refused, DNS, connect
    timeout): then nothing reached X."""
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        cause = stack.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, NewConnectionError | ConnectTimeoutError):
            return True
        stack += [getattr(cause, "reason", None), cause.__cause__, cause.__context__]
        stack += [a for a in getattr(cause, "args", ()) if isinstance(a, BaseException)]
    return False


def from_account(
    account: AccountSettings, settings: SocialSettings, environ: Mapping[str, str] = os.environ
) -> XPoster:
    """``XPoster.from_account``."""
    return XPoster.from_account(account, settings, environ)
