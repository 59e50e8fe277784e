"""A crashed ``send`` run is scheduled again by ``briefcast up``'s supervisor
(``flows.supervisor.recover``), at most ``SEND_ATTEMPTS`` runs in all, then marked Failed with its
review: against a temporary Prefect server, the runs' states set as a worker and the zombie
automation set them. The whole path, a worker killed under a real send, is in
tests/test_workflow.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from briefcast import reviews
from briefcast.config import DatabaseSettings, Settings
from briefcast.store import Store

POOL = "recovery-test"
# A send-batch run's parameter: one unit of a channel's send (briefcast.channel.SendUnit).
BATCH_UNIT = {
    "channel": "email",
    "brief_id": "paris-force",
    "label": "subscribers 1-9",
    "params": {"first": 1, "last": 9},
    "alone": True,
}


@pytest.fixture(scope="module")
def deployments(prefect_server: None) -> dict[str, Any]:
    """The send and send-batch deployments on a process pool (no worker: nothing runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType

    from flows.review import send, send_batch

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    ids = {}
    made: Any
    for made, name in ((send, "briefcast-send"), (send_batch, "briefcast-send-batch")):
        deployment: Any = made.to_deployment(
            name=name, work_pool_name=POOL, entrypoint_type=EntrypointType.MODULE_PATH
        )
        ids[made.name] = deployment.apply(work_pool_name=POOL)
    return ids


def crash(client: Any, run_id: Any, why: str = "no heartbeat: its worker or machine is gone"):
    """The run started, then its process died (as a worker or the zombie automation says)."""
    from prefect.states import Crashed, Pending, Running

    for state in (Pending(), Running(), Crashed(message=why)):
        client.set_flow_run_state(run_id, state, force=True)


def state_of(client: Any, run_id: Any) -> Any:
    return client.read_flow_run(run_id).state


def test_a_crashed_send_runs_again_twice_then_fails_with_its_review(
    deployments: dict[str, Any], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.supervisor.recover import SEND_ATTEMPTS, retry_crashed_sends

    settings = Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'b.db'}"))
    review_id = str(uuid.uuid4())
    with Store(settings.database.url) as store:
        reviews.record(
            store,
            flow_run_id=review_id,
            brief_id="paris-force",
            path=tmp_path / "paris.md",
            preview=tmp_path / "out",
            digest="d" * 64,
        )
        reviews.set_state(store, review_id, "sending")

    with get_client(sync_client=True) as client:
        params = {"review_id": review_id}
        send = client.create_flow_run_from_deployment(deployments["send"], parameters=params)
        # A crashed batch is the send's to submit again, and a finished send stays finished.
        batch = client.create_flow_run_from_deployment(
            deployments["send-batch"], parameters={**params, "unit": BATCH_UNIT}
        )
        crash(client, batch.id)
        done = client.create_flow_run_from_deployment(deployments["send"], parameters=params)
        from prefect.states import Completed

        client.set_flow_run_state(done.id, Completed(), force=True)

        assert retry_crashed_sends(client, settings) == []  # nothing crashed yet
        for attempt in range(1, SEND_ATTEMPTS):
            crash(client, send.id)
            (line,) = retry_crashed_sends(client, settings)
            assert line == (
                f"send run {send.id} crashed (no heartbeat: its worker or machine is gone): "
                f"run again ({attempt + 1})"
            )
            again = state_of(client, send.id)
            assert (again.type.value, again.name) == ("SCHEDULED", "AwaitingRetry")
            assert retry_crashed_sends(client, settings) == []  # once each crash

        crash(client, send.id, why="killed by the OOM killer")
        (line,) = retry_crashed_sends(client, settings)
        detail = f"the send crashed {SEND_ATTEMPTS} times, the last: killed by the OOM killer"
        assert line == f"send run {send.id}: {detail}; given up"
        final = state_of(client, send.id)
        assert final.type.value == "FAILED" and final.message == detail
        assert retry_crashed_sends(client, settings) == []

        assert state_of(client, batch.id).type.value == "CRASHED"
        assert state_of(client, done.id).type.value == "COMPLETED"
    with Store(settings.database.url) as store:
        review = reviews.get(store, review_id)
    assert review is not None and (review.state, review.detail) == ("failed", detail)
