"""What the editor's pages ask of the Prefect server besides approving (flows/approve.py):
end a waiting review's suspended run (discard), cancel a scheduled send, move it to a new
time, and preview a brief again so that it waits for approval once more.

Each call finds the server as ``briefcast approve`` does (:func:`flows.server.api_url`, at
each call: ``serve`` may start before ``up``), and never starts one: with none, the action
is refused in one line (``NoServer``) and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from uuid import UUID

from briefcast.config import Settings
from briefcast.errors import BriefcastError
from flows import server
from flows.approve import NO_SERVER, NoServer


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
        from flows.inbox import submit

        out = self.settings.workflow.out.expanduser().absolute()
        with _on_server(self.settings, "start a new review"):
            submit(path, out)
