"""The publish flow: read → date → build → dispatch → archive → send, one flow run for all
briefs. Nothing is archived until every output is built and every preview is in place.

Runs in Prefect's local mode with no server to start; set ``PREFECT_API_URL`` to run it
against a Prefect server (and its workers). The tasks are thin: the work is in
``briefcast.pipeline`` and the channel adapters, plain functions tested without Prefect; the
live send runs each channel's units of work (``flows.units``), as the approved send does.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from briefcast import channel as registry
from briefcast import pipeline
from briefcast.brief import Brief
from briefcast.channel import Outputs, sends
from briefcast.config import Settings, load_settings
from briefcast.previews import dispatch_preview, finish_previews, staging_dir
from briefcast.render.preview import preview_markdown, preview_rows
from flows.units import ARTIFACT_KEY_MAX, send_channel


@dataclass(frozen=True)
class Published:
    """What a publish run did, its value: each brief's preview folder, every live send's
    summary as ``(channel, summary)`` (channel by channel, brief by brief) and every test
    send's result. The CLI prints them; only the progress of a send is reported while it
    runs (``briefcast.reporting``)."""

    folders: list[str]
    sent: list[tuple[str, Any]] = field(default_factory=list)
    tested: list[Any] = field(default_factory=list)


# Inputs here are live objects (settings, briefs): nothing to cache or persist.
quiet_task = task(cache_policy=NO_CACHE, persist_result=False)


@quiet_task
def read_briefs(paths: list[str], settings: Settings) -> list[Brief]:
    return pipeline.read(paths, settings)


@quiet_task
def date_briefs(briefs: list[Brief], settings: Settings) -> list[Brief]:
    return pipeline.date(briefs, settings)


@quiet_task
def build_outputs(briefs: list[Brief], settings: Settings, names: list[str]) -> list[Outputs]:
    return pipeline.build(briefs, settings, names, pipeline.published(briefs, settings))


@quiet_task
def dispatch(name: str, outputs: list[Outputs], staging: Path) -> int:
    return len(dispatch_preview(name, outputs, staging))


@quiet_task
def finish(
    outputs: list[Outputs],
    names: list[str],
    staging: Path,
    out: Path,
    settings: Settings,
    review_digest: str | None = None,
) -> list[str]:
    folders = finish_previews(outputs, names, staging, out, settings, digest=review_digest)
    chosen = [registry.get(name) for name in names]
    for o in outputs:
        key = f"preview-{o.brief.id}"[:ARTIFACT_KEY_MAX]
        create_markdown_artifact(key=key, markdown=preview_markdown(o, chosen))
        create_table_artifact(key=f"{key}-table"[:ARTIFACT_KEY_MAX], table=preview_rows(o, chosen))
    return [str(f) for f in folders]


@quiet_task
def archive_briefs(briefs: list[Brief], settings: Settings, dry_run: bool) -> list[Brief]:
    return pipeline.archive(briefs, settings, dry_run=dry_run)


@quiet_task
def send_test(name: str, outputs: list[Outputs], settings: Settings, to: list[str]) -> list[Any]:
    channel: Any = registry.get(name)
    return [r for o in outputs for r in channel.send_test(o, settings, to)]


@flow(name="publish", log_prints=False)
def publish(
    paths: list[str],
    channels: list[str] | None = None,
    dry_run: bool = True,
    out: str = "out",
    resend_unknown: bool = False,
    test_to: list[str] | None = None,
    to_everyone: bool = False,
    review_digest: str | None = None,
) -> Published:
    """Publish briefs; returns each brief's preview folder and what was sent
    (``Published``). With ``dry_run=False`` every chosen channel that can send does;
    ``test_to`` mails the editions to those addresses. ``to_everyone`` mails every
    subscriber, not only those who read a brief's languages (as its front matter's
    ``audience: everyone`` does). ``review_digest`` (the review flow's,
    one brief) also keeps the previews under that digest (``briefcast.previews.reviewed_dir``)."""
    settings = load_settings()
    names = registry.parse(channels) if channels else registry.names()
    senders = [n for n in names if sends(registry.get(n))] if not dry_run else []
    for name in senders:  # every channel ready before anything is archived or sent
        cast(Any, registry.get(name)).check_ready(settings)
    briefs = read_briefs(paths, settings)
    if to_everyone:
        briefs = [replace(b, to_everyone=True) for b in briefs]
    dated = date_briefs(briefs, settings)
    outputs = build_outputs(dated, settings, names)
    out_dir = Path(out)
    staging = staging_dir(out_dir)
    try:
        for name in names:
            dispatch(name, outputs, staging)
        folders = finish(outputs, names, staging, out_dir, settings, review_digest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a failed run leaves no half-built folder
    archive_briefs(dated, settings, dry_run)
    tested = [
        result
        for name in (names if test_to else [])
        if callable(getattr(registry.get(name), "send_test", None))
        for result in send_test(name, outputs, settings, test_to or [])
    ]
    sent = [  # each channel's units (flows.units), brief by brief
        (name, send_channel(name, o, settings, resend_unknown=resend_unknown))
        for name in senders
        for o in outputs
    ]
    return Published(folders, sent, tested)


if __name__ == "__main__":
    # A long-running process that executes runs of the "publish" deployment started from
    # the Prefect UI or `prefect deployment run publish/briefcast-publish -p paths='[...]'`.
    publish.serve(name="briefcast-publish")
