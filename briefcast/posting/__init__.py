"""Live posting to social networks: one ``Poster`` per network account, the same interface
for X (tweepy), Mastodon (Mastodon.py) and Bluesky (atproto).

What to post is decided elsewhere (``briefcast.render.social`` builds and counts the posts;
the social channel walks the accounts and threads through the send ledger). A poster only
knows how one post travels to its network, the way listmonk's messengers know how a message
travels: ``check`` the credentials, ``post`` one part of a thread, and say precisely how a
call ended, because the ledger's once-only promise depends on it:

- a returned ``PostRef``: posted, with the network's id (kept in the ledger);
- ``PostFailed``: certainly not posted (retry later if ``retry``);
- ``RateLimited``: not posted; the network says when to try again;
- ``MaybePosted``: the request may have been taken (a timeout after it was sent, X's 403
  "duplicate content"): the part becomes ``unknown`` and is resent only on request;
- ``CredentialsRejected``: the account cannot post at all (checked before anything is sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PostRef:
    """A post on its network: what a reply needs to point at it."""

    id: str  # X: tweet id; Mastodon: status id; Bluesky: the record's at:// URI
    cid: str = ""  # Bluesky only: the record's CID (a reply names root and parent by both)
    url: str = ""  # where a person sees it, when the network says


@dataclass(frozen=True)
class LinkCard:
    """The page a post links to, for networks that show a card (Bluesky's external embed)."""

    url: str
    title: str
    description: str


@dataclass(frozen=True)
class Reply:
    """Where a thread part hangs: its parent (the previous part) and the thread's root."""

    parent: PostRef
    root: PostRef


MESSAGE_CHARS = 300  # of a library's error text quoted in a poster's message


def one_line(text: object) -> str:
    """``text`` folded onto one line, cut to ``MESSAGE_CHARS``: what a message quotes of an
    error the network or its library raised."""
    line = " ".join(str(text).split())
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"


class PostingError(Exception):
    """Base of what a poster raises; ``str()`` is one line for the editor."""


class PostFailed(PostingError):
    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class RateLimited(PostingError):
    def __init__(self, message: str, *, reset_at: float | None) -> None:
        super().__init__(message)
        self.reset_at = reset_at  # Unix time the network gave, None when it gave none


class MaybePosted(PostingError):
    """The post may exist: never resent unless the editor asks (--resend-unknown)."""


class CredentialsRejected(PostingError):
    """Missing or refused credentials: the account cannot post."""


class Poster(Protocol):
    network: str  # "x", "mastodon", "bluesky"
    account: str  # the account's name in the settings, e.g. "desk-en"

    def check(self) -> str:
        """Verify the credentials without posting; the account's handle. Raises
        ``CredentialsRejected`` (or ``PostFailed`` when the network cannot be reached)."""
        ...

    def limit(self) -> int:
        """The character limit to build posts for (Mastodon reads its instance's)."""
        ...

    def post(
        self,
        text: str,
        *,
        lang: str,
        reply: Reply | None,
        idempotency_key: str,
        card: LinkCard | None = None,
    ) -> PostRef:
        """Post one part; ``reply`` is None for a thread's first part."""
        ...
