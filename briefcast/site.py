"""The public site, published: every page and feed built from the published archive into a
new folder beside ``[site] public_dir``, then swapped in whole.

**What is written** (``render.layout``): per site language the feeds (``<lang>/rss.xml``,
``atom.xml``, ``feed.json``), each brief's page (``<lang>/<brief-id>/index.html``), the
archive newest first (``<lang>/index.html``, ``<lang>/page/2/index.html``, ...), each tag's
archive and feeds (``<lang>/tags/<slug>/``); ``index.html`` at the root. Every file is
written with ``safe_io.write_inside``: nothing lands outside the new version's folder
whatever an id or a tag says.

**Swapped in whole.** ``public_dir`` is a symlink to the live version, a folder beside it::

    public -> .public.v8
    .public.v8/          the site readers see
    .public.v7/          the version before, removed a minute after it was replaced
    .public.state.json   what the live version was built from, when the versions before it
                         were replaced, the WebSub pings still to make

A new version is built in ``.public.staging-<random>``, renamed ``.public.v9``, and a new
symlink is renamed over ``public`` (``os.replace``): rename(2) is atomic, so a reader
resolves ``public/`` wholly to the old version or wholly to the new one, never to a
half-built folder. Renaming folders instead (as the previews do) cannot be atomic: a folder
can only be renamed over an empty one, so for a moment there would be no site. A replaced
version stays ``RETIRE_AFTER_SECONDS`` (60 s), removed by the first update after that, so a
request that resolved the old symlink just before the switch (or a server that looks for a
switch once a second) still finds its file. Only names of these forms beside ``public_dir``
are ever removed. ``public_dir`` itself may be missing, our symlink or an empty folder;
anything else is refused.

**Idempotent.** The site is a function of the published archive, the settings, the
templates and briefcast's code: their fingerprint is kept in the state file, and an update
whose fingerprint matches the live version's does nothing (the flow calls every sending
channel for every brief: the first call rebuilds, the others find it done). A rebuild whose
files come out byte for byte the live ones is thrown away: no new version; in a new
version, a file whose bytes did not change keeps its modification time (nginx's ETag and
Last-Modified, and so feed readers' 304s, survive a publish). A run killed
anywhere leaves the old version or the new one live, and at most a staging folder or a
version that never went live, which the next update removes; that update finds the
fingerprint changed and finishes the job. One update at a time: a lock per ``public_dir``
(``delivery.lock.sending``: a file lock beside SQLite, an advisory lock on PostgreSQL),
which also makes it the only run touching the site's rows of the send ledger.

**Through the send ledger** (``briefcast.send_ledger``): each brief's publication on the site is
one part, ``(brief, channel, "site", "pages"|"feeds")``, recorded once. The site itself is
updated on every call whatever the ledger says (an edited brief, published again, must
show), and a rebuild is harmless to repeat: an unknown outcome (a run killed during its
update) is always tried again, ``--resend-unknown`` or not, since it cannot make a copy.

**WebSub.** With ``[feeds] websub_hub``, every feed whose bytes changed is pinged after the
switch (``briefcast.websub``). The pings are written to the state file before the switch and
cleared once made, so a run killed in between leaves them to the next update; a hub that
fails is a warning in the summary, never a failed publish.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from briefcast.channel import Outputs, Pacer, SendUnit
from briefcast.config import Settings
from briefcast.delivery.lock import BriefBusy, sending
from briefcast.errors import BriefcastError, UserError
from briefcast.i18n import t
from briefcast.render import layout
from briefcast.render.feeds import FeedSet, build_feeds
from briefcast.render.site import Entry, archive_pages, root_page, tags_of
from briefcast.render.web import build_pages
from briefcast.resources import templates_root
from briefcast.safe_io import write_inside
from briefcast.send_ledger import Attempt, SendFailed, SendKey, SendLedger, SendStatus, Sent
from briefcast.store import Store
from briefcast.websub import Pings, ping

FORMAT = 1  # of the site and its state file: a change here rebuilds every site
TARGET = "site"  # the send ledger's target for a publication on the public site
LOCK_WAIT_SECONDS = 300.0  # another run updating the site: wait this long for it
# A replaced version is removed this long after the switch (by a later update): a request
# that resolved public_dir just before it still finds its file.
RETIRE_AFTER_SECONDS = 60.0
Pinger = Callable[[str, Sequence[str]], Pings]


class SiteError(BriefcastError):
    """The public site could not be written (a full disk, a permission): exit 1."""


class PublicDirError(UserError):
    """``[site] public_dir`` names something briefcast must not replace."""


# --- where ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Places:
    """``public_dir`` and the names beside it that are ours."""

    public: Path  # absolute; its last name is not resolved (it is our symlink)

    @property
    def parent(self) -> Path:
        return self.public.parent

    @property
    def prefix(self) -> str:
        return f".{self.public.name}."

    @property
    def state(self) -> Path:
        return self.parent / f"{self.prefix}state.json"

    def version(self, number: int) -> Path:
        return self.parent / f"{self.prefix}v{number}"

    def ours(self, name: str) -> str | None:
        """``"v"``, ``"staging"``, ``"link"`` or ``"state"`` (a state file being written)
        for a name of ours beside public_dir; None for any other name."""
        if not name.startswith(self.prefix):
            return None
        match = _OURS.fullmatch(name[len(self.prefix) :])
        return match.lastgroup if match else None

    def number(self, name: str) -> int | None:
        return int(name[len(self.prefix) + 1 :]) if self.ours(name) == "v" else None


_OURS = re.compile(
    r"(?P<v>v[1-9][0-9]{0,17})|(?P<staging>staging-[0-9a-f]{12})"
    r"|(?P<link>link-[0-9a-f]{12})|(?P<state>state-[0-9a-f]{12})"
)


def places(settings: Settings) -> Places:
    raw = settings.site.public_dir.expanduser()
    public = Path(os.path.abspath(raw))  # relative to where briefcast runs; no symlink followed
    if public.name in ("", ".", "..") or public == public.parent:
        raise PublicDirError(f"[site] public_dir {raw}: must name a folder to publish into")
    return Places(public.parent.resolve() / public.name)


def check_ready(settings: Settings) -> None:
    """What a live publish needs, checked before anything is sent on any channel: a
    ``public_dir`` that is missing, our symlink or an empty folder, in a folder we can write."""
    _check(places(settings))


def _check(p: Places) -> None:
    where = f"[site] public_dir {p.public}"
    try:
        st = os.lstat(p.public)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise PublicDirError(f"{where}: cannot be looked at ({exc.strerror or exc})") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(p.public)
            if p.ours(target) != "v":
                raise PublicDirError(
                    f"{where}: is a symlink (to {target}) briefcast did not make; move it "
                    "away or choose another public_dir"
                )
        elif stat.S_ISDIR(st.st_mode):
            if any(os.scandir(p.public)):
                raise PublicDirError(
                    f"{where}: is a folder briefcast did not make (briefcast publishes the "
                    "site as a symlink to versions beside it); move it away or choose another "
                    "public_dir"
                )
        else:
            raise PublicDirError(f"{where}: is a file, not a folder")
    existing = p.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PublicDirError(f"{where}: {existing} is not a folder briefcast can write in")


def live_version(p: Places) -> Path | None:
    """The version ``public_dir`` points at, if it is ours and there."""
    try:
        target = os.readlink(p.public)
    except OSError:
        return None
    folder = p.parent / target
    return folder if p.ours(target) == "v" and folder.is_dir() else None


# --- the fingerprint ------------------------------------------------------------------------


def fingerprint(store: Store, settings: Settings) -> str:
    """What the site is built from: the published briefs (id, digest, date, last update),
    the site's and feeds' settings, the templates and word files, briefcast's code."""
    digest = hashlib.sha256(f"briefcast site {FORMAT}\n{_code()}\n".encode())
    digest.update(settings.site.model_dump_json().encode())
    digest.update(settings.feeds.model_dump_json().encode())
    folders = [templates_root() / name for name in ("web", "i18n")]
    if settings.site.templates_dir is not None:
        folders += [settings.site.templates_dir / name for name in ("web", "i18n")]
    for folder in folders:
        digest.update(_tree(folder).encode())
    for mark in store.published_marks():
        digest.update(("\x1f".join(mark) + "\n").encode())
    return digest.hexdigest()


