"""The publish flow: read → date → build → dispatch → archive → send, one flow run for all
briefs. Nothing is archived until every output is built and every preview is in place.

Runs in Prefect's local mode with no server to start; set ``PREFECT_API_URL`` to run it
against a Prefect server (and its workers). The tasks are thin: the work is in
``briefcast.pipeline`` and the channel adapters, plain functions tested without Prefect.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from briefcast import channel as registry
from briefcast import pipeline, reporting
from briefcast.brief import Brief
from briefcast.channel import Outputs, sends
from briefcast.config import Settings, load_settings
from briefcast.previews import dispatch_preview, finish_previews, staging_dir
from briefcast.render.preview import preview_markdown, preview_rows

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
        key = f"preview-{o.brief.id}"[:100]
        create_markdown_artifact(key=key, markdown=preview_markdown(o, chosen))
        create_table_artifact(key=f"{key}-table"[:100], table=preview_rows(o, chosen))
    return [str(f) for f in folders]


@quiet_task
def archive_briefs(briefs: list[Brief], settings: Settings, dry_run: bool) -> list[Brief]:
    return pipeline.archive(briefs, settings, dry_run=dry_run)


@quiet_task
def send(name: str, outputs: list[Outputs], settings: Settings, resend_unknown: bool) -> list[Any]:
    """One channel's live send, brief by brief, once only (through the channel's ledger);
    each summary goes to whoever watches (``briefcast.reporting``: the CLI prints it) and
    becomes a table artifact."""
    channel: Any = registry.get(name)
    reporter = reporting.current()
    summaries = []
    for o in outputs:
        summary = channel.send(o, settings, resend_unknown=resend_unknown)
        summaries.append(summary)
        if reporter is not None:
            reporter.summary(name, summary)
        if callable(getattr(summary, "rows", None)):
            create_table_artifact(
                key=f"send-{name}-{o.brief.id}"[:100],
                table=summary.rows(),
                description="\n\n".join([summary.line(), *reporting.notes(summary)]),
            )
    return summaries


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
) -> list[str]:
    """Publish briefs; returns each brief's preview folder. With ``dry_run=False`` every
    chosen channel that can send does; ``test_to`` mails the editions to those addresses.
    ``to_everyone`` mails every subscriber, not only those who read a brief's languages
    (as its front matter's ``audience: everyone`` does). ``review_digest`` (the review flow's,
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
    if test_to:
        for name in names:
            if callable(getattr(registry.get(name), "send_test", None)):
                send_test(name, outputs, settings, test_to)
    for name in senders:
        send(name, outputs, settings, resend_unknown)
    return folders


if __name__ == "__main__":
    # A long-running process that executes runs of the "publish" deployment started from
    # the Prefect UI or `prefect deployment run publish/briefcast-publish -p paths='[...]'`.
    publish.serve(name="briefcast-publish")
