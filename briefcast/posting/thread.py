"""One thread (an X thread, or a Mastodon or Bluesky post: a thread of one) posted by one
account, each part once and only once, through the send ledger.

Each part is one row of the send ledger (:mod:`briefcast.send_ledger`)::

    (brief_id, "social", <account name>, "<network>-<lang>-<k>of<n>")   e.g. "x-en-2of3"

recorded ``sending`` before the network is called and settled after, with the post's
reference (``PostRef`` as JSON: X and Mastodon need its id, Bluesky its URI and CID) as the
row's ``remote_id``. So a re-run posts nothing twice: parts already ``sent`` are skipped and
their references read back, and a thread broken part way resumes with its next part, a reply
to the last one posted (and to the thread's first, Bluesky's root).

- ``MaybePosted`` (or a crash during the call): the part is ``unknown`` and the thread stops
  there, since later parts would hang from a post that may not exist; it is resent only with
  ``resend_unknown`` (``--resend-unknown``).
- ``RateLimited``: the part stays ``queued``; the thread waits until the network's reset, at
  most ``max_wait_seconds`` at a time (the wait is shown through the reporter), else the
  account stops for this run and its rest stays for the next.
- ``PostFailed(retry=True)`` (service down, no connection): tried again after
  :data:`RETRY_DELAYS`, then ``failed``; ``PostFailed``: ``failed`` at once. The thread stops.
- ``CredentialsRejected``: ``failed``, and the account stops.

The number of parts is in the key: if a brief that was partly posted as a thread of 3 now
makes 4 (its text changed), the new thread is not posted on top of the old one; the summary
says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from briefcast.posting import (
    CredentialsRejected,
    LinkCard,
    MaybePosted,
    Poster,
    PostFailed,
    PostingError,
    PostRef,
    RateLimited,
    Reply,
    ratelimit,
)
from briefcast.reporting import Reporter
from briefcast.send_ledger import (
    Attempt,
    SendFailed,
    SendKey,
    SendLedger,
    SendRecord,
    SendStatus,
    SendUnknown,
    Sent,
)

CHANNEL = "social"
RETRY_DELAYS = (2.0, 10.0)  # before the 2nd and the 3rd attempt of a part that may be retried
RATE_LIMIT_WAITS = 3  # waits for one part in one run, each at most max_wait_seconds
RATE_LIMIT_FALLBACK = 60.0  # seconds to wait when a 429 says no reset time
_PART = re.compile(r"(?P<prefix>.+)-(?P<k>[0-9]+)of(?P<n>[0-9]+)")
_POSSIBLY_POSTED = (SendStatus.SENT, SendStatus.SENDING, SendStatus.UNKNOWN)


def part_name(network: str, lang: str, k: int, n: int) -> str:
    return f"{network}-{lang}-{k}of{n}"


def encode_ref(ref: PostRef) -> str:
    """A post's reference as the ledger keeps it (``remote_id``)."""
    return json.dumps({k: v for k, v in asdict(ref).items() if v}, separators=(",", ":"))


def decode_ref(remote_id: str | None) -> PostRef | None:
    if not remote_id:
        return None
    try:
        data = json.loads(remote_id)
    except ValueError:
        return PostRef(id=remote_id)  # a bare id
    if not isinstance(data, dict) or not data.get("id"):
        return PostRef(id=remote_id)
    return PostRef(id=str(data["id"]), cid=str(data.get("cid", "")), url=str(data.get("url", "")))


@dataclass
class ThreadResult:
    """What one run did with one thread of one account (a row of the summary)."""

    account: str
    network: str
    lang: str
    parts: int
    posted: int = 0  # this run
    before: int = 0  # posted by an earlier run: skipped
    unknown: list[str] = field(default_factory=list)  # "2/3": may or may not be posted
    failed: int = 0
    queued: int = 0  # not tried (yet): left for the next run
    note: str = ""  # why the thread stopped short, when it did
    stop_account: bool = False  # the account cannot go on this run (credentials, rate limit)
    error: str = ""  # a failure the run should end with exit 1 for

    @property
    def done(self) -> int:
        return self.posted + self.before


@dataclass(frozen=True)
class Waits:
    """How long a thread may wait, and how it waits (the tests give it a clock)."""

    max_wait_seconds: float
    retry_delays: Sequence[float] = RETRY_DELAYS
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time


def idempotency_key(key: SendKey) -> str:
    """One per part, the same on every attempt (Mastodon keeps it an hour)."""
    return "briefcast-" + hashlib.sha256("\x00".join(key).encode()).hexdigest()[:40]


