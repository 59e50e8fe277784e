"""``[workflow]``: the editor's workflow on a Prefect server (``briefcast up``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from briefcast.config.fields import Section, not_blank


class WorkflowSettings(Section):
    """The editor's workflow on a Prefect server (`briefcast up`): inbox, approvals, workers."""

    # A brief saved into this folder is previewed and waits for approval (None: no inbox).
    # A relative path is from the folder `briefcast up` runs in.
    inbox: Annotated[Path, BeforeValidator(not_blank)] | None = None
    out: Annotated[Path, BeforeValidator(not_blank)] = Path("out")  # reviewed briefs' previews
    # `briefcast up`'s own files: pids, logs and, unless PREFECT_API_URL names a server of
    # your own, the Prefect server's SQLite database.
    state_dir: Annotated[Path, BeforeValidator(not_blank)] = Path(".briefcast")
    port: int = Field(4200, ge=1, le=65535)  # the Prefect server `briefcast up` starts
    workers: int = Field(1, ge=0, le=32)  # process workers `briefcast up` starts here
    # Flow runs one worker runs at once, each a process. A send holds one slot while its
    # batches run: keep it >= 2.
    runs_per_worker: int = Field(2, ge=2, le=64)
    # Sends under way at once, fleet-wide (the concurrency limit of the work pool's `sends`
    # queue). A send waits for its batches in a worker slot: were every slot a send's, no
    # batch could run, so there must be more slots than this.
    sends_at_once: int = Field(1, ge=1, le=64)
    work_pool: str = Field("briefcast", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    # Subscribers per email batch: one flow run (own process, any worker) per batch. Prefect
    # costs ~10 ms per task or flow run here: thousands per batch, never one per subscriber.
    send_batch: int = Field(5000, ge=100, le=1_000_000)
    approval_hours: float = Field(72, gt=0, le=24 * 90, allow_inf_nan=False)  # then it expires
    # A flow run with no heartbeat for this long (its worker or machine died) is marked
    # crashed, and its batch sent again; runs beat every 30 s (Prefect's minimum).
    zombie_seconds: int = Field(90, ge=40, le=3600)
    # Prefect's own database, for the server `briefcast up` starts (flows/supervisor/prefect_db.py):
    # "auto" is a PostgreSQL in state_dir when this machine has one installed, else SQLite
    # (which loses events under load: then no run is crashed on missing heartbeats).
    prefect_database: Literal["auto", "postgresql", "sqlite"] = "auto"
    # Fleet-wide limits (Prefect global concurrency limits, shared by every worker): SMTP
    # connections per relay, and posts per minute per social network.
    relay_connections: int = Field(8, ge=1, le=1000)
    posts_per_minute: float = Field(30, gt=0, le=10_000, allow_inf_nan=False)

    @model_validator(mode="after")
    def _room_for_batches(self) -> WorkflowSettings:
        # Workers elsewhere (`briefcast worker`) add slots; the ones started here must
        # already leave one for the batches.
        slots = self.workers * self.runs_per_worker
        if self.workers and slots <= self.sends_at_once:
            raise ValueError(
                f"sends_at_once ({self.sends_at_once}) must be less than workers x "
                f"runs_per_worker ({slots}): sends wait for batches, which need a slot"
            )
        return self