@cache
def _code() -> str:
    """briefcast's own code, once a process: an upgrade may change what it writes."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _tree(folder: Path) -> str:
    digest = hashlib.sha256(str(folder).encode())
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# --- building -------------------------------------------------------------------------------


class _Writer:
    """Files into one folder, confined to it, each path once; remembers their hashes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hashes: dict[str, str] = {}

    def write(self, relative: str, data: str | bytes) -> None:
        if relative in self.hashes:  # two things at one URL: a bug in the layout
            raise RuntimeError(f"the public site would have two files at {relative}")
        raw = data.encode("utf-8") if isinstance(data, str) else data
        write_inside(self.root, relative, raw)
        self.hashes[relative] = hashlib.sha256(raw).hexdigest()

    def feeds(self, feeds: FeedSet, folder: str = "") -> None:
        for kind in layout.FEED_FILES:
            self.write(layout.feed(feeds.lang, kind, folder), getattr(feeds, kind))


def build_site(store: Store, settings: Settings, root: Path) -> dict[str, str]:
    """Write the whole site into ``root`` (an empty folder); its files' sha256 by path.
    Briefs are read a batch at a time; only a light entry of each is kept for the archive
    pages, and a tag's feeds read their own briefs (at most ``feeds.max_items``)."""
    site = settings.site
    out = _Writer(root)
    entries: list[Entry] = []
    for brief in store.published_briefs():
        for lang, html in build_pages(brief, settings).items():
            out.write(layout.brief(lang, brief.id) + layout.INDEX, html)
        entries.append(Entry.of(brief))
    tags = tags_of(entries)
    tagged: dict[str, list[Entry]] = {slug: [] for slug in tags}
    for entry in entries:
        for slug in dict.fromkeys(layout.tag_slug(name) for name in entry.tags):
            if slug:
                tagged[slug].append(entry)
    limit = settings.feeds.max_items
    for lang in site.languages:
        for path, html in archive_pages(entries, settings, lang, elsewhere=site.languages):
            out.write(path, html)
        out.feeds(build_feeds(store.feed_briefs(lang, limit), settings, lang))
        for slug, tag in tags.items():
            listed = [e for e in tagged[slug] if lang in e.languages]
            if not listed:
                continue
            elsewhere = {code for e in tagged[slug] for code in e.languages}
            for path, html in archive_pages(
                tagged[slug], settings, lang, tag=tag, elsewhere=elsewhere
            ):
                out.write(path, html)
            folder = layout.tag_folder(slug)
            title = t(
                lang,
                "site_tag_feed_title",
                templates_dir=site.templates_dir,
                site=site.name,
                tag=tag.name,
            )
            briefs = store.published_by_id(e.id for e in listed[:limit])
            home = layout.url(site, layout.home(lang, folder))
            out.feeds(
                build_feeds(briefs, settings, lang, folder=folder, title=title, home_url=home),
                folder,
            )
    out.write(layout.INDEX, root_page(settings))
    return out.hashes


