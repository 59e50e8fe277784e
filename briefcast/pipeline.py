"""The publish pipeline as plain functions: read → date → build → preview → archive → send.

Everything that can fail on a brief's content (reading, every builder, Gmail's size limit)
runs before anything is written: a brief is archived only once its previews are in place.
The Prefect flow in ``flows/publish.py`` calls these from its tasks; tests call them
directly, with no Prefect server to wait for. Channels come from the registry
(``briefcast.channel``), never by name from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from briefcast import channel as registry
from briefcast.brief import Brief
from briefcast.channel import BuildContext, Outputs
from briefcast.config import Settings
from briefcast.previews import write_previews
from briefcast.readers import read_briefs
from briefcast.readers.assemble import ID_FROM_TITLE
from briefcast.store import Store


def read(paths: Sequence[str | Path], settings: Settings) -> list[Brief]:
    return read_briefs([Path(p) for p in paths], settings)


def date(briefs: list[Brief], settings: Settings) -> list[Brief]:
    """An undated brief takes the time it was first archived (so a re-run builds the same
    bytes), or now when it is new; nothing is written."""
    with Store(settings.database.url) as store:
        briefs = settle_ids(briefs, store)
        seen = store.first_seen(b.id for b in briefs)
    return provisional(briefs, settings, seen)


def settled(briefs: list[Brief], settings: Settings) -> list[Brief]:
    """The briefs with the ids the flow will give them (settle_ids), nothing written."""
    with Store(settings.database.url) as store:
        return settle_ids(briefs, store)


def settle_ids(briefs: list[Brief], store: Store) -> list[Brief]:
    """Ids made from titles, settled against the archive and this run. A brief published
    under the id the rule before made keeps it (its URL never changes); a short id that
    another brief holds (archived from another file, or earlier in this run) takes -2, -3...
    Ids given with ``id:`` are the editor's and stay as they are."""
    taken = {b.id for b in briefs if ID_FROM_TITLE not in b.extra}
    settled = []
    for brief in briefs:
        legacy = brief.extra.get(ID_FROM_TITLE)
        if legacy is None:
            settled.append(brief)
            continue
        archived = store.archived([legacy])
        old = archived.get(legacy)
        if legacy not in taken and old is not None and old[2] and not _another(brief, old):
            chosen = legacy
        else:
            chosen, n = brief.id, 1
            while chosen in taken or _another(brief, store.archived([chosen]).get(chosen)):
                n += 1
                chosen = f"{brief.id}-{n}"
        taken.add(chosen)
        settled.append(brief if chosen == brief.id else replace(brief, id=chosen))
    return settled


def _another(brief: Brief, archived: tuple[str, str, bool] | None) -> bool:
    """Whether the archived brief (title, source, published) is not this one: another file
    (an editor edits a brief in its file, title included), or, with no file name, another
    title."""
    if archived is None:
        return False
    title, source, _published = archived
    if source and brief.source:
        return source != brief.source
    return title != brief.title


def provisional(
    briefs: list[Brief], settings: Settings, seen: dict[str, datetime] | None = None
) -> list[Brief]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [b.dated((seen or {}).get(b.id, now).astimezone(settings.site.tz)) for b in briefs]


def archive(briefs: list[Brief], settings: Settings, *, dry_run: bool) -> list[Brief]:
    with Store(settings.database.url) as store:
        return store.archive(briefs, published=not dry_run, tz=settings.site.tz)


def published(briefs: Sequence[Brief], settings: Settings) -> dict[str, list[Brief]]:
    """The published archive per site language, newest first, less this run's briefs (which
    are not archived yet: the archive is written only after the previews)."""
    ids = [b.id for b in briefs]
    limit = settings.feeds.max_items
    with Store(settings.database.url) as store:
        return {
            lang: store.feed_briefs(lang, limit, exclude=ids) for lang in settings.site.languages
        }


def build(
    briefs: list[Brief],
    settings: Settings,
    names: Sequence[str],
    archive: dict[str, list[Brief]] | None = None,
) -> list[Outputs]:
    """Every chosen channel's build step for every brief (pure: nothing is written)."""
    chosen = [registry.get(name) for name in names]
    by_lang = archive or {}
    ctx = BuildContext(settings, briefs, lambda lang: by_lang.get(lang, []))
    return [Outputs(b, {ch.name: ch.build(b, ctx) for ch in chosen}) for b in briefs]


def check(briefs: list[Brief], settings: Settings, names: Sequence[str]) -> None:
    """Build every output once, undated briefs dated now, and throw it away: what would fail
    on a brief's content fails here, before Prefect starts or anything is written."""
    build(provisional(briefs, settings), settings, names)


def run_publish(
    paths: Sequence[str | Path],
    settings: Settings,
    names: Sequence[str] | None = None,
    out: Path = Path("out"),
) -> list[Path]:
    """The whole dry run without Prefect: returns each brief's preview folder."""
    names = list(names) if names is not None else registry.names()
    dated = date(read(paths, settings), settings)
    outputs = build(dated, settings, names, published(dated, settings))
    folders = write_previews(outputs, names, out, settings)
    archive(dated, settings, dry_run=True)
    return folders
