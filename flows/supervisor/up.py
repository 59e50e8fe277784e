"""``briefcast up``'s supervisor: ``python -m flows.supervisor.up``, detached from the terminal.

It starts (unless ``PREFECT_API_URL`` names a server of your own) a long-lived Prefect
server with its database in ``[workflow] state_dir``, registers briefcast's deployments on
a process work pool, starts ``[workflow] workers`` process workers and watches the inbox.
Every child dies with the supervisor (``flows.supervisor.server.spawn``): ``briefcast down``
(SIGTERM) stops it and them, and a supervisor killed with SIGKILL leaves nothing running either.
The state file (``up.json``) says where the API is; it is removed on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from briefcast.config import Settings, load_settings
from flows import NO_ANALYTICS, prefect_defaults
from flows.supervisor import prefect_db, prefork, recover
from flows.supervisor.server import (
    API_URL_ENV,
    STATE_FILE,
    ServerError,
    local_api,
    server_command,
    spawn,
    state_dir,
    wait_healthy,
)

SERVER_START_TIMEOUT = 120.0
HEARTBEAT_SECONDS = 30  # Prefect's minimum
MAX_WORKER_RESTARTS = 20  # over the supervisor's life: a worker that cannot start stops it


def worker_env(api_url: str, prefork_address: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[API_URL_ENV] = api_url
    # Flow runs forked from this machine's prefork server (flows/supervisor/prefork.py), by
    # the `python` briefcast is installed in.
    env["PATH"] = prefork.worker_path(env)
    if prefork_address:
        env[prefork.ADDRESS_ENV] = prefork_address
    # Pick up a new run within a second, not the default ten.
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
    env.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "1")
    # Flow runs' heartbeats, for the automation that crashes runs whose worker died.
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    return env


def worker_command(pool: str, name: str, limit: int, queues: Sequence[str] = ()) -> list[str]:
    """A process worker of the pool, taking runs from ``queues`` (all of them when none)."""
    command = [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        pool,
        "--type",
        "process",
        "--name",
        name,
        "--limit",
        str(limit),
    ]
    for queue in queues:
        command += ["--work-queue", queue]
    return command


def register(settings: Settings, working_dir: Path, *, heartbeats: bool = True) -> None:
    """The work pool, the deployments and the fleet-wide limits, made or updated; the
    automations that crash runs on missing heartbeats only when ``heartbeats`` (a database
    that can lose events would crash finished runs: flows/supervisor/prefect_db.py)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists

    from briefcast import channel as registry
    from flows.review import (
        BATCH_DEPLOYMENT,
        REVIEW_DEPLOYMENT,
        SEND_DEPLOYMENT,
        review,
        send,
        send_batch,
    )

    w = settings.workflow
    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=w.work_pool, type="process"))
        for limit in registry.limits(settings):  # every channel's (briefcast.channel.Limit)
            _make_limit(client, limit)
        if heartbeats:
            _crash_zombies(client, settings)
        else:
            for name in (ZOMBIES, UNSTARTED):  # made by an earlier `briefcast up`
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)
        _sends_queue(client, settings)
    variables = {"working_dir": str(working_dir), "command": prefork.command()}
    made: Any
    for made, name, queue in (
        (review, REVIEW_DEPLOYMENT, REVIEWS_QUEUE),
        (send, SEND_DEPLOYMENT, SENDS_QUEUE),
        (send_batch, BATCH_DEPLOYMENT, BATCHES_QUEUE),
    ):
        deployment: Any = made.to_deployment(
            name=name,
            work_pool_name=w.work_pool,
            work_queue_name=queue,
            job_variables=variables,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.apply(work_pool_name=w.work_pool)


def _make_limit(client: Any, limit: Any) -> None:
    """A fleet-wide limit, made; a rate limit (slots that decay) also updated, since
    ``posts_per_minute`` may have changed since. A concurrency limit made by hand with
    other slots is left as it is."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=limit.name, limit=limit.slots, slot_decay_per_second=limit.decay or 0.0
            )
        )
    except ObjectAlreadyExists:
        if limit.decay is not None:
            client.update_global_concurrency_limit(
                limit.name,
                GlobalConcurrencyLimitUpdate(limit=limit.slots, slot_decay_per_second=limit.decay),
            )


# The work pool's queues. Reviews read the inbox and write `out`; sends publish the site
# into `public_dir`: both run where those folders are, on the workers `briefcast up`
# starts (they take every queue). Batches need only the databases (the brief's bytes are
# in its review): `briefcast worker` on another machine takes those alone.
REVIEWS_QUEUE = "reviews"
SENDS_QUEUE = "sends"
BATCHES_QUEUE = "batches"


def _sends_queue(client: Any, settings: Settings) -> None:
    """The work pool's ``sends`` queue, limited to ``[workflow] sends_at_once`` runs.

    A send run holds a worker slot while it waits for its batches, which need slots of
    their own: with as many sends as slots (two briefs approved together, one worker of two
    slots) every slot would wait for a batch that cannot start. Sends beyond the limit wait
    in the queue instead, scheduled, holding nothing. The limit is the server's, so it
    holds for the whole fleet."""
    from prefect.exceptions import ObjectAlreadyExists

    w = settings.workflow
    try:
        client.create_work_queue(
            name=SENDS_QUEUE, work_pool_name=w.work_pool, concurrency_limit=w.sends_at_once
        )
    except ObjectAlreadyExists:  # sends_at_once may have changed since
        queue = client.read_work_queue_by_name(SENDS_QUEUE, work_pool_name=w.work_pool)
        client.update_work_queue(queue.id, concurrency_limit=w.sends_at_once)


ZOMBIES = "briefcast: crash flow runs whose heartbeats stopped"
UNSTARTED = "briefcast: crash flow runs that never started"


def _crash_zombies(client: Any, settings: Settings) -> None:
    """A flow run whose process died with its worker (a lost machine) stays Running for
    ever: nobody is left to report it. Its heartbeats stop, though (workers' runs send one
    every HEARTBEAT_SECONDS), and this automation, Prefect's documented answer, marks it
    Crashed when none came for ``[workflow] zombie_seconds``; the send flow then submits its
    batch again. Suspended runs send none, by design: their suspension counts as an end.

    A run its worker had just taken (Pending, "Submitting") when the worker died never
    starts and never beats: the second automation marks it Crashed when it has not started
    within the same time (a process starts in seconds)."""
    ends = {"Completed", "Failed", "Cancelled", "Crashed", "Suspended", "Paused", "Cancelling"}
    _proactive(
        client,
        settings,
        ZOMBIES,
        after={"heartbeat"},
        expect={"heartbeat", *ends},
        message="no heartbeat: its worker or machine is gone",
    )
    _proactive(
        client,
        settings,
        UNSTARTED,
        after={"Pending", "Submitting"},
        expect={"Running", "Retrying", "heartbeat", "Scheduled", "AwaitingRetry", "Late", *ends},
        message="never started: its worker or machine is gone",
    )


def _proactive(
    client: Any,
    settings: Settings,
    name: str,
    *,
    after: set[str],
    expect: set[str],
    message: str,
) -> None:
    """An automation (made once, by name) marking a flow run Crashed when one of the
    ``after`` events is not followed by one of ``expect`` within ``zombie_seconds``."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if client.read_automations_by_name(name):
        return
    client.create_automation(
        AutomationCore(
            name=name,
            trigger=EventTrigger(
                after={f"prefect.flow-run.{e}" for e in after},
                expect={f"prefect.flow-run.{e}" for e in expect},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=settings.workflow.zombie_seconds),
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=message)],
        )
    )


