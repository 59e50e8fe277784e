"""Posting to Bluesky with the atproto SDK: one session on the account's PDS, one record per post.

The session is an app password's (``createSession``), opened on the first call that needs it
and kept for the poster's life; atproto refreshes its access token as it nears expiry, and an
expired or revoked token met on a post (nothing is written then) is answered by one new login.

A post is an ``app.bsky.feed.post`` record: the text, its links as facets (UTF-8 byte ranges;
Bluesky makes nothing a link by itself), ``langs``, the reply's root and parent as strong
references (URI + CID), and the brief's page as an external embed (a card, no thumbnail).

How a call ended is read off what atproto raises (it wraps httpx): a status answer (401, 429,
400, 500...) is certain; a transport failure is certain only when the request never left
(refused or timed-out connection); any other failure after ``createRecord`` was sent (a read
timeout, the whole request's deadline, a dropped connection, a 5xx other than 503, an
answer we cannot read or too large to read) may have written the record, so it is
``MaybePosted``. Which request was the last to leave is known
from httpx's request hook. Bluesky has no idempotent create (a repeated record key is a 500),
so ``idempotency_key`` is not sent: the ledger's "unknown" state is the only guard.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import httpx
from atproto import AtUri, Client, Request, Session, SessionEvent, client_utils, models
from atproto.exceptions import RequestErrorBase

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
from briefcast.posting.http import DEFAULT_TIMEOUT, BoundedTransport
from briefcast.render.social import BLUESKY_LIMIT

PASSWORD_KEY = "APP_PASSWORD"
CREATE_RECORD = "com.atproto.repo.createRecord"
WEB = "https://bsky.app"
RESET_HEADER = "ratelimit-reset"  # when a 429 lifts (else Retry-After)

# The links in a post: what render/social.py puts there (the brief's page, and any URL of the
# teaser), less the punctuation a sentence ends with, as Bluesky's own link detection does.
_URL = re.compile(r"https?://\S+")
_TRAILING = ".,;:!?\"'"
# Failures of a request that never reached the server: certainly not posted.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
    httpx.LocalProtocolError,
)
# A 400 a PDS answers for an access token it no longer takes (401 is the other way it says so).
_TOKEN_ERRORS = ("ExpiredToken", "InvalidToken")


def link_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) character spans of the links in text."""
    spans = []
    for m in _URL.finditer(text):
        url = m[0].rstrip(_TRAILING)
        if url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1].rstrip(_TRAILING)
        if url.partition("://")[2]:
            spans.append((m.start(), m.start() + len(url)))
    return spans


def rich_text(text: str) -> client_utils.TextBuilder:
    """The text with each link a link facet (TextBuilder counts its UTF-8 byte offsets)."""
    builder = client_utils.TextBuilder()
    pos = 0
    for start, end in link_spans(text):
        builder.text(text[pos:start]).link(text[start:end], text[start:end])
        pos = end
    return builder.text(text[pos:])


def post_url(uri: str) -> str:
    """Where a person sees the post at://<did>/app.bsky.feed.post/<rkey>."""
    at = AtUri.from_str(uri)
    return f"{WEB}/profile/{at.hostname}/post/{at.rkey}"


def _strong(ref: PostRef) -> models.ComAtprotoRepoStrongRef.Main:
    if not ref.cid:
        raise PostFailed(f"cannot reply to {ref.id}: its CID is not known")
    return models.ComAtprotoRepoStrongRef.Main(uri=ref.id, cid=ref.cid)


def _token_refused(exc: BaseException) -> bool:
    """Whether the PDS refused the session's token (nothing was written)."""
    if not isinstance(exc, RequestErrorBase) or exc.response is None:
        return False
    if exc.response.status_code == 401:
        return True
    content = exc.response.content
    return exc.response.status_code == 400 and getattr(content, "error", None) in _TOKEN_ERRORS


