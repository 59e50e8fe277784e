"""The editor's workflow on a Prefect server: preview, wait for approval, send.

``review`` (deployment ``review/briefcast-review``): one brief's dry run (the ``publish``
flow, previews in ``out`` and as artifacts), the digest of what was previewed recorded in
the ``reviews`` table, then the run *suspends* (no process waits) until the editor approves
in the Prefect UI, with ``briefcast approve``, or on the editor's pages. Resumed, the run
starts again from the top (Prefect's suspend), finds its review recorded, checks the
approval's digest against the files as they are now, and hands the send to the ``send``
deployment: now, or as a scheduled flow run at the approved time.

``send`` rebuilds the brief (same bytes: same files, same date), checks the digest once
more, archives it as published, and sends every channel through its units of work
(``flows.units``, as ``publish --send`` does): each unit that sends alone (a batch of
subscribers) a ``send-batch`` flow run that any worker of the pool may take, in a process
of its own, run again when its worker dies; the others tasks of the ``send`` run. The
channels' ledgers keep every message and post to one copy across workers and retries.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.deployments import run_deployment
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import flow_run as current_run

from briefcast import channel as registry
from briefcast import pipeline, reviews
from briefcast.brief import Brief
from briefcast.channel import Outputs, SendUnit, sends
from briefcast.config import Settings, load_settings
from briefcast.errors import BriefcastError
from briefcast.previews import reviewed_dir
from briefcast.reviews import Approval, ReviewState
from briefcast.safe_io import read_regular
from briefcast.store import Store
from flows import worker_pid
from flows.publish import publish
from flows.units import ARTIFACT_KEY_MAX, send_alone, send_channel

# The flows' names and their deployments' (made by `briefcast up`, flows.supervisor.up);
# run_deployment names a deployment "<flow>/<deployment>".
REVIEW_FLOW, SEND_FLOW, BATCH_FLOW = "review", "send", "send-batch"
REVIEW_DEPLOYMENT = "briefcast-review"
SEND_DEPLOYMENT = "briefcast-send"
BATCH_DEPLOYMENT = "briefcast-send-batch"
REVIEW = f"{REVIEW_FLOW}/{REVIEW_DEPLOYMENT}"
SEND = f"{SEND_FLOW}/{SEND_DEPLOYMENT}"
BATCH = f"{BATCH_FLOW}/{BATCH_DEPLOYMENT}"
BATCH_ATTEMPTS = 3  # a batch run that crashed (its worker killed) is run again this often
POLL_SECONDS = 1.0
EARLIER_BATCHES_WAIT = 3600.0  # a crashed send's batches, at most, before it sends again


class SendRefused(BriefcastError):
    """The approval does not match what is there now."""


def _store(settings: Settings) -> Store:
    return Store(settings.database.url)


@flow(name=REVIEW_FLOW, log_prints=False)
def review(path: str, out: str = "out") -> str:
    """Preview one brief and wait for the editor's approval; returns the brief's id."""
    settings = load_settings()
    run_id = str(current_run.id)
    with _store(settings) as store:
        known = reviews.get(store, run_id)
    if known is None or (known.state == ReviewState.FAILED and not known.digest):
        # The first time through (or again, after the brief could not be read): preview and
        # record what was previewed.
        brief_path = Path(path).absolute()
        try:
            known, brief = _preview(brief_path, out, run_id, settings)
        except Exception as exc:
            # Recorded, so that the editor's page and `briefcast reviews` show it, not only
            # the Prefect UI; the run still fails, with the same reason.
            with _store(settings) as store:
                reviews.record_failed(
                    store, flow_run_id=run_id, path=brief_path, reason=str(exc) or repr(exc)
                )
            raise
        brief_id = known.brief_id
        reach = "".join(f"{line}\n\n" for line in _reach(brief, settings))
        create_markdown_artifact(
            key=f"approve-{brief_id}"[:ARTIFACT_KEY_MAX],
            markdown=(
                f"# {brief_id} waits for approval\n\nPreview: `{known.preview}/index.html`\n\n"
                f"Digest of what was previewed: `{known.digest}`\n\n{reach}"
                "Approve with **Resume** here (the digest above), `briefcast approve "
                f"{brief_id}` or on the editor's pages of `briefcast serve`."
            ),
        )
    given = suspend_flow_run(
        wait_for_input=Approval,
        key="approval",
        timeout=int(settings.workflow.approval_hours * 3600),
    )
    return _approved(known, given, settings)


def _reach(brief: Brief, settings: Settings) -> list[str]:
    """Whom each channel that says so would reach (``reach(brief, settings)``, one line
    each: e.g. the subscribers per edition, as the list is now)."""
    said = (getattr(c, "reach", None) for c in registry.registry().values())
    return [reach(brief, settings) for reach in said if callable(reach)]


def _preview(
    brief_path: Path, out: str, run_id: str, settings: Settings
) -> tuple[reviews.Review, Brief]:
    """The brief's dry run, then its review recorded, waiting."""
    data = read_regular(brief_path, settings.input.max_bytes)
    before = reviews.digest_of(data, settings)
    folders = publish([str(brief_path)], None, dry_run=True, out=out, review_digest=before).folders
    if reviews.digest(brief_path, settings) != before:
        raise SendRefused(f"{brief_path.name} changed while it was previewed: save it again")
    [brief] = pipeline.read([brief_path], settings)
    # The review's own copy, by its digest: out/<id>/ is whatever was dry-run last under that
    # id (another file, a --test-to), and the editor must see what they approve.
    kept = reviewed_dir(Path(out).absolute(), Path(folders[0]).name, before)
    with _store(settings) as store:
        review = reviews.record(
            store,
            flow_run_id=run_id,
            brief_id=brief.id,
            path=brief_path,
            preview=kept,
            digest=before,
            brief=data,
            title=brief.title,
        )
    return review, brief


