"""Every channel's live send, one way: its units of work (``send_units``, see
``briefcast.channel``) run as Prefect tasks, or as flow runs that any worker takes, each
through its channel's ledger. The ``publish`` flow (the CLI's ``--send``) and the approved
send (``flows.review``) both send through :func:`send_channel`; neither names a channel.

As listmonk's one manager loop pushes every campaign to whichever messenger: the flow asks
the channel for its units and runs them, and the channel alone knows what a unit is (a
batch of subscribers, an account, the site).

- A unit that is not ``alone`` is a task (``send-unit``) submitted at once beside its
  channel's others, in the flow run's thread pool: e.g. a channel's accounts post side by
  side, each touching only its own rows of the send ledger.
- An ``alone`` unit (a long send in a process of its own, e.g. a batch of subscribers) is,
  on the fleet, a flow run any worker takes (the caller's ``elsewhere``: the approved
  send's ``send-batch`` runs, run again when their worker dies); in the CLI, a task run
  after the other, so that one relay is not asked for every batch's connections at once.

Units share the fleet's limits through :class:`PrefectPacer`: a unit asks to ``hold``
slots of a Prefect global concurrency limit while it sends (the relay's connections), or
to ``tick`` a rate limit before each call (a network's posts per minute). The
limits live on the Prefect server, so every task of every send on every worker shares
them; ``briefcast up`` makes them (``briefcast.channel.limits``). Where a limit does not
exist (the CLI's temporary server, a Prefect of your own without them), nothing waits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.futures import wait

from briefcast import channel as registry
from briefcast import reporting
from briefcast.channel import Outputs, SendUnit
from briefcast.config import Settings
from briefcast.errors import BriefcastError
from flows import worker_pid

LEASE_SECONDS = 60  # the least Prefect takes; expired leases are collected every 15 s
ARTIFACT_KEY_MAX = 100  # the longest artifact key Prefect takes

# Runs the alone units somewhere else (the fleet's flow runs); their summaries stay there.
Elsewhere = Callable[[list[SendUnit]], None]


def rate_limit(name: str, timeout_seconds: float | None = None) -> None:
    """A slot of the rate limit ``name``, waiting at most ``timeout_seconds`` for one; none
    when the limit does not exist.

    Prefect's own ``rate_limit`` counts its API calls in the timeout: on a busy server
    (SQLite under a fleet's writes) a call slower than ``max_wait_seconds`` read as "no slot
    in time", and a post was left for the next run with no limit in its way (seen on the
    test suite's shared server: a send with no limits at all posted nothing). Here only the
    waits the server asks for (423, ``Retry-After``) count; each call is bounded by the
    client's own timeout."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.increment_concurrency_slots(names=[name], slots=1, mode="rate_limit")
                return
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:  # 423 Locked: no slot yet
                    raise
                wait = float(exc.response.headers.get("Retry-After", 1))
            if deadline is not None and time.monotonic() + wait > deadline:
                raise TimeoutError(f"no slot of {name} within {timeout_seconds:g} second(s)")
            time.sleep(wait)


class PrefectPacer:
    """The fleet-wide limits of ``briefcast.channel.Pacer``, on the Prefect server."""

    @contextmanager
    def hold(self, name: str, slots: int) -> Iterator[object]:
        # Leased: a unit killed with its worker holds its slots only until its lease,
        # renewed while it lives, runs out (Prefect's default lease, 300 s, kept a lost
        # machine's slots, and the batches sent again waited for them).
        with concurrency(name, occupy=slots, strict=False, lease_duration=LEASE_SECONDS):
            yield None

    def tick(self, name: str, timeout: float | None = None) -> None:
        rate_limit(name, timeout_seconds=timeout)


def artifact_key(*parts: str) -> str:
    """An artifact key (lower-case letters, digits, dashes) of ``parts``."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:ARTIFACT_KEY_MAX]


def _send(unit: SendUnit, outputs: Outputs, settings: Settings, resend_unknown: bool) -> Any:
    channel: Any = registry.get(unit.channel)
    return channel.send_unit(
        unit, outputs, settings, resend_unknown=resend_unknown, pacer=PrefectPacer()
    )


@task(
    name="send-unit",
    task_run_name="{unit.channel}-{unit.label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def send_unit(unit: SendUnit, outputs: Outputs, settings: Settings, resend_unknown: bool) -> Any:
    """One unit, in this flow run; its summary becomes a table artifact."""
    summary = _send(unit, outputs, settings, resend_unknown)
    if callable(getattr(summary, "rows", None)):
        create_table_artifact(
            key=artifact_key(unit.channel, unit.label, unit.brief_id),
            table=summary.rows(),
            description=summary.line(),
        )
    return summary


def send_alone(unit: SendUnit, outputs: Outputs, settings: Settings) -> Any:
    """One unit in a flow run of its own (called from that flow): a unit that stopped short
    fails the run, so that it is run again (its ledger sends only what is not sent yet)."""
    summary = _send(unit, outputs, settings, False)
    error = getattr(summary, "error", None)
    if error:
        raise BriefcastError(f"{unit.brief_id} {unit.channel} {unit.label}: {error}")
    if callable(getattr(summary, "rows", None)):
        create_table_artifact(
            key=artifact_key("batch", unit.brief_id, unit.channel, unit.label),
            table=summary.rows(),
            # The worker that ran this unit (this process's parent): which machine did what.
            description=f"{summary.line()}\n\nworker pid {worker_pid()}",
        )
    return summary


def send_channel(
    name: str,
    outputs: Outputs,
    settings: Settings,
    *,
    resend_unknown: bool = False,
    elsewhere: Elsewhere | None = None,
) -> Any | None:
    """Send one brief on one channel, unit by unit (called from a flow); returns the
    channel's summary (the flow's value: the CLI prints it), also a table artifact. None
    when some units ran ``elsewhere``: their summaries are their flow runs' artifacts."""
    channel: Any = registry.get(name)
    units: list[SendUnit] = channel.send_units(outputs, settings)
    together = {
        i: send_unit.submit(unit, outputs, settings, resend_unknown)
        for i, unit in enumerate(units)
        if not unit.alone
    }
    alone = [unit for unit in units if unit.alone]
    done: dict[int, Any] = {}
    try:
        if alone and elsewhere is not None:
            elsewhere(alone)
        else:
            done = {
                i: send_unit(unit, outputs, settings, resend_unknown)
                for i, unit in enumerate(units)
                if unit.alone
            }
    finally:
        # Every task ends first: the first that raised (a bug: problems sending are in the
        # summaries) fails the send, the others having done their part.
        wait(list(together.values()))
    done |= {i: future.result() for i, future in together.items()}
    if alone and elsewhere is not None:
        return None
    summary = channel.combine(outputs, settings, [done[i] for i in sorted(done)])
    if callable(getattr(summary, "rows", None)):
        create_table_artifact(
            key=artifact_key("send", name, outputs.brief.id),
            table=summary.rows(),
            description="\n\n".join([summary.line(), *reporting.notes(summary)]),
        )
    return summary
