"""The archive of briefs on both dialects: first-seen dates, drafts, and what feeds read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from briefcast import pipeline
from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.config import DatabaseSettings, Settings, SiteSettings
from briefcast.render.feeds import FeedSet
from briefcast.store import Store, as_aware, briefs

ROME = ZoneInfo("Europe/Rome")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as store:
        yield store


def make(id: str, when: datetime | None, langs: tuple[str, ...] = ("en",)) -> Brief:
    sections = tuple(Section(lang, (Block(BlockKind.PARAGRAPH, f"{id} {lang}"),)) for lang in langs)
    return Brief(id=id, title=id, date=when, sections=sections, digest=f"sha-{id}")


def feed_urls(feeds: FeedSet) -> list[str]:
    return [item["url"] for item in json.loads(feeds.json)["items"]]


def ids(found: list[Brief]) -> list[str]:
    return [b.id for b in found]


def test_undated_brief_keeps_its_first_seen_date_and_drafts_stay_out(store: Store) -> None:
    (draft,) = store.archive([make("undated", None, ("en", "it"))], published=False, tz=ROME)
    assert draft.date is not None and draft.date.tzinfo is not None
    assert abs(draft.date - datetime.now(UTC)) < timedelta(minutes=1)
    assert draft.date.utcoffset() == datetime.now(ROME).utcoffset()  # in the site's zone

    assert store.feed_briefs("en", 10) == []  # a draft is previewed, never published
    assert store.feed_briefs("en", 10, include=["undated"]) == [draft]

    (live,) = store.archive([make("undated", None, ("en", "it"))], published=True, tz=ROME)
    (again,) = store.archive([make("undated", None, ("en", "it"))], published=False, tz=ROME)
    assert live.date == again.date == draft.date  # one date on every run, every feed
    assert store.feed_briefs("it", 10) == [draft]  # and a later dry run does not unpublish it
    with store.engine.connect() as conn:
        row = conn.execute(select(briefs).where(briefs.c.id == "undated")).one()
    assert row.published and row.languages == ",en,it,"
    assert as_aware(row.first_seen_at) == draft.date


def test_feed_is_newest_first_by_instant_per_language_and_capped(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    archived = [
        make("a-utc-10", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        # 08:30 UTC: older than a-utc-10, though its wall-clock time is later.
        make("b-plus2-1030", datetime(2026, 3, 1, 10, 30, tzinfo=plus_two)),
        make("c-rome-same", datetime(2026, 3, 1, 11, 0, tzinfo=ROME)),  # = a-utc-10
        make("d-italian", datetime(2026, 3, 2, 9, 0, tzinfo=ROME), ("it",)),
        make("e-oldest", datetime(2025, 12, 31, 23, 0, tzinfo=UTC), ("en", "it")),
    ]
    store.archive(archived, published=True, tz=ROME)

    en = store.feed_briefs("en", 10)
    assert ids(en) == ["a-utc-10", "c-rome-same", "b-plus2-1030", "e-oldest"]  # ties by id
    assert en[0] == archived[0] and en[2].date == archived[1].date  # dates round-trip
    assert ids(store.feed_briefs("it", 10)) == ["d-italian", "e-oldest"]
    assert ids(store.feed_briefs("en", 2)) == ["a-utc-10", "c-rome-same"]


def test_pipeline_archives_then_builds_feeds_from_the_store(database_url: str) -> None:
    settings = Settings(
        site=SiteSettings(languages=["en", "it"]), database=DatabaseSettings(url=database_url)
    )
    first = pipeline.archive([make("x", None, ("en", "it"))], settings, dry_run=False)
    dated = pipeline.archive([make("y", datetime(2020, 1, 1, tzinfo=UTC))], settings, dry_run=True)
    outputs = pipeline.build(dated, settings, ["feed"], pipeline.published(dated, settings))
    en, it = outputs[0].of("feed")
    assert feed_urls(en) == [settings.site.brief_url(i, "en") for i in ("x", "y")]
    assert feed_urls(it) == [settings.site.brief_url("x", "it")]  # this run's draft: en only
    assert pipeline.archive([make("x", None)], settings, dry_run=True)[0].date == first[0].date