def _approved(known: reviews.Review, given: Approval, settings: Settings) -> str:
    with _store(settings) as store:
        try:
            if given.digest != known.digest:
                raise reviews.Changed(
                    f"{known.brief_id}: the approval names another preview "
                    f"({given.digest[:12]}…, previewed {known.digest[:12]}…): nothing was sent"
                )
            reviews.check(known, settings)
        except reviews.Changed as exc:
            reviews.set_state(store, known.flow_run_id, ReviewState.REFUSED, detail=str(exc))
            raise
        # The state first: the send run, once made, moves it on (sending, sent) at any time.
        reviews.set_state(
            store,
            known.flow_run_id,
            ReviewState.SCHEDULED if given.send_at else ReviewState.APPROVED,
            approved_by=given.by or None,
            send_at=given.send_at,
        )
        run: Any = run_deployment(
            SEND,
            parameters={"review_id": known.flow_run_id},
            scheduled_time=given.send_at,
            timeout=0,
            as_subflow=False,
            idempotency_key=f"send-{known.flow_run_id}",
        )
        reviews.note_send_run(store, known.flow_run_id, str(run.id))
    return known.brief_id


def _build(known: reviews.Review, settings: Settings, names: list[str]) -> Outputs:
    with _brief_file(known) as path:
        briefs = pipeline.read([path], settings)
    dated = pipeline.date(briefs, settings)
    [outputs] = pipeline.build(dated, settings, names, pipeline.published(dated, settings))
    return outputs


@contextmanager
def _brief_file(known: reviews.Review) -> Iterator[Path]:
    """The brief as previewed: its stored bytes, in a folder of this run's own, under the
    file's own name (the readers go by its extension, the brief's ``source`` is the name),
    so a worker on a machine without the editor's files needs no shared storage. Reviews
    recorded before the bytes were kept build from the file itself."""
    if known.brief is None:
        yield Path(known.path)
        return
    name = Path(known.path).name
    if name in ("", ".", ".."):
        raise SendRefused(f"{known.brief_id}: no file name in {known.path!r}")
    with tempfile.TemporaryDirectory(prefix="briefcast-brief-") as folder:
        path = Path(folder) / name
        path.write_bytes(known.brief)
        yield path


def _checked(review_id: str, settings: Settings) -> reviews.Review:
    with _store(settings) as store:
        known = reviews.get(store, review_id)
        if known is None:
            raise SendRefused(f"no review {review_id}")
        if known.state not in (
            ReviewState.APPROVED,
            ReviewState.SCHEDULED,
            ReviewState.SENDING,
            ReviewState.SENT,
            ReviewState.FAILED,
        ):
            raise SendRefused(f"{known.brief_id} is {known.state}, not approved: nothing sent")
        try:
            reviews.check(known, settings)
        except reviews.Changed as exc:
            reviews.set_state(store, review_id, ReviewState.REFUSED, detail=str(exc))
            raise
    return known


