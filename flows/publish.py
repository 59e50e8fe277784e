"""The publish flow: read → date → build → dispatch → archive → send, one flow run for all
briefs. Nothing is archived until every output is built and every preview is in place.

Runs in Prefect's local mode with no server to start; set ``PREFECT_API_URL`` to run it
against a Prefect server (and its workers). The tasks are thin: the work is in
``briefcast.pipeline`` and the channel adapters, plain functions tested without Prefect.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from briefcast import pipeline
from briefcast.brief import Brief
from briefcast.config import Settings, load_settings
from briefcast.delivery import DeliverySummary, TestSend, check_ready
from briefcast.pipeline import Edition
from briefcast.render.preview import preview_markdown, preview_rows
from channels import dispatch_preview, finish_previews, staging_dir
from channels import email as email_channel

# Inputs here are live objects (settings, briefs): nothing to cache or persist.
quiet_task = task(cache_policy=NO_CACHE, persist_result=False)


@quiet_task
def read_briefs(paths: list[str], settings: Settings) -> list[Brief]:
    return pipeline.read(paths, settings)


@quiet_task
def date_briefs(briefs: list[Brief], settings: Settings) -> list[Brief]:
    return pipeline.date(briefs, settings)


@quiet_task
def archive_briefs(briefs: list[Brief], settings: Settings, dry_run: bool) -> list[Brief]:
    return pipeline.archive(briefs, settings, dry_run=dry_run)


@quiet_task
def build_editions(briefs: list[Brief], settings: Settings, channels: list[str]) -> list[Edition]:
    feeds = pipeline.build_all_feeds(briefs, settings) if "feed" in channels else []
    return pipeline.build(briefs, settings, channels, feeds)


@quiet_task
def dispatch(channel: str, editions: list[Edition], staging: Path) -> int:
    return len(dispatch_preview(channel, editions, staging))


@quiet_task
def finish(
    editions: list[Edition], channels: list[str], staging: Path, out: Path, settings: Settings
) -> list[str]:
    folders = finish_previews(editions, channels, staging, out, settings)
    for edition in editions:
        key = f"preview-{edition.brief.id}"[:100]
        create_markdown_artifact(key=key, markdown=preview_markdown(edition))
        create_table_artifact(key=f"{key}-table"[:100], table=preview_rows(edition))
    return [str(f) for f in folders]


@quiet_task
def send_email(editions: list[Edition], resend_unknown: bool) -> list[DeliverySummary]:
    """The live send: each brief to its active subscribers, through the delivery ledger,
    from a sending process of its own (small and alone on its CPU; same settings)."""
    summaries = []
    for edition in editions:
        summary = email_channel.send(edition, resend_unknown=resend_unknown)
        summaries.append(summary)
        create_table_artifact(
            key=f"delivery-{edition.brief.id}"[:100],
            table=[
                {"status": status, "this run": n, "all runs": summary.ledger[status]}
                for status, n in summary.this_run.items()
            ],
            description=summary.line(),
        )
    return summaries


@quiet_task
def send_test_email(editions: list[Edition], settings: Settings, to: list[str]) -> list[TestSend]:
    return [r for e in editions for r in email_channel.send_tests(e, settings, to)]


@flow(name="publish", log_prints=False)
def publish(
    paths: list[str],
    channels: list[str] = list(pipeline.CHANNELS),  # noqa: B006 - Prefect parameters are data
    dry_run: bool = True,
    out: str = "out",
    resend_unknown: bool = False,
    test_to: list[str] | None = None,
) -> list[str]:
    """Publish briefs; returns each brief's preview folder. With ``dry_run=False`` the email
    goes to the subscribers; ``test_to`` mails the editions to those addresses only."""
    settings = load_settings()
    channels = pipeline.parse_channels(channels)
    sending = not dry_run and "email" in channels
    if sending:
        check_ready(settings)  # before anything is archived as published
    briefs = read_briefs(paths, settings)
    dated = date_briefs(briefs, settings)
    editions = build_editions(dated, settings, channels)
    out_dir = Path(out)
    staging = staging_dir(out_dir)
    try:
        for channel in channels:
            dispatch(channel, editions, staging)
        folders = finish(editions, channels, staging, out_dir, settings)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a failed run leaves no half-built folder
    archive_briefs(dated, settings, dry_run)
    if test_to and "email" in channels:
        send_test_email(editions, settings, test_to)
    if sending:
        send_email(editions, resend_unknown)
    return folders


if __name__ == "__main__":
    # A long-running process that executes runs of the "publish" deployment started from
    # the Prefect UI or `prefect deployment run publish/briefcast-publish -p paths='[...]'`.
    publish.serve(name="briefcast-publish")