def _hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file()
    }


# --- the state file -------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    fingerprint: str = ""
    version: str = ""  # the version folder's name it describes
    pending: tuple[str, ...] = ()  # feed URLs to ping
    retired: dict[str, str] = field(default_factory=dict)  # version -> when replaced (UTC)


def read_state(p: Places) -> State:
    try:
        data = json.loads(p.state.read_text("utf-8"))
        if data.get("format") != FORMAT:
            return State()
        return State(
            str(data["fingerprint"]),
            str(data["version"]),
            tuple(str(url) for url in data["pending"]),
            {str(name): str(when) for name, when in data["retired"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return State()  # none yet, or unreadable: rebuild, which rewrites it


def _write_state(p: Places, state: State) -> None:
    data = {
        "format": FORMAT,
        "fingerprint": state.fingerprint,
        "version": state.version,
        "pending": list(state.pending),
        "retired": state.retired,
    }
    temporary = p.parent / f"{p.prefix}state-{secrets.token_hex(6)}"
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(temporary, p.state)


# --- updating -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteUpdate:
    """What one update of the site did."""

    public_dir: str
    version: str  # the live version's folder name
    rebuilt: bool  # the site was built by this update (else it was up to date)
    swapped: bool  # a new version went live
    files: int  # files in the live version (0: not rebuilt, not counted)
    changed: tuple[str, ...] = ()  # paths added or changed since the version before
    removed: int = 0  # paths gone since the version before
    pinged: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def update_site(store: Store, settings: Settings, *, pinger: Pinger | None = None) -> SiteUpdate:
    """Make the public site what the published archive says, once (see the module's
    docstring); one update at a time, across processes."""
    p = places(settings)
    _check(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with _site_lock(store, p):
            return _update(store, settings, p, pinger or ping)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise SiteError(f"public site {p.public}: {exc.strerror or exc}{where}") from exc


@contextmanager
def _site_lock(store: Store, p: Places) -> Iterator[None]:
    try:
        with sending(store, f"site:{p.public}", wait=LOCK_WAIT_SECONDS):
            yield
    except BriefBusy:
        raise SiteError(
            f"public site {p.public}: another run has been updating it for "
            f"{LOCK_WAIT_SECONDS:.0f} s; run this publish again once it has finished"
        ) from None


def _update(store: Store, settings: Settings, p: Places, pinger: Pinger) -> SiteUpdate:
    live = live_version(p)
    state = _tidy(p, read_state(p), live)
    current = fingerprint(store, settings)
    hub = settings.feeds.websub_hub
    if live is not None and state.fingerprint == current and state.version == live.name:
        pings = _ping(p, state, hub, pinger)
        return SiteUpdate(str(p.public), live.name, False, False, 0, **pings)
    staging = p.parent / f"{p.prefix}staging-{secrets.token_hex(6)}"
    staging.mkdir()  # with the umask's permissions: a web server must read it
    try:
        hashes = build_site(store, settings, staging)
        before = _hashes(live) if live is not None else {}
        changed = tuple(sorted(path for path, h in hashes.items() if before.get(path) != h))
        removed = len(before.keys() - hashes.keys())
        feeds = [layout.url(settings.site, path) for path in changed if _is_feed(path)]
        pending = tuple(dict.fromkeys([*state.pending, *feeds])) if hub else ()
        retired = state.retired
        if live is not None:
            _keep_times(staging, live, hashes, before)
        if live is not None and not changed and not removed:  # the same bytes: keep the live
            shutil.rmtree(staging)
            version = live
        else:
            # The pings first, so that a run killed after the switch leaves them to the next.
            _write_state(p, replace(state, pending=pending))
            version = p.version(_next_number(p))
            staging.rename(version)
            _switch(p, version)
            if live is not None:  # kept a while, for readers that resolved it a moment ago
                retired = {**retired, live.name: datetime.now(UTC).isoformat()}
        state = State(current, version.name, pending, retired)
        _write_state(p, state)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    pings = _ping(p, state, hub, pinger)
    return SiteUpdate(
        str(p.public), version.name, True, version != live, len(hashes), changed, removed, **pings
    )


def _keep_times(staging: Path, live: Path, hashes: dict[str, str], before: dict[str, str]) -> None:
    """A file whose bytes did not change keeps its modification time: a server that makes
    its ETag and Last-Modified from it (nginx) then answers a feed reader's conditional GET
    with 304 after a publish that did not change that feed."""
    for path, digest in hashes.items():
        if before.get(path) == digest:
            old = (live / path).stat()
            os.utime(staging / path, ns=(old.st_atime_ns, old.st_mtime_ns))


def _ping(p: Places, state: State, hub: str | None, pinger: Pinger) -> dict[str, Any]:
    if not state.pending:
        return {}
    done = pinger(hub, state.pending) if hub else Pings((), ())
    _write_state(p, replace(state, pending=()))  # made, or reported: not made again
    return {"pinged": done.pinged, "warnings": done.warnings}


def _is_feed(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in layout.FEED_FILES.values()


def _next_number(p: Places) -> int:
    numbers = [n for entry in os.scandir(p.parent) if (n := p.number(entry.name)) is not None]
    return max(numbers, default=0) + 1


def _switch(p: Places, version: Path) -> None:
    """Point ``public_dir`` at ``version`` in one rename. A relative link: the folder
    holding both can move."""
    link = p.parent / f"{p.prefix}link-{secrets.token_hex(6)}"
    os.symlink(version.name, link)
    try:
        if p.public.is_dir() and not p.public.is_symlink():
            p.public.rmdir()  # the empty folder _check allowed: only the first time
        os.replace(link, p.public)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _tidy(p: Places, state: State, live: Path | None) -> State:
    """Remove what of ours beside public_dir is no longer needed: versions replaced more
    than ``RETIRE_AFTER_SECONDS`` ago, and a crashed run's leftovers (staging folders, links,
    state files, versions that never went live). Never the live version, never anything
    else. Runs under the site lock, so no other run is building."""
    now = datetime.now(UTC)
    retired = dict(state.retired)
    for entry in os.scandir(p.parent):
        kind = p.ours(entry.name)
        if kind is None or (live is not None and entry.name == live.name):
            continue
        if kind == "v" and _recent(retired.get(entry.name), now):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    retired = {
        name: when
        for name, when in retired.items()
        if (p.parent / name).is_dir() and (live is None or name != live.name)
    }
    if retired != state.retired:
        state = replace(state, retired=retired)
        _write_state(p, state)
    return state


def _recent(when: str | None, now: datetime) -> bool:
    try:
        replaced = datetime.fromisoformat(when) if when else None
    except ValueError:
        return False
    return replaced is not None and (now - replaced).total_seconds() < RETIRE_AFTER_SECONDS


# --- a brief's publication, through the send ledger -----------------------------------------


@dataclass(frozen=True)
class SiteSummary:
    """What publishing one brief on the site did, for the flow's artifacts."""

    brief_id: str
    channel: str
    status: str  # the brief's part in the send ledger: "sent" once published
    recorded_now: bool  # this call recorded it (False: an earlier run had)
    update: SiteUpdate

    def line(self) -> str:
        u = self.update
        when = "published" if self.recorded_now else "published before"
        if u.swapped:
            site = f"{u.version} went live: {u.files:,} files, {len(u.changed):,} changed"
        elif u.rebuilt:
            site = f"rebuilt, the same bytes: {u.version} stays live"
        else:
            site = f"up to date: {u.version}"
        line = f"brief {self.brief_id} on the site ({self.channel}): {when}; {u.public_dir} {site}"
        if u.pinged:
            line += f"; WebSub: {len(u.pinged)} feed(s) pinged"
        if u.warnings:
            line += f"; {len(u.warnings)} warning(s): {u.warnings[0]}"
        return line

    def rows(self) -> list[dict[str, str | int]]:
        u = self.update
        rows: list[dict[str, str | int]] = [
            {"what": "brief", "value": self.brief_id},
            {"what": "channel", "value": self.channel},
            {"what": "ledger", "value": self.status + ("" if self.recorded_now else " (before)")},
            {"what": "public_dir", "value": u.public_dir},
            {"what": "live version", "value": u.version},
            {"what": "rebuilt", "value": "yes" if u.rebuilt else "no (up to date)"},
            {"what": "swapped in", "value": "yes" if u.swapped else "no"},
            {"what": "files", "value": u.files},
            {"what": "changed", "value": len(u.changed)},
            {"what": "removed", "value": u.removed},
        ]
        rows += [{"what": "pinged", "value": url} for url in u.pinged]
        rows += [{"what": "warning", "value": w} for w in u.warnings]
        return rows


def publish_brief(
    brief_id: str, channel: str, part: str, settings: Settings, *, pinger: Pinger | None = None
) -> SiteSummary:
    """Record the brief's publication on the site once (the send ledger) and bring the
    site up to date; raises ``SiteError`` when the brief is not on it afterwards."""
    key = SendKey(brief_id, channel, TARGET, part)
    updates: list[SiteUpdate] = []
    with Store(settings.database.url) as store:
        ledger = SendLedger(store)

        def publish(_attempt: Attempt) -> Sent:
            update = update_site(store, settings, pinger=pinger)
            updates.append(update)
            missing = _missing(places(settings), brief_id, settings)
            if missing:
                raise SendFailed(f"not on the public site: {missing}", retry=True)
            return Sent(remote_id=update.version, reply=f"live in {update.version}")

        # resend_unknown: a rebuild from the archive cannot make a second copy.
        outcome = ledger.send_once(key, publish, resend_unknown=True)
        if not outcome.called:  # recorded before; the site still follows the archive
            updates.append(update_site(store, settings, pinger=pinger))
    record = outcome.record
    if record.status != SendStatus.SENT:
        raise SiteError(f"public site: brief {brief_id}: {record.last_reply or record.status}")
    return SiteSummary(brief_id, channel, record.status, outcome.called, updates[-1])


def _missing(p: Places, brief_id: str, settings: Settings) -> str:
    live = live_version(p)
    if live is None:
        return str(p.public)
    for lang in settings.site.languages:
        path = layout.brief(lang, brief_id) + layout.INDEX
        if not (live / path).is_file():
            return path
    return ""


class SiteSends:
    """The live send of a channel that is a part of the public site (briefcast's feeds,
    its web pages): one unit, the site brought up to date with the brief's ``part`` recorded
    once in the send ledger (``publish_brief``). The whole site is rebuilt from the
    published archive and swapped in once per run; a rebuild cannot make a second copy, so
    ``resend_unknown`` changes nothing here."""

    name: str
    part: str  # the brief's part in the send ledger: "feeds", "pages"

    def check_ready(self, settings: Settings) -> None:
        check_ready(settings)

    def send_units(self, outputs: Outputs, settings: Settings) -> list[SendUnit]:
        return [SendUnit(self.name, outputs.brief.id, TARGET)]

    def send_unit(
        self,
        unit: SendUnit,
        outputs: Outputs,
        settings: Settings,
        *,
        resend_unknown: bool,
        pacer: Pacer,
    ) -> SiteSummary:
        return publish_brief(unit.brief_id, self.name, self.part, settings)

    def combine(
        self, outputs: Outputs, settings: Settings, summaries: list[SiteSummary]
    ) -> SiteSummary:
        [summary] = summaries
        return summary