def post_thread(
    ledger: SendLedger,
    poster: Poster,
    brief_id: str,
    lang: str,
    parts: Sequence[str],
    *,
    waits: Waits,
    resend_unknown: bool = False,
    card: LinkCard | None = None,
    reporter: Reporter | None = None,
    label: str = "",
) -> ThreadResult:
    """Post ``parts`` (one thread, in order) as ``poster``'s account; see the module's
    docstring for what each outcome does."""
    n = len(parts)
    result = ThreadResult(poster.account, poster.network, lang, n)
    label = label or f"social {poster.account}"
    keys = [
        SendKey(brief_id, CHANNEL, poster.account, part_name(poster.network, lang, k, n))
        for k in range(1, n + 1)
    ]
    other = _other_shape(ledger.for_brief(brief_id, CHANNEL), keys[0])
    if other:
        result.queued = n
        result.note = (
            f"started before as a thread of {other} part(s), the brief now makes {n}: "
            "not posted again (delete the old posts and their ledger rows to post it anew)"
        )
        result.error = result.note
        return result

    def report(note: str = "") -> None:
        if reporter is not None:
            reporter.status(label, result.done, n, note)

    refs: list[PostRef] = []
    for k, (key, text) in enumerate(zip(keys, parts, strict=True), 1):
        report()
        reply = Reply(parent=refs[-1], root=refs[0]) if refs else None
        first_card = card if k == 1 else None
        record, called, raised = _post_part(
            ledger, poster, key, text, lang, reply, first_card, waits, resend_unknown, report
        )
        ref = decode_ref(record.remote_id) if record.status == SendStatus.SENT else None
        if ref is not None:
            refs.append(ref)
            result.posted += called
            result.before += not called
            continue
        result.queued = n - k  # later parts cannot hang from this one
        if record.status == SendStatus.SENT:  # posted, but its id is lost: nothing can reply to it
            result.posted += called
            result.before += not called
            result.error = result.note = f"part {k}/{n} is posted but its id is not known"
        elif record.status in (SendStatus.UNKNOWN, SendStatus.SENDING):
            result.unknown.append(f"{k}/{n}")
            why = record.last_reply if called else "left unknown by an earlier run"
            result.note = (
                f"part {k}/{n} may or may not be posted ({why}); resent only with --resend-unknown"
            )
        elif isinstance(raised, RateLimited):
            result.queued += 1
            result.note = str(raised)
            result.stop_account = True
        else:
            result.failed += 1
            result.error = result.note = record.last_reply or str(raised or record.status)
            result.stop_account = isinstance(raised, CredentialsRejected)
        break
    report()
    return result


def _post_part(
    ledger: SendLedger,
    poster: Poster,
    key: SendKey,
    text: str,
    lang: str,
    reply: Reply | None,
    card: LinkCard | None,
    waits: Waits,
    resend_unknown: bool,
    report: Callable[[str], None],
) -> tuple[SendRecord, bool, PostingError | None]:
    """One part through the ledger, with its retries and rate-limit waits: the row as it
    ends, whether the network was called, and what the poster raised last."""
    retries = list(waits.retry_delays)
    rate_waits = RATE_LIMIT_WAITS
    called = False
    while True:
        call = _Call(poster, key, text, lang, reply, card, last_try=not retries)
        outcome = ledger.send_once(key, call, resend_unknown=resend_unknown)
        called = called or outcome.called
        error = call.raised
        if isinstance(error, RateLimited) and rate_waits:
            rate_waits -= 1
            reset = error.reset_at
            wait = max(0.0, reset - waits.now()) if reset is not None else RATE_LIMIT_FALLBACK
            if wait <= waits.max_wait_seconds:
                _wait(wait, waits, report, f"rate limited by {poster.network}")
                continue
            until = ratelimit.utc(waits.now() + wait)
            error = RateLimited(
                f"rate limited by {poster.network} until {until} ({math.ceil(wait)} s, more "
                f"than max_wait_seconds {waits.max_wait_seconds:g}): left for the next run",
                reset_at=reset,
            )
        elif isinstance(error, PostFailed) and error.retry and retries:
            _wait(retries.pop(0), waits, report, f"{poster.network} failed, trying again")
            continue
        return outcome.record, called, error


@dataclass
class _Call:
    """One attempt at one part, as the ledger calls it: what the poster raised becomes what
    the ledger records (``raised`` keeps it for the retries and waits)."""

    poster: Poster
    key: SendKey
    text: str
    lang: str
    reply: Reply | None
    card: LinkCard | None
    last_try: bool
    raised: PostingError | None = None

    def __call__(self, _attempt: Attempt) -> Sent:
        try:
            ref = self.poster.post(
                self.text,
                lang=self.lang,
                reply=self.reply,
                idempotency_key=idempotency_key(self.key),
                card=self.card,
            )
        except MaybePosted as exc:
            raise SendUnknown(str(exc)) from exc
        except PostingError as exc:
            self.raised = exc
            retry = isinstance(exc, RateLimited) or (
                isinstance(exc, PostFailed) and exc.retry and not self.last_try
            )
            raise SendFailed(str(exc), retry=retry) from exc
        return Sent(encode_ref(ref), reply=ref.url)


def _wait(seconds: float, waits: Waits, report: Callable[[str], None], why: str) -> None:
    """Sleep ``seconds``, saying how long is left about once a second."""
    end = waits.now() + seconds
    while (left := end - waits.now()) > 0:
        report(f"{why}: waiting {math.ceil(left)} s")
        waits.sleep(min(1.0, left))
    report("")


def _other_shape(records: list[SendRecord], first: SendKey) -> int:
    """The number of parts of an earlier thread of this account and language that may have
    been posted with another number of parts (0: none)."""
    mine = _PART.fullmatch(first.part)
    assert mine is not None
    for record in records:
        if record.key.target != first.target or record.status not in _POSSIBLY_POSTED:
            continue
        m = _PART.fullmatch(record.key.part)
        if m and m["prefix"] == mine["prefix"] and m["n"] != mine["n"]:
            return int(m["n"])
    return 0