class BlueskyPoster:
    """A Bluesky account posting through its PDS (``Poster``)."""

    network = "bluesky"

    def __init__(
        self,
        account: str,
        handle: str,
        app_password: str,
        *,
        base_url: str = DEFAULT_API["bluesky"],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.account = account
        self._login = handle
        self._password = app_password
        self._base_url = base_url
        self._timeout = timeout
        self._client: Client | None = None
        self._session: Session | None = None  # what the PDS said at login: did, handle
        self._last_call = ""  # the NSID of the last request that left (see _sending)

    @classmethod
    def from_account(
        cls,
        account: AccountSettings,
        settings: SocialSettings,
        environ: Mapping[str, str] = os.environ,
    ) -> BlueskyPoster:
        """The account's poster; its app password from BRIEFCAST_SOCIAL_<NAME>_APP_PASSWORD."""
        if account.network != cls.network:
            raise ValueError(f'account "{account.name}" is a {account.network} account')
        handle = (account.handle or "").strip()
        if not handle:
            raise CredentialsRejected(
                f'bluesky account "{account.name}": no handle; set "handle" in its '
                "[[social.accounts]] entry (e.g. desk.bsky.social)"
            )
        variable = account.env_name(PASSWORD_KEY)
        password = environ.get(variable, "").strip()
        if not password:
            raise CredentialsRejected(
                f'bluesky account "{account.name}": {variable} is not set (an app password)'
            )
        return cls(
            account.name,
            handle,
            password,
            base_url=account.base_url,
            timeout=settings.timeout_seconds,
        )

    # --- Poster -------------------------------------------------------------------------

    def check(self) -> str:
        self._connected()
        assert self._session is not None
        return self._session.handle

    def limit(self) -> int:
        return BLUESKY_LIMIT

    def post(
        self,
        text: str,
        *,
        lang: str,
        reply: Reply | None,
        idempotency_key: str,
        card: LinkCard | None = None,
    ) -> PostRef:
        del idempotency_key  # Bluesky has none (see the module's docstring)
        builder = rich_text(text)
        reply_to = None
        if reply is not None:
            reply_to = models.AppBskyFeedPost.ReplyRef(
                root=_strong(reply.root), parent=_strong(reply.parent)
            )
        embed = None
        if card is not None:
            embed = models.AppBskyEmbedExternal.Main(
                external=models.AppBskyEmbedExternal.External(
                    uri=card.url, title=card.title, description=card.description
                )
            )
        return self._send(builder, lang, reply_to, embed, login_again=True)

    def _send(
        self,
        builder: client_utils.TextBuilder,
        lang: str,
        reply_to: models.AppBskyFeedPost.ReplyRef | None,
        embed: models.AppBskyEmbedExternal.Main | None,
        *,
        login_again: bool,
    ) -> PostRef:
        client = self._connected()
        assert self._session is not None
        self._last_call = ""
        try:
            created = client.send_post(
                builder,
                profile_identify=self._session.did,
                reply_to=reply_to,
                embed=embed,
                langs=[lang],
            )
            return PostRef(id=created.uri, cid=created.cid, url=post_url(created.uri))
        except Exception as exc:
            if not (login_again and _token_refused(exc)):
                raise self._error(exc, "post") from exc
        self.close()  # the session is gone (nothing was written): log in again, once
        return self._send(builder, lang, reply_to, embed, login_again=False)

    # --- the session ----------------------------------------------------------------------

    def close(self) -> None:
        """Drop the session and its connections (the next call logs in again)."""
        if self._client is not None:
            self._client.request.close()
        self._client = self._session = None

    def _connected(self) -> Client:
        """The logged-in client, logging in on first use."""
        if self._client is not None and self._session is not None:
            return self._client
        # The whole request within the timeout, its answer of bounded size (httpx's timeout
        # is per read): briefcast.posting.http.
        request = Request(
            timeout=self._timeout,
            event_hooks={"request": [self._sending]},
            transport=BoundedTransport(self._timeout),
        )
        client = Client(base_url=self._base_url, request=request)
        client.on_session_change(self._session_changed)
        self._last_call = ""
        try:
            # Not the Bluesky profile: the session says the DID, and the app view (a second
            # service) need not answer for a post to be made.
            client.login(self._login, self._password, fetch_bsky_profile=False)
        except Exception as exc:
            request.close()
            self._session = None
            raise self._error(exc, "log in") from exc
        self._client = client
        return client

    def _session_changed(self, event: SessionEvent, session: Session) -> None:
        self._session = session

    def _sending(self, request: httpx.Request) -> None:
        self._last_call = request.url.path.rsplit("/", 1)[-1]

    # --- outcomes -------------------------------------------------------------------------

    def _error(self, exc: Exception, doing: str) -> PostingError:
        """What ``exc``, raised while ``doing``, says of the post (see the module's docstring)."""
        where = f"bluesky {self.account} ({self._login} at {self._base_url}): {doing}"
        sent = self._last_call == CREATE_RECORD
        login = doing == "log in"
        if isinstance(exc, RequestErrorBase) and exc.response is not None:
            status = exc.response.status_code
            said = f"{where}: {one_line(exc)}"
            if status == 429:
                return RateLimited(
                    said, reset_at=ratelimit.reset_at(exc.response.headers, RESET_HEADER)
                )
            if status in (401, 403) or (login and status == 400):
                return CredentialsRejected(said)
            if status >= 500 and status != 503 and sent:
                # A 500, a proxy's 502 or a 504 can come after the PDS wrote the record; only
                # 503 (unavailable: nothing done) is retried, as Mastodon's poster does.
                return MaybePosted(f"{said} (the PDS may have written it)")
            return PostFailed(said, retry=status >= 500 or status == 408)
        cause = exc.__cause__ if isinstance(exc, RequestErrorBase) and exc.__cause__ else exc
        what = one_line(f"{type(cause).__name__}: {cause}")
        if isinstance(cause, _NOT_SENT):
            return PostFailed(f"{where}: cannot reach the PDS ({what})", retry=True)
        if sent:
            return MaybePosted(f"{where}: sent, but no answer to be read ({what})")
        if isinstance(cause, httpx.TransportError):
            return PostFailed(
                f"{where}: {self._last_call or 'request'} failed ({what})", retry=True
            )
        return PostFailed(f"{where}: {what}")


def from_account(
    account: AccountSettings, settings: SocialSettings, environ: Mapping[str, str] = os.environ
) -> BlueskyPoster:
    """``BlueskyPoster.from_account``."""
    return BlueskyPoster.from_account(account, settings, environ)
