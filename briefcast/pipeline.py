"""The publish pipeline as plain functions: read → date → build → preview → archive → send.

Everything that can fail on a brief's content (reading, every builder, Gmail's size limit)
runs before anything is written: a brief is archived only once its previews are in place.

The Prefect flow in ``flows/publish.py`` calls these from its tasks; tests call them
directly, with no Prefect server to wait for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from briefcast.brief import Brief
from briefcast.config import Settings
from briefcast.readers import read_briefs
from briefcast.render.email import EmailEdition, build_emails
from briefcast.render.feeds import FeedSet, build_feeds
from briefcast.render.social import SocialPost, build_social
from briefcast.render.web import build_pages
from briefcast.store import Store

CHANNELS = ("email", "feed", "social", "web")


@dataclass(frozen=True)
class Edition:
    """Everything one brief becomes; a dry run and a live run build the same Edition."""

    brief: Brief
    emails: list[EmailEdition] = field(default_factory=list)
    feeds: list[FeedSet] = field(default_factory=list)
    social: list[SocialPost] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)


def parse_channels(value: str | Sequence[str]) -> list[str]:
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in CHANNELS]
    if unknown or not names:
        raise ValueError(
            f"unknown channel {', '.join(unknown) or '(none)'}; choose from {','.join(CHANNELS)}"
        )
    return list(dict.fromkeys(names))


def read(paths: Sequence[str | Path], settings: Settings) -> list[Brief]:
    return read_briefs([Path(p) for p in paths], settings)


def date(briefs: list[Brief], settings: Settings) -> list[Brief]:
    """An undated brief takes the time it was first archived (so a re-run builds the same
    bytes), or now when it is new; nothing is written."""
    with Store(settings.database.url) as store:
        seen = store.first_seen(b.id for b in briefs)
    return provisional(briefs, settings, seen)


def provisional(
    briefs: list[Brief], settings: Settings, seen: dict[str, datetime] | None = None
) -> list[Brief]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [b.dated((seen or {}).get(b.id, now).astimezone(settings.site.tz)) for b in briefs]


def archive(briefs: list[Brief], settings: Settings, *, dry_run: bool) -> list[Brief]:
    with Store(settings.database.url) as store:
        return store.archive(briefs, published=not dry_run, tz=settings.site.tz)


def build_all_feeds(briefs: list[Brief], settings: Settings) -> list[FeedSet]:
    """One feed set per site language: the published archive and this run's briefs (which
    are not archived yet: the archive is written only after the previews)."""
    ids = [b.id for b in briefs]
    limit = settings.feeds.max_items
    with Store(settings.database.url) as store:
        return [
            build_feeds([*store.feed_briefs(lang, limit, exclude=ids), *briefs], settings, lang)
            for lang in settings.site.languages
        ]


def build(
    briefs: list[Brief], settings: Settings, channels: Sequence[str], feeds: list[FeedSet]
) -> list[Edition]:
    return [
        Edition(
            brief=brief,
            emails=build_emails(brief, settings) if "email" in channels else [],
            feeds=feeds if "feed" in channels else [],
            social=build_social(brief, settings.site) if "social" in channels else [],
            pages=build_pages(brief, settings) if "web" in channels else {},
        )
        for brief in briefs
    ]


def check(briefs: list[Brief], settings: Settings, channels: Sequence[str]) -> None:
    """Build every output once, undated briefs dated now, and throw it away: what would fail
    on a brief's content fails here, before Prefect starts or anything is written."""
    dated = provisional(briefs, settings)
    build(dated, settings, channels, feeds=[])
    if "feed" in channels:
        for lang in settings.site.languages:
            build_feeds(dated, settings, lang)


def run_publish(
    paths: Sequence[str | Path],
    settings: Settings,
    channels: Sequence[str] = CHANNELS,
    out: Path = Path("out"),
) -> list[Path]:
    """The whole dry run without Prefect: returns each brief's preview folder."""
    from channels import write_previews  # channels build on this module's Edition

    dated = date(read(paths, settings), settings)
    feeds = build_all_feeds(dated, settings) if "feed" in channels else []
    editions = build(dated, settings, channels, feeds)
    folders = write_previews(editions, list(channels), out, settings)
    archive(dated, settings, dry_run=True)
    return folders
