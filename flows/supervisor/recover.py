"""A send whose run crashed is run again, a bounded number of times.

The ``send`` run waits for its batches in a worker's process. When that process dies (an
OOM kill) its worker reports the run Crashed; when the whole worker or its machine dies,
the zombie automation does, once the heartbeats have stopped. Nobody would finish the send:
the batches not yet submitted would never go, and the review would say "sending" for ever.

``briefcast up``'s supervisor calls ``retry_crashed_sends`` every few seconds. It schedules
each crashed send run again, the same flow run (as the Prefect UI's Retry does), at most
``SEND_ATTEMPTS`` times in all; the run sends only what the ledger has not sent, so a retry
is safe. Crashes are counted in the run's own state history, so a run that dies before any
of our code runs (a broken install) is bounded too: after the last attempt the run is marked
Failed, and its review failed with the reason, for the editor to look at and send again.
"""

from __future__ import annotations

from typing import Any

from briefcast import reviews
from briefcast.config import Settings
from briefcast.reviews import ReviewState
from briefcast.store import Store

SEND_ATTEMPTS = 3  # runs of one send in all, counting the first
POLL_SECONDS = 5.0  # how often the supervisor looks for crashed sends


def crashed_sends(client: Any, limit: int = 50) -> list[Any]:
    """Flow runs of the ``send`` deployment that are Crashed now, oldest first."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.review import SEND_DEPLOYMENT, SEND_FLOW

    return list(
        client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[SEND_FLOW])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[SEND_DEPLOYMENT])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED]))
            ),
            sort=FlowRunSort.START_TIME_ASC,
            limit=limit,
        )
    )


def retry_crashed_sends(client: Any, settings: Settings) -> list[str]:
    """Schedule every crashed send run again, or give it up after ``SEND_ATTEMPTS`` crashes;
    one line per run handled, for the supervisor's log."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import AwaitingRetry, Failed

    done: list[str] = []
    for run in crashed_sends(client):
        crashes = sum(1 for s in client.read_flow_run_states(run.id) if s.type == StateType.CRASHED)
        why = (run.state.message or "").strip() if run.state else ""
        if crashes < SEND_ATTEMPTS:
            again: Any = AwaitingRetry(
                message=f"crashed ({crashes} of {SEND_ATTEMPTS}): run again by briefcast up"
            )
            if _set(client, run.id, again, done):
                done.append(f"send run {run.id} crashed ({why}): run again ({crashes + 1})")
            continue
        detail = f"the send crashed {crashes} times, the last: {why}"[: reviews.REASON_MAX]
        if not _set(client, run.id, Failed(message=detail), done):
            continue
        review_id = str(run.parameters.get("review_id", ""))
        if review_id:
            with Store(settings.database.url) as store:
                reviews.set_state(store, review_id, ReviewState.FAILED, detail=detail)
        done.append(f"send run {run.id}: {detail}; given up")
    return done


def _set(client: Any, run_id: Any, state: Any, lines: list[str]) -> bool:
    """Propose ``state``; False (and a line) when the server did not take it (the run moved
    on meanwhile: a worker or a person retried it first)."""
    from prefect.client.schemas.responses import SetStateStatus

    result = client.set_flow_run_state(run_id, state)
    if result.status == SetStateStatus.ACCEPT:
        return True
    lines.append(f"send run {run_id}: not {state.name}: {result.details}")
    return False
