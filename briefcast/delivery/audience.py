"""Who a brief's email goes to: by default only the subscribers who can read it.

A subscriber chose an edition: a site language, or ``both``. A brief written in some of the
site's languages only (an English-only brief on an English and Italian site) is not mailed
to the subscribers of the other languages' editions, who would get a notice that it is not
in their language and text they did not ask for; ``both`` subscribers get it. The brief's
front matter ``audience: everyone`` (or ``publish --to-everyone``) mails everyone, as the
editions are built for.

The choice is made in the query that reads the subscribers (:meth:`Audience.where`), so no
row of the ledger is ever made for a subscriber who is not mailed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select

from briefcast.brief import Brief
from briefcast.config import Settings
from briefcast.delivery.ledger import edition_for
from briefcast.store import Store
from briefcast.store import subscribers as subscriber_table
from briefcast.subscribers import SubscriberStatus


@dataclass(frozen=True)
class Audience:
    """The subscribers a brief is mailed to: every active one but those whose language is
    in ``left_out`` (site languages the brief is not written in)."""

    left_out: tuple[str, ...] = ()

    def where(self) -> Any:
        """The SQL condition on the subscribers table: active, and in the audience."""
        active = subscriber_table.c.status == SubscriberStatus.ACTIVE
        if not self.left_out:
            return active
        return and_(active, subscriber_table.c.language.not_in(self.left_out))


EVERYONE = Audience()


def of_brief(brief: Brief, settings: Settings, *, everyone: bool = False) -> Audience:
    """The brief's audience: everyone with ``everyone`` or its front matter's ``audience:
    everyone``; otherwise the readers of the site languages it is written in, and ``both``.
    A brief in none of the site's languages (carried as it is in every edition) goes to
    everyone: leaving out every edition would mail it to nobody but ``both``."""
    if everyone or brief.to_everyone:
        return EVERYONE
    unwritten = tuple(lang for lang in settings.site.languages if brief.section(lang) is None)
    if len(unwritten) == len(settings.site.languages):
        return EVERYONE
    return Audience(unwritten)


def reach(store: Store, audience: Audience, editions: Collection[str]) -> dict[str, int]:
    """How many active subscribers each edition mailed reaches, in the order of
    ``editions`` (an edition left out is not there); counted by the database, one row per
    language."""
    query = (
        select(subscriber_table.c.language, func.count())
        .where(audience.where())
        .group_by(subscriber_table.c.language)
    )
    counts: Counter[str] = Counter()
    with store.engine.connect() as conn:
        for language, n in conn.execute(query):
            counts[edition_for(language, editions)] += n
    return {e: counts[e] for e in editions if e not in audience.left_out}