@flow(name=SEND_FLOW, log_prints=False)
def send(review_id: str) -> dict[str, str]:
    """Send an approved brief on every channel; returns each channel's summary line."""
    settings = load_settings()
    known = _checked(review_id, settings)
    names = [n for n in registry.names() if sends(registry.get(n))]
    for name in names:
        cast(Any, registry.get(name)).check_ready(settings)
    with _store(settings) as store:
        reviews.set_state(store, review_id, ReviewState.SENDING)
    outputs = _build(known, settings, registry.names())
    pipeline.archive([outputs.brief], settings, dry_run=False)

    def elsewhere(units: list[SendUnit]) -> None:
        _send_batches(known, units)

    lines: dict[str, str] = {}
    try:
        for name in names:
            summary = send_channel(name, outputs, settings, elsewhere=elsewhere)
            lines[name] = summary.line() if summary is not None else "sent in send-batch runs"
    except BaseException as exc:
        with _store(settings) as store:
            reviews.set_state(
                store, review_id, ReviewState.FAILED, detail=str(exc)[: reviews.REASON_MAX]
            )
        raise
    with _store(settings) as store:
        reviews.set_state(store, review_id, ReviewState.SENT, detail=None)
    create_table_artifact(
        key=f"sent-{known.brief_id}"[:ARTIFACT_KEY_MAX],
        table=[{"channel": name, "summary": line} for name, line in lines.items()],
        description=f"sent from {socket.gethostname()}, worker pid {worker_pid()}",
    )
    return lines


def _send_batches(known: reviews.Review, units: list[SendUnit]) -> None:
    """One ``send-batch`` flow run per unit (e.g. a keyset range of the brief's
    subscribers), all submitted at once so that every worker of the pool takes some; a run
    that crashed (its worker or machine died) is submitted again: the ledger sends only what
    is not sent yet."""
    logger = get_run_logger()
    tag = batch_tag(known.flow_run_id)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        _wait_for_earlier_batches(client, tag, logger)
    pending: dict[int, Any] = {}
    attempts: dict[int, int] = {}

    def submit(i: int) -> None:
        attempts[i] = attempts.get(i, 0) + 1
        pending[i] = run_deployment(
            BATCH,
            parameters={"review_id": known.flow_run_id, "unit": units[i].as_json()},
            timeout=0,
            as_subflow=True,
            tags=[tag],
        )

    for i in range(len(units)):
        submit(i)
    failed: list[str] = []
    with get_client(sync_client=True) as client:
        while pending:
            time.sleep(POLL_SECONDS)
            for i, run in list(pending.items()):
                state = client.read_flow_run(run.id).state
                if state is None or not state.is_final():
                    continue
                del pending[i]
                if state.is_completed():
                    continue
                label = f"{units[i].channel} {units[i].label}"
                if attempts[i] < BATCH_ATTEMPTS:
                    logger.warning("%s %s: sending it again", label, state.name)
                    submit(i)
                else:
                    failed.append(f"{label}: {state.name}")
    if failed:
        raise BriefcastError(f"{known.brief_id}: batches not sent: {'; '.join(failed)}")


def batch_tag(review_id: str) -> str:
    """The tag of every batch run sent for one review, whichever send run made it."""
    return f"review-{review_id}"


def _wait_for_earlier_batches(client: Any, tag: str, logger: Any) -> None:
    """A send run again after it crashed (``flows.supervisor.recover``) may have left
    batches behind, running on another worker or still scheduled. The ranges are cut again
    from the list as it is now, and a batch's lock covers its exact range only: an old and a
    new batch over overlapping ranges at once could mail a subscriber twice. So the old ones
    end first (a lost machine's are marked Crashed by the zombie automation)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    final = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]
    unfinished = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[tag]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=final)),
    )
    said = False
    deadline = time.monotonic() + EARLIER_BATCHES_WAIT
    while runs := client.read_flow_runs(
        flow_run_filter=unfinished, sort=FlowRunSort.ID_DESC, limit=200
    ):
        if time.monotonic() > deadline:
            raise BriefcastError(
                f"{len(runs)} batches of an earlier run of this send did not end in "
                f"{EARLIER_BATCHES_WAIT:.0f} s: cancel them, then retry this run"
            )
        if not said:
            logger.info("waiting for %d batches of an earlier run of this send", len(runs))
            said = True
        time.sleep(POLL_SECONDS)


@flow(name=BATCH_FLOW, log_prints=False, retries=2, retry_delay_seconds=2)
def send_batch(review_id: str, unit: dict[str, Any]) -> str:
    """One unit of an approved send that sends alone (``flows.units``), e.g. the brief to
    the active subscribers with ids first..last; returns its summary line."""
    settings = load_settings()
    known = _checked(review_id, settings)
    one = SendUnit.from_json(unit)
    if one.brief_id != known.brief_id or not sends(registry.get(one.channel)):
        raise SendRefused(f"review {review_id} sends {known.brief_id}, not {one.brief_id!r}")
    outputs = _build(known, settings, [one.channel])
    return str(send_alone(one, outputs, settings).line())
