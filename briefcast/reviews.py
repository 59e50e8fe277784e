"""Approval bound to what was previewed.

A review (the Prefect flow ``flows.review``) writes a brief's previews, records here the
*digest* of everything that shaped them, and the brief's bytes, and waits for the editor.
An approval names that digest; before anything is sent the digest is computed again (from
the stored bytes with this machine's templates and settings, and from the brief's file where
this machine has it), and any difference (the brief edited, a template changed, a setting
that shapes the output changed) refuses the send in one line and asks for a new preview.
Undated briefs keep the date of their first preview (``pipeline.date``), so an approved
brief builds the same bytes when it is sent, even a day later.

Plain functions over the ``reviews`` table: the CLI, the flows and the editor's pages use
them alike; resuming the waiting Prefect flow run is the flows' business.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, insert, select, update

from briefcast.config import TEMPLATE_FOLDERS, Settings
from briefcast.errors import UserError
from briefcast.resources import templates_root
from briefcast.safe_io import UnsafeFile, read_regular
from briefcast.store import BRIEF_ID_MAX, Store, as_aware, reviews

# Sections that decide how a message travels, not what it says: changing them after a
# preview does not call for a new one.
NOT_SHAPING = {"database", "smtp", "delivery", "serve", "bounces", "workflow"}
REASON_MAX = 500


class ReviewState(StrEnum):
    """reviews.state: waiting -> approved | refused | cancelled | expired; approved ->
    scheduled | sending -> sent | failed. A brief that could not be read is failed at once
    (no digest, no preview); a newer preview supersedes a waiting one. A member is its
    string, so the database, the CLI and the editor's pages see the bare value."""

    WAITING = "waiting"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


OPEN_STATES = (
    ReviewState.WAITING,
    ReviewState.APPROVED,
    ReviewState.SCHEDULED,
    ReviewState.SENDING,
)
STATES = tuple(ReviewState)  # in this order in the CLI's help
MAX_TEMPLATE_FILES = 2000  # a templates folder is small; a runaway one is not walked for ever


class Approval(BaseModel):
    """What the editor sends to the waiting review flow run (Prefect run input)."""

    digest: str
    send_at: datetime | None = None  # None: now
    by: str = ""


class Changed(UserError):
    """What is to be sent is not what was previewed."""


class NotWaiting(UserError):
    """No review of that brief waits for approval."""


@dataclass(frozen=True)
class Review:
    flow_run_id: str
    brief_id: str
    path: str
    preview: str
    digest: str
    state: str
    approved_by: str | None
    send_at: datetime | None
    send_flow_run_id: str | None
    detail: str | None
    created_at: datetime
    updated_at: datetime
    brief: bytes | None = field(default=None, repr=False)  # as previewed; None before 0005
    title: str | None = None  # None before 0006, and for a brief that could not be read

    @classmethod
    def from_row(cls, row: Any) -> Review:
        m = row._mapping
        return cls(
            flow_run_id=m["flow_run_id"],
            brief_id=m["brief_id"],
            path=m["path"],
            preview=m["preview"],
            digest=m["digest"],
            state=m["state"],
            approved_by=m["approved_by"],
            send_at=as_aware(m["send_at"]) if m["send_at"] else None,
            send_flow_run_id=m["send_flow_run_id"],
            detail=m["detail"],
            created_at=as_aware(m["created_at"]),
            updated_at=as_aware(m["updated_at"]),
            brief=m["brief"],
            title=m["title"],
        )


def digest(path: Path, settings: Settings) -> str:
    """The digest of the brief file at ``path`` as it is now (``digest_of``)."""
    return digest_of(read_regular(path, settings.input.max_bytes), settings)


