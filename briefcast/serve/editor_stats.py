"""What the editor's page counts: whom a waiting brief will reach, and how each past send
went, read from the tables the sending modules keep (nothing here writes).

- Reach: the active subscribers per edition, each subscriber's language picking its edition
  as the email channel does (:func:`briefcast.delivery.ledger.edition_for`).
- History, per brief and channel: the email ledger's statuses, the complaints its
  deliveries drew (``bounce_reports``), and the subscribers it reached who have unsubscribed
  since; the other channels' parts by status (the send ledger), with the address of each
  social post the network gave (``remote_id``, :func:`briefcast.posting.thread.decode_ref`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from briefcast.bounces.reports import ReportKind
from briefcast.config import SOCIAL_NETWORKS
from briefcast.delivery import ledger
from briefcast.delivery.ledger import DeliveryStatus
from briefcast.posting.thread import decode_ref
from briefcast.send_ledger import SendLedger, SendStatus
from briefcast.store import Store, bounce_reports, deliveries, subscribers
from briefcast.subscribers import SubscriberStatus

# What an email's history shows, in this order, zeros included for the first ones.
EMAIL_SHOWN = (
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.BOUNCED,
    "complained",
    "unsubscribed since",
)
EMAIL_ALSO = (DeliveryStatus.UNKNOWN, DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
SOCIAL = frozenset(SOCIAL_NETWORKS)


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class ChannelHistory:
    channel: str
    counts: list[tuple[str, int]]
    links: list[Link] = field(default_factory=list)


def reach(store: Store, editions: Sequence[str]) -> list[tuple[str, int]]:
    """Per edition, how many active subscribers it goes to (an edition no one reads: 0)."""
    query = (
        select(subscribers.c.language, func.count())
        .where(subscribers.c.status == SubscriberStatus.ACTIVE)
        .group_by(subscribers.c.language)
    )
    counted: Counter[str] = Counter()
    with store.engine.connect() as conn:
        for language, n in conn.execute(query):
            counted[ledger.edition_for(language, editions)] += int(n)
    return [(edition, counted[edition]) for edition in editions]


def _email(store: Store, brief_id: str) -> ChannelHistory | None:
    statuses = ledger.counts(store, brief_id)
    if not statuses:
        return None
    of_brief = deliveries.c.brief_id == brief_id
    complained = (
        select(func.count(func.distinct(bounce_reports.c.delivery_id)))
        .select_from(
            bounce_reports.join(deliveries, bounce_reports.c.delivery_id == deliveries.c.id)
        )
        .where(of_brief, bounce_reports.c.kind == ReportKind.COMPLAINT)
    )
    # Reached (a message went), and unsubscribed after it did.
    unsubscribed = (
        select(func.count())
        .select_from(deliveries.join(subscribers, deliveries.c.subscriber_id == subscribers.c.id))
        .where(
            of_brief,
            deliveries.c.status.in_(ledger.ATTEMPTED),
            subscribers.c.status == SubscriberStatus.UNSUBSCRIBED,
            subscribers.c.updated_at >= deliveries.c.updated_at,
        )
    )
    with store.engine.connect() as conn:
        extra = {
            "complained": int(conn.execute(complained).scalar() or 0),
            "unsubscribed since": int(conn.execute(unsubscribed).scalar() or 0),
        }
    counts = [(name, extra[name] if name in extra else statuses[name]) for name in EMAIL_SHOWN]
    counts += [(name, statuses[name]) for name in EMAIL_ALSO if statuses[name]]
    return ChannelHistory("email", counts)


def _safe_url(url: str) -> str:
    """Only a web address is made a link: a network's answer is not trusted further."""
    return url if url.startswith(("https://", "http://")) and len(url) <= 2000 else ""


def history(store: Store, brief_id: str) -> list[ChannelHistory]:
    """The brief's sends, per channel: email first, then the others by name."""
    found = []
    if (email := _email(store, brief_id)) is not None:
        found.append(email)
    by_channel: dict[str, list[tuple[str, str, str | None]]] = {}
    for record in SendLedger(store).for_brief(brief_id):
        key = record.key
        by_channel.setdefault(key.channel, []).append((key.part, record.status, record.remote_id))
    for channel, parts in by_channel.items():
        counted = Counter(status for _, status, _ in parts)
        links = []
        if channel in SOCIAL:
            for part, status, remote_id in parts:
                ref = decode_ref(remote_id) if status == SendStatus.SENT else None
                if ref is not None and (url := _safe_url(ref.url)):
                    links.append(Link(part, url))
        found.append(ChannelHistory(channel, sorted(counted.items()), links))
    return found
