"""``fetch``: read the bounce mailbox once, record what its reports say, tidy it up.

For each message, oldest first and at most ``[bounces] max_messages`` a run:

1. parse it (:mod:`~briefcast.bounces.reports`): hard bounce, soft bounce, complaint, or
   unknown;
2. find the delivery it is about by its signed tokens (:class:`~briefcast.bounces.record.
   Locator`); a report about no delivery of ours is unknown;
3. record it, once (:func:`~briefcast.bounces.record.record`): a report processed before is
   a duplicate and changes nothing;
4. move it: recorded and duplicate reports to the ``processed`` folder, the rest to
   ``unknown``, a batch at a time (so a run stopped half way has tidied what it recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from briefcast.bounces.mailboxes import (
    PASSWORD_ENV,
    PROCESSED,
    UNKNOWN,
    BouncesConfigError,
    Mailbox,
    open_mailbox,
)
from briefcast.bounces.record import Locator, record
from briefcast.bounces.reports import ReportKind, parse
from briefcast.config import Settings
from briefcast.delivery.preflight import DeliveryError, unsubscribe_secret
from briefcast.delivery.verp import ReturnPath
from briefcast.store import Store

log = logging.getLogger(__name__)

SECRET_ENV = "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET"
LISTED = 10  # unknown messages described in the summary


@dataclass
class BounceSummary:
    mailbox: str
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unknown: int = 0
    duplicates: int = 0
    subscribers_bounced: int = 0  # reached the hard-bounce threshold with this run
    subscribers_complained: int = 0
    moved: int = 0
    not_moved: int = 0  # stay where they were; the next run finds them recorded
    left: int = 0  # beyond max_messages: for the next run
    truncated: int = 0  # read in part (over max_message_bytes)
    unknown_details: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.hard + self.soft + self.complaints + self.unknown + self.duplicates


def fetch(
    store: Store,
    settings: Settings,
    *,
    limit: int | None = None,
    mailbox: Mailbox | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BounceSummary:
    """Process the bounce mailbox once (``mailbox``: the configured one by default).
    Raises BouncesConfigError (exit 2) or BouncesError (exit 1)."""
    b = settings.bounces
    secret = _secret(settings)
    if mailbox is None:
        check_ready(settings)
    locator = Locator(store, ReturnPath.from_settings(settings, secret), secret)
    if mailbox is None:
        password = b.password.get_secret_value() if b.password else None
        mailbox = open_mailbox(b, password)
    summary = BounceSummary(mailbox.name)
    threshold = settings.delivery.hard_bounce_threshold
    try:
        for batch in mailbox.batches(limit or b.max_messages, b.max_message_bytes):
            moves: dict[str, list[str]] = {PROCESSED: [], UNKNOWN: []}
            for item in batch:
                summary.truncated += item.truncated
                report = parse(item.data, truncated=item.truncated)
                why = report.detail
                if report.kind in (ReportKind.HARD, ReportKind.SOFT, ReportKind.COMPLAINT):
                    delivery, how = locator.find(report)
                    if delivery is not None:
                        done = record(store, report, delivery, threshold=threshold, now=now())
                        moves[PROCESSED].append(item.ref)
                        _count(summary, report.kind, done.duplicate, done.subscriber_marked)
                        continue
                    why = f"{report.detail}; {how}"
                summary.unknown += 1
                moves[UNKNOWN].append(item.ref)
                if len(summary.unknown_details) < LISTED:
                    summary.unknown_details.append(why)
            for where, refs in moves.items():
                moved = mailbox.move(refs, where) if refs else 0
                summary.moved += moved
                summary.not_moved += len(refs) - moved
        summary.left = mailbox.left
    finally:
        mailbox.close()
    return summary


def check_ready(settings: Settings) -> None:
    """What ``fetch`` needs that can be checked before the database or the mailbox is
    opened: the secret, and a mailbox configured (BouncesConfigError otherwise)."""
    _secret(settings)
    b = settings.bounces
    if b.maildir is not None and b.imap_host:
        raise BouncesConfigError("[bounces] imap_host and maildir are both set: choose one")
    if b.maildir is None and not b.imap_host:
        raise BouncesConfigError(
            "no bounce mailbox: set [bounces] imap_host (IMAP over TLS) or [bounces] maildir"
        )
    if b.imap_host and not b.imap_user:
        raise BouncesConfigError("[bounces] imap_user is not set (the IMAP login)")
    if b.imap_host and not (b.password and b.password.get_secret_value()):
        raise BouncesConfigError(f"{PASSWORD_ENV} is not set (the IMAP password)")


def _count(summary: BounceSummary, kind: str, duplicate: bool, marked: bool) -> None:
    if duplicate:
        summary.duplicates += 1
    elif kind == ReportKind.HARD:
        summary.hard += 1
        summary.subscribers_bounced += marked
    elif kind == ReportKind.SOFT:
        summary.soft += 1
    else:
        summary.complaints += 1
        summary.subscribers_complained += marked


def _secret(settings: Settings) -> str:
    """The secret that signed the tokens the reports are found by."""
    try:
        return unsubscribe_secret(settings)
    except DeliveryError:  # the same check, said for what the bounces need it for
        raise BouncesConfigError(
            f"{SECRET_ENV} is not set: the reports are matched to deliveries by the tokens "
            "it signed"
        ) from None