def digest_of(brief: bytes, settings: Settings) -> str:
    """sha256 over the brief's bytes, every template file that can shape it (ours and the
    site's ``templates_dir``) and the settings that shape the output (secrets masked)."""
    h = hashlib.sha256()
    _part(h, b"brief", brief)
    for name, data in _template_files(settings):
        _part(h, b"template:" + name.encode(), data)
    shaping = settings.model_dump(mode="json", exclude=NOT_SHAPING)
    _part(h, b"settings", json.dumps(shaping, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _part(h: Any, label: bytes, data: bytes) -> None:
    # Length-prefixed: no two different inputs hash as the same stream.
    h.update(len(label).to_bytes(8, "big") + label + len(data).to_bytes(8, "big") + data)


def _template_files(settings: Settings) -> Iterator[tuple[str, bytes]]:
    roots = [("ours", templates_root())]
    if settings.site.templates_dir is not None:
        roots.append(("site", settings.site.templates_dir))
    seen = 0
    for label, root in roots:
        folders = [root / f for f in (*TEMPLATE_FOLDERS, "preview")]
        for folder in folders:
            if not folder.is_dir():
                continue
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                seen += 1
                if seen > MAX_TEMPLATE_FILES:
                    raise UserError(f"more than {MAX_TEMPLATE_FILES} template files in {root}")
                yield f"{label}/{file.relative_to(root).as_posix()}", file.read_bytes()


def check(review: Review, settings: Settings) -> None:
    """Raise :class:`Changed` unless what would be sent is what was previewed: the brief's
    stored bytes with this machine's templates and settings give the review's digest, and
    the brief's file, where this machine has one, has not been edited since.

    A machine without the file (a worker elsewhere, no shared storage) sends the stored
    bytes: exactly what was previewed. Where the file is, an edit still refuses the send,
    as the editor would expect of a brief they changed after approving it."""
    if review.brief is not None and digest_of(review.brief, settings) != review.digest:
        raise Changed(
            f"{review.brief_id}: the templates or the settings that shape it differ here from "
            "where it was previewed: nothing was sent; make them the same, or preview it again"
        )
    if review.brief is not None and not os.path.lexists(review.path):
        return
    try:
        now = digest(Path(review.path), settings)
    except (OSError, UnsafeFile) as exc:
        raise Changed(
            f"{review.brief_id}: the previewed brief cannot be read ({exc}); nothing was sent"
        ) from exc
    if now != review.digest:
        raise Changed(
            f"{review.brief_id} changed since its preview (the brief, a template or a setting "
            "that shapes it): nothing was sent; preview it again and approve the new preview"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def record(
    store: Store,
    *,
    flow_run_id: str,
    brief_id: str,
    path: Path,
    preview: Path,
    digest: str,
    brief: bytes | None = None,
    title: str | None = None,
) -> Review:
    """A new review waits for approval; an older waiting review of the same brief is
    superseded (its approval would name an old preview), and so is a failure to read the
    same file (it reads now)."""
    now = _now()
    with store.engine.begin() as conn:
        conn.execute(
            update(reviews)
            .where(reviews.c.brief_id == brief_id, reviews.c.state == ReviewState.WAITING)
            .where(reviews.c.flow_run_id != flow_run_id)
            .values(
                state=ReviewState.SUPERSEDED, detail="a newer preview replaced it", updated_at=now
            )
        )
        conn.execute(
            update(reviews)
            .where(reviews.c.path == str(path), reviews.c.state == ReviewState.FAILED)
            .where(reviews.c.digest == "", reviews.c.flow_run_id != flow_run_id)
            .values(state=ReviewState.SUPERSEDED, updated_at=now)
        )
        existing = conn.execute(select(reviews).where(reviews.c.flow_run_id == flow_run_id)).first()
        if existing is not None and existing.state == ReviewState.FAILED and not existing.digest:
            # The same run again (Retry in the UI) after its brief could not be read: it
            # reads now, and waits like any other.
            conn.execute(delete(reviews).where(reviews.c.flow_run_id == flow_run_id))
            existing = None
        if existing is None:
            conn.execute(
                insert(reviews).values(
                    flow_run_id=flow_run_id,
                    brief_id=brief_id,
                    path=str(path),
                    preview=str(preview),
                    digest=digest,
                    brief=brief,
                    title=title,
                    state=ReviewState.WAITING,
                    created_at=now,
                    updated_at=now,
                )
            )
    found = get(store, flow_run_id)
    assert found is not None
    return found


def one_line(text: str) -> str:
    """A reason as the listings show it: one line, at most REASON_MAX characters."""
    return " ".join(text.split())[:REASON_MAX]


def record_failed(store: Store, *, flow_run_id: str, path: Path, reason: str) -> Review:
    """A brief that could not be read or previewed: a failed review named by its file (it
    has no id yet), with the reason, so the editor's page and ``briefcast reviews`` show it
    and not only the Prefect UI. No digest, no preview: nothing of it can be approved."""
    now = _now()
    with store.engine.begin() as conn:
        existing = conn.execute(select(reviews).where(reviews.c.flow_run_id == flow_run_id)).first()
        if existing is not None and existing.state == ReviewState.FAILED and not existing.digest:
            conn.execute(  # the same run again, failed again: the newest reason
                update(reviews)
                .where(reviews.c.flow_run_id == flow_run_id)
                .values(detail=one_line(reason), updated_at=now)
            )
        elif existing is None:
            conn.execute(
                insert(reviews).values(
                    flow_run_id=flow_run_id,
                    brief_id=path.name[:BRIEF_ID_MAX] or str(path)[:BRIEF_ID_MAX],
                    path=str(path),
                    preview="",
                    digest="",
                    state=ReviewState.FAILED,
                    detail=one_line(reason),
                    created_at=now,
                    updated_at=now,
                )
            )
    found = get(store, flow_run_id)
    assert found is not None
    return found


def get(store: Store, flow_run_id: str) -> Review | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(reviews).where(reviews.c.flow_run_id == flow_run_id)).first()
    return Review.from_row(row) if row else None


def latest(
    store: Store, brief_id: str, states: Iterable[str] = (ReviewState.WAITING,)
) -> Review | None:
    """The newest review of ``brief_id`` in one of ``states``."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(reviews)
            .where(reviews.c.brief_id == brief_id, reviews.c.state.in_(list(states)))
            .order_by(reviews.c.id.desc())
            .limit(1)
        ).first()
    return Review.from_row(row) if row else None


def with_digest(store: Store, brief_id: str, digest: str) -> Review | None:
    """The newest review of ``brief_id`` bound to ``digest``, whatever its state."""
    if not digest:
        return None  # a brief that could not be read has none, and nothing to show
    with store.engine.connect() as conn:
        row = conn.execute(
            select(reviews)
            .where(reviews.c.brief_id == brief_id, reviews.c.digest == digest)
            .order_by(reviews.c.id.desc())
            .limit(1)
        ).first()
    return Review.from_row(row) if row else None


def waiting_for(store: Store, brief_id: str) -> Review:
    review = latest(store, brief_id)
    if review is None:
        raise NotWaiting(f"{brief_id}: no preview of it waits for approval")
    return review


def listed(store: Store, states: Iterable[str] = OPEN_STATES, limit: int = 200) -> list[Review]:
    """Reviews in ``states``, newest first (the editor's list)."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(reviews)
            .where(reviews.c.state.in_(list(states)))
            .order_by(reviews.c.id.desc())
            .limit(limit)
        ).all()
    return [Review.from_row(r) for r in rows]


def set_state(store: Store, flow_run_id: str, state: str, **fields: Any) -> None:
    allowed = {"approved_by", "send_at", "send_flow_run_id", "detail"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not a review field: {sorted(unknown)}")
    with store.engine.begin() as conn:
        conn.execute(
            update(reviews)
            .where(reviews.c.flow_run_id == flow_run_id)
            .values(state=state, updated_at=_now(), **fields)
        )


def note_send_run(store: Store, flow_run_id: str, send_flow_run_id: str) -> None:
    """The send flow run made for an approved review (its state left as it is)."""
    with store.engine.begin() as conn:
        conn.execute(
            update(reviews)
            .where(reviews.c.flow_run_id == flow_run_id)
            .values(send_flow_run_id=send_flow_run_id, updated_at=_now())
        )