def _recover(settings: Settings) -> None:
    """Crashed sends scheduled again (or given up), each said on the supervisor's log; a
    server that does not answer now is asked again next time."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            lines = recover.retry_crashed_sends(client, settings)
    except Exception as exc:  # the server restarting, the network: next time
        lines = [f"looking for crashed sends failed: {type(exc).__name__}: {exc}"]
    for line in lines:
        print(f"briefcast up: {line}", file=sys.stderr, flush=True)


def main() -> None:
    prefect_defaults()
    settings = load_settings()
    folder = state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "up.log").open("ab")
    stop = threading.Event()
    children: list[Any] = []
    preforked: Any = None
    database: prefect_db.PrefectDatabase | None = None

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        api_url = os.environ.get(API_URL_ENV)
        own_server = not api_url
        heartbeats = True  # a server of your own: its database is yours to choose
        if not api_url:
            port = settings.workflow.port
            env = {
                **os.environ,
                "PREFECT_HOME": str(folder / "prefect"),
                **NO_ANALYTICS,
                "PREFECT_UI_API_URL": local_api(port),
            }
            named = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL")
            if named:  # yours (a fleet's PostgreSQL, say)
                heartbeats = not named.startswith("sqlite")
                database = prefect_db.PrefectDatabase(
                    url=named,
                    kind="sqlite" if not heartbeats else "postgresql",
                    note="Prefect's database is PREFECT_API_DATABASE_CONNECTION_URL's",
                )
            else:
                database = prefect_db.choose(settings, folder, log)
                heartbeats = not database.loses_events
                if database.url:
                    env["PREFECT_API_DATABASE_CONNECTION_URL"] = database.url
            print(f"briefcast up: {database.note}", file=sys.stderr, flush=True)
            server = spawn(server_command(port), env, log=log)
            children.append(server)
            api_url = local_api(port)
            wait_healthy(server, api_url, SERVER_START_TIMEOUT)
        os.environ[API_URL_ENV] = api_url
        register(settings, Path.cwd(), heartbeats=heartbeats)
        # Crashed sends run again (flows.supervisor.recover); the first look at once: a send that
        # died with an earlier `briefcast up` goes on now.
        next_recovery = 0.0
        host = socket.gethostname()
        address = prefork.new_address()
        preforked = spawn(prefork.server_command(address), os.environ, log=log)
        for i in range(settings.workflow.workers):
            w = settings.workflow
            command = worker_command(w.work_pool, f"{host}-{os.getpid()}-{i}", w.runs_per_worker)
            children.append(spawn(command, worker_env(api_url, address), log=log))
        observer = None
        if settings.workflow.inbox is not None:
            from flows.supervisor.inbox import watch

            observer = watch(settings)
        state = {
            "pid": os.getpid(),
            "api_url": api_url,
            "own_server": own_server,
            "workers": [c.pid for c in children[1 if own_server else 0 :]],
            "prefork": preforked.pid,  # the flow runs' parent (flows/supervisor/prefork.py)
            "started": time.time(),
            "prefect_database": database.note if database else None,
        }
        tmp = folder / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, folder / STATE_FILE)
        print(f"briefcast up: {api_url}", file=sys.stderr, flush=True)
        restarts = 0
        while not stop.wait(1.0):
            if own_server and children[0].poll() is not None:
                print("briefcast up: the Prefect server exited; stopping", file=sys.stderr)
                break
            if database and database.process and database.process.poll() is not None:
                print("briefcast up: Prefect's PostgreSQL exited; stopping", file=sys.stderr)
                break
            if time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + recover.POLL_SECONDS
                _recover(settings)
            if preforked.poll() is not None:  # runs start cold meanwhile (prefork.launch)
                print("briefcast up: the prefork server exited; starting another", flush=True)
                preforked = spawn(prefork.server_command(address), os.environ, log=log)
            for i, child in enumerate(children):
                if (i == 0 and own_server) or child.poll() is None:
                    continue
                # A worker that died (killed, out of memory) is started again: its runs
                # are reported crashed and sent again by the send flow, once each.
                restarts += 1
                if restarts > MAX_WORKER_RESTARTS:
                    print("briefcast up: workers keep dying; stopping", file=sys.stderr)
                    stop.set()
                    break
                print(f"briefcast up: worker {child.pid} exited; starting another", flush=True)
                children[i] = spawn(list(child.args), worker_env(api_url, address), log=log)
        if observer is not None:
            observer.stop()
    except (ServerError, prefect_db.NoPostgres) as exc:
        print(f"briefcast up: {exc}", file=sys.stderr, flush=True)
    finally:
        with_state = folder / STATE_FILE
        try:
            if json.loads(with_state.read_text()).get("pid") == os.getpid():
                with_state.unlink()
        except (OSError, ValueError):
            pass
        if preforked is not None:  # the runs it forked are not its children: they go on
            children.append(preforked)
        for child in reversed(children):  # prefork and workers first, the server last
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 15
        for child in reversed(children):
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                child.kill()
        if database is not None:  # last: the server writes to it until it stops
            database.stop()


if __name__ == "__main__":
    main()
