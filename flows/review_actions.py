"""What is done to a review from outside its flow run: approve it (check the digest, then
resume its suspended flow run), end a waiting review (discard), cancel a scheduled send,
move it to a new time, and preview a brief again so that it waits for approval once more.

Used by ``briefcast approve`` and the editor's pages of ``briefcast serve`` alike. Each call
talks to the Prefect server :func:`flows.supervisor.server.api_url` finds
(``PREFECT_API_URL``, else the one ``briefcast up`` runs), looked up at each call: ``serve``
may have started before ``up``. With none, the action is refused in one line (``NoServer``)
and nothing changes: Prefect would otherwise start a temporary server of its own, which
cannot know the waiting run and outlives ``serve`` (~200 MB).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from briefcast import reviews
from briefcast.config import Settings
from briefcast.errors import BriefcastError, UserError
from briefcast.reviews import Approval, Review, ReviewState
from briefcast.store import Store
from flows.supervisor import server

NO_SERVER = "no Prefect server: start `briefcast up` (or set PREFECT_API_URL)"


class ResumeFailed(BriefcastError):
    """The Prefect server did not take the approval."""


class NoServer(UserError):
    """No Prefect server to resume the review on."""


def approve(
    brief_id: str,
    settings: Settings,
    *,
    send_at: datetime | None = None,
    by: str = "",
    digest: str | None = None,
) -> Review:
    """Approve the newest waiting preview of ``brief_id``: refused in one line
    (``reviews.Changed``) when the brief, a template or a shaping setting changed since;
    otherwise the review's flow run resumes with the approval and sends (or schedules the
    send at ``send_at``, an aware datetime). ``digest``, when given, is the preview the
    approver saw: a newer preview waiting instead is refused. Returns the review as it now
    stands. Refused (``NoServer``) when no Prefect server is running."""
    with Store(settings.database.url) as store:
        review = reviews.waiting_for(store, brief_id)
        if digest is not None and digest != review.digest:
            raise reviews.Changed(
                f"{brief_id}: the preview you approved is not the one waiting now (a newer "
                "preview replaced it): nothing was sent; approve the new preview"
            )
        reviews.check(review, settings)
        url = server.api_url(settings)
        if url is None:
            raise NoServer(NO_SERVER)
        # In UTC: SQLite keeps no offset, and Prefect schedules in UTC anyway.
        send_at = send_at.astimezone(UTC) if send_at is not None else None
        # Recorded before the resume: the resumed run moves it on (scheduled, sending), and
        # must never be overwritten by this late "approved".
        reviews.set_state(
            store, review.flow_run_id, ReviewState.APPROVED, approved_by=by or None, send_at=send_at
        )
        try:
            _resume(url, review.flow_run_id, Approval(digest=review.digest, send_at=send_at, by=by))
        except ResumeFailed:
            reviews.set_state(
                store, review.flow_run_id, ReviewState.WAITING, approved_by=None, send_at=None
            )
            raise
        found = reviews.get(store, review.flow_run_id)
    assert found is not None
    return found


def _resume(url: str, flow_run_id: str, given: Approval) -> None:
    # Prefect is slow to import: only here.
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
        temporary_settings,
    )

    # The URL for this call only, whatever Prefect read from the environment when it was
    # first imported (serve imports it at its first approval, maybe before `up` ran); and
    # never a temporary server of Prefect's own.
    only_this = {PREFECT_API_URL: url, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}
    try:
        with temporary_settings(updates=only_this):
            resume_flow_run(UUID(flow_run_id), run_input=given.model_dump(mode="json"))
    except Exception as exc:  # the server's answer, whatever its type, in one line
        raise ResumeFailed(
            f"the Prefect server did not resume the review: {exc or type(exc).__name__}"
        ) from exc


def cancel_run(flow_run_id: str) -> None:
    """Cancel a scheduled send (it never starts)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Cancelled(), force=True)


class PrefectRefused(BriefcastError):
    """The Prefect server did not take the change."""


@contextmanager
def _on_server(settings: Settings, doing: str) -> Iterator[None]:
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
        temporary_settings,
    )

    url = server.api_url(settings)
    if url is None:
        raise NoServer(NO_SERVER)
    only_this = {PREFECT_API_URL: url, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}
    try:
        with temporary_settings(updates=only_this):
            yield
    except NoServer:
        raise
    except Exception as exc:  # the server's answer, whatever its type, in one line
        text = " ".join(f"{exc}".split()) or type(exc).__name__
        raise PrefectRefused(f"the Prefect server did not {doing}: {text}") from exc


class PrefectActions:
    """The editor's actions on the Prefect server ``settings`` lead to."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def cancel_run(self, flow_run_id: str) -> None:
        """Cancel a flow run: a suspended review or a scheduled send (it never starts)."""
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with _on_server(self.settings, "cancel the run"), get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(flow_run_id), Cancelled(), force=True)

    def reschedule(self, flow_run_id: str, when: datetime) -> None:
        """Move a scheduled send to ``when`` (aware): the same run, a new time."""
        from prefect.client.orchestration import get_client
        from prefect.states import Scheduled

        with (
            _on_server(self.settings, "reschedule the send"),
            get_client(sync_client=True) as client,
        ):
            client.set_flow_run_state(UUID(flow_run_id), Scheduled(scheduled_time=when), force=True)

    def review_again(self, path: Path) -> None:
        """Preview the brief again, to wait for approval (as if saved into the inbox)."""
        from flows.supervisor.inbox import submit

        out = self.settings.workflow.out.expanduser().absolute()
        with _on_server(self.settings, "start a new review"):
            submit(path, out)
