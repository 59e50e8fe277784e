"""Posting to a Mastodon account (or any server speaking Mastodon's API) with Mastodon.py.

How a call ends is decided here, from what the server answered or how the connection broke
(the outcomes are described in ``briefcast.posting``):

- 2xx with a status id: ``PostRef``. Mastodon.py can raise on a 2xx whose rate-limit header it
  cannot parse; the post was taken all the same, so the answer itself is read (the session's
  response hook keeps the last one).
- 429: ``RateLimited``, ``reset_at`` from ``Retry-After``, ``RateLimit-Reset`` or
  ``X-RateLimit-Reset`` (the latest of those given, each read by its value's shape), moved
  onto our clock by the answer's ``Date``. Mastodon.py is told to throw
  (``ratelimit_method="throw"``): the caller waits.
- 401, 403: ``CredentialsRejected`` (a revoked token, a missing scope, a suspended account).
- 503 (Mastodon's "temporary problem, please try again", a proxy with no server behind it),
  408 and 425: ``PostFailed(retry=True)``: the server says the post was not made.
- any other 4xx (422 "Validation failed", 404 for a deleted parent): ``PostFailed``.
- any other 5xx (500, 502, 504, ...): ``MaybePosted`` when posting. A 500 can come after the
  status was saved, and a proxy's 502 or 504 after the server got the request.
- the connection failed: ``PostFailed(retry=True)`` only when the request provably never left
  (refused, name not resolved, connect timeout, a certificate refused, the proxy failed);
  anything else (a read timeout, a connection dropped before the answer) is ``MaybePosted``.

Every post carries the caller's ``Idempotency-Key``: Mastodon answers a repeat of it within an
hour with the status it already made, so a resend of a ``MaybePosted`` part made soon with the
same key cannot post twice.

A poster is not thread-safe: it keeps the last answer seen to classify the next error.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from mastodon import Mastodon, MastodonError, MastodonNetworkError
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProxyError

from briefcast.config import AccountSettings, SocialSettings
from briefcast.posting import (
    CredentialsRejected,
    LinkCard,
    MaybePosted,
    PostFailed,
    PostingError,
    PostRef,
    RateLimited,
    Reply,
    ratelimit,
)
from briefcast.posting.http import bound_session
from briefcast.render.social import MASTODON_LIMIT

NETWORK = "mastodon"
USER_AGENT = "briefcast"
RETRYABLE = frozenset({408, 425, 503})  # the server says nothing was done: try again later
SERVER_TEXT_MAX = 200  # of the server's error text quoted in a message


class _Response(Protocol):
    """What we read of a ``requests.Response`` (the session's response hook hands it over)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...


def from_account(
    account: AccountSettings,
    settings: SocialSettings,
    environ: Mapping[str, str] = os.environ,
) -> MastodonPoster:
    """The poster of ``account``, its access token from ``account.env_name("ACCESS_TOKEN")``."""
    if account.network != NETWORK:
        raise ValueError(f'account "{account.name}" is on {account.network}, not {NETWORK}')
    variable = account.env_name("ACCESS_TOKEN")
    token = environ.get(variable, "").strip()  # "$(cat file)" may bring a newline
    if not token:
        raise CredentialsRejected(
            f"{NETWORK} {account.name}: no access token: set {variable} "
            "(a token of an application with the write:statuses scope)"
        )
    return MastodonPoster(
        account.name, account.base_url, token, timeout_seconds=settings.timeout_seconds
    )


class MastodonPoster:
    network: str = NETWORK

    def __init__(
        self, account: str, base_url: str, access_token: str, *, timeout_seconds: float
    ) -> None:
        self.account = account
        self.base_url = base_url.rstrip("/")
        self._api = Mastodon(
            access_token=access_token,
            api_base_url=self.base_url,
            request_timeout=timeout_seconds,
            ratelimit_method="throw",  # a 429 is raised; the caller decides how long to wait
            version_check_mode="none",  # no /api/v1/instance round trip, no version refusals
            user_agent=USER_AGENT,
        )
        # The whole request within timeout_seconds, its answer of bounded size (Mastodon.py
        # gives requests a per-read timeout only).
        bound_session(self._api.session, timeout_seconds)
        self._last: _Response | None = None
        self._api.session.hooks["response"].append(self._remember)
        self._instance: Mapping[str, Any] | None = None
        self._instance_read = False
        self._limit: int | None = None

    def _remember(self, response: _Response, *args: Any, **kwargs: Any) -> None:
        self._last = response

    def _where(self) -> str:
        return f"{NETWORK} {self.account}"

    # --- the Poster interface ----------------------------------------------------------------

    def check(self) -> str:
        """``@username@domain``, the domain as the instance names itself (a server may answer
        for a shorter domain than its own host), else the API's host."""
        self._last = None
        try:
            account = self._api.account_verify_credentials()
        except MastodonNetworkError as exc:
            raise PostFailed(
                f"{self._where()}: cannot reach {self.base_url}: {_one_line(exc)}", retry=True
            ) from exc
        except MastodonError as exc:
            raise self._refused(exc, posting=False) from exc
        username = _field(account, "username")
        if not isinstance(username, str) or not username:
            raise PostFailed(f"{self._where()}: {self.base_url} did not name the account")
        domain = _field(self._read_instance(), "domain")
        if not isinstance(domain, str) or not domain:
            domain = urlsplit(self.base_url).hostname or self.base_url
        return f"@{username}@{domain}"

    def limit(self) -> int:
        """The instance's ``configuration.statuses.max_characters`` (``/api/v2/instance``),
        else 500. Read once: every part a poster sends is cut to the same measure."""
        if self._limit is None:
            value = _field(self._read_instance(), "configuration", "statuses", "max_characters")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                self._limit = value
            else:
                self._limit = MASTODON_LIMIT  # Mastodon's own default
        return self._limit

    def post(
        self,
        text: str,
        *,
        lang: str,
        reply: Reply | None,
        idempotency_key: str,
        card: LinkCard | None = None,  # Mastodon makes its own card from the post's link
    ) -> PostRef:
        self._last = None
        try:
            status = self._api.status_post(
                text,
                in_reply_to_id=reply.parent.id if reply is not None else None,
                language=lang,
                idempotency_key=idempotency_key,
                visibility="public",
            )
        except MastodonNetworkError as exc:
            raise self._broken(exc) from exc
        except MastodonError as exc:
            taken = self._last
            if taken is None or not 200 <= taken.status_code < 300:
                raise self._refused(exc, posting=True) from exc
            # Taken, though Mastodon.py raised over the answer (a rate-limit header it could not
            # parse, say): the status is in the answer.
            try:
                status = taken.json()
            except ValueError:
                raise MaybePosted(
                    f"{self._where()}: the server took the post ({taken.status_code}) "
                    f"but its answer is unreadable: {_one_line(exc)}"
                ) from exc
        status_id = _field(status, "id")
        if not isinstance(status_id, str | int) or isinstance(status_id, bool) or status_id == "":
            raise MaybePosted(f"{self._where()}: the server answered without a status id")
        url = _field(status, "url")
        return PostRef(id=str(status_id), url=url if isinstance(url, str) else "")

    # --- outcomes ----------------------------------------------------------------------------

    def _read_instance(self) -> Mapping[str, Any] | None:
        """``/api/v2/instance``, asked once (None when it could not be read: 404 before
        Mastodon 4.0, an instance that hides it, the network)."""
        if not self._instance_read:
            self._instance_read = True
            try:
                info = self._api.instance_v2()
            except MastodonError:
                info = None
            self._instance = info if isinstance(info, Mapping) else None
        return self._instance

    def _broken(self, exc: MastodonNetworkError) -> PostingError:
        """A post's connection failed: was the request sent?"""
        if _never_sent(exc):
            return PostFailed(
                f"{self._where()}: cannot reach {self.base_url}: {_one_line(exc)}", retry=True
            )
        return MaybePosted(
            f"{self._where()}: no answer after the post was sent, it may exist: {_one_line(exc)}"
        )

    def _refused(self, exc: MastodonError, *, posting: bool) -> PostingError:
        """The server answered with an error (or Mastodon.py refused before sending)."""
        response = self._last
        if response is None:  # nothing came back: Mastodon.py gave up before sending
            return PostFailed(f"{self._where()}: {_one_line(exc)}")
        code = response.status_code
        said = _server_error(response) or response.reason or "no reason given"
        what = f"{self._where()}: {self.base_url} answered {code} ({said})"
        if code == 429:
            reset_at = _reset_at(response.headers, time.time())
            if not posting:  # check() promises CredentialsRejected or PostFailed only
                return PostFailed(f"{what}: rate limited{_until(reset_at)}", retry=True)
            return RateLimited(f"{what}: rate limited{_until(reset_at)}", reset_at=reset_at)
        if code in (401, 403):
            return CredentialsRejected(f"{what}: the access token is refused or cannot post")
        if code in RETRYABLE:
            return PostFailed(what, retry=True)
        if code < 500 or not posting:
            return PostFailed(what, retry=code >= 500)
        return MaybePosted(f"{what}: the server may have made the post before failing")


# --- the pieces --------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: causes, contexts, exception arguments (requests wraps
    urllib3's errors in its own), a ``MaxRetryError``'s reason."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner: list[object] = [current.__cause__, current.__context__, *current.args]
        if isinstance(current, MaxRetryError):
            inner.append(current.reason)
        todo.extend(e for e in inner if isinstance(e, BaseException))


def _never_sent(exc: BaseException) -> bool:
    """Proof that the request never left: the connection was not made (refused, name not
    resolved, connect timeout; urllib3's ``NewConnectionError`` is a ``ConnectTimeoutError``),
    the server's certificate was refused, or the proxy failed. A read timeout, a reset or a
    close before the answer prove nothing: the server may have the request."""
    return any(
        isinstance(e, ConnectTimeoutError | ProxyError | ssl.SSLCertVerificationError)
        for e in _chain(exc)
    )


def _reset_at(headers: Mapping[str, str], now: float) -> float | None:
    """When the rate limit lifts, as Unix time on our clock: the latest of ``Retry-After``,
    ``RateLimit-Reset`` and ``X-RateLimit-Reset``, each read by its value's shape (an HTTP
    date, an ISO 8601 date, a Unix time or seconds: ``ratelimit.reset``), since servers
    speaking Mastodon's API differ on what each carries (Mastodon: seconds and an ISO date;
    GoToSocial and others: a Unix time). Dates are the server's: moved by the difference
    between its ``Date`` and our clock."""
    skew = ratelimit.skew(headers.get("Date"), now)
    names = ("Retry-After", "RateLimit-Reset", "X-RateLimit-Reset")
    times = [t for name in names if (t := ratelimit.reset(headers.get(name), now, skew))]
    return max(times) if times else None


def _until(reset_at: float | None) -> str:
    if reset_at is None:
        return " (no reset time given)"
    return f" until {ratelimit.utc(reset_at, '%Y-%m-%d %H:%M:%S UTC')}"


def _server_error(response: _Response) -> str:
    """The ``error`` of a Mastodon error answer, on one line and short."""
    try:
        body = response.json()
    except ValueError:
        return ""
    said = _field(body, "error")
    return _one_line(said)[:SERVER_TEXT_MAX] if isinstance(said, str) else ""


def _field(data: object, *path: str) -> object:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
