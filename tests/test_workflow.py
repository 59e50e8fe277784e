"""The editor's workflow on a real Prefect server with real process workers.

``briefcast up`` (a Prefect server on loopback, two process workers, the inbox watcher), a
brief dropped into the inbox, its preview artifact, the approval (refused when the brief
changed after its preview), and the send to 500 subscribers through aiosmtpd in batches
taken by both workers: every subscriber exactly once. Two sends approved together on one
worker (the `sends` queue keeps them from holding every slot); a batch process, a worker and
the worker running the send itself killed mid-send (still one copy each). And no Prefect
server outlives a ``briefcast publish`` killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from delivery_helpers import add_subscribers, cli_env
from pg_server import Server, fresh_database
from smtp_servers import Recorder, free_port, smtp_server

from briefcast import reviews
from briefcast.delivery.prepared import PreparedEdition
from briefcast.store import Store

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin" / "briefcast"
SEEDS = sorted((ROOT / "seeds").glob("*.txt")) + sorted((ROOT / "seeds").glob("*.md"))
# Five batches of 100 over the workers: 2,000 subscribers in eight batches showed nothing more.
SUBSCRIBERS = 500
DEFAULT_UP = {"WORKERS": "2", "SEND_BATCH": "100"}


def briefcast_cmd() -> list[str]:
    found = shutil.which("briefcast", path=str(BIN.parent)) or shutil.which("briefcast")
    assert found, "the briefcast command is not installed"
    return [found]


def run(*args: str | Path, env: dict[str, str], cwd: Path, timeout: float = 240):
    return subprocess.run(
        [*briefcast_cmd(), *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(what: str, check, timeout: float = 180.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _prefect_servers(folder: Path) -> set[int]:
    """pids of the processes serving Prefect's API on this machine whose environment names
    ``folder`` (a test's own): a server a command starts inherits the command's environment,
    so a test tells its commands' servers from those of the tests running beside it."""
    found = set()
    marker = os.fsencode(folder)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            serving = b"prefect.server.api.server:create_app" in (proc / "cmdline").read_bytes()
            if serving and marker in (proc / "environ").read_bytes():
                found.add(int(proc.name))
        except OSError:
            continue
    return found


def test_a_publish_killed_with_sigkill_leaves_no_prefect_server(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    env.pop("PREFECT_API_URL", None)
    assert str(tmp_path) in env["BRIEFCAST_DATABASE__URL"]  # what tells its server
    prefect_servers = partial(_prefect_servers, tmp_path)
    before = prefect_servers()
    proc = subprocess.Popen(
        [*briefcast_cmd(), "publish", str(SEEDS[0]), "--out", str(tmp_path / "out")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = wait_for("the command's Prefect server", lambda: prefect_servers() - before, 60, 0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for("the server to go", lambda: not (prefect_servers() & started), 10, 0.1)
    assert not (prefect_servers() & started)


def _recorded(tmp_path: Path, *, keep_bytes: bool) -> tuple[str, Any, Path, reviews.Review]:
    """Seed 000 copied into ``tmp_path`` and its review recorded, waiting (the brief's bytes
    kept with it, or not, as before migration 0005): the URL, settings, file and review."""
    from briefcast.config import Settings

    url = f"sqlite:///{tmp_path / 'b.db'}"
    settings = Settings(database={"url": url})
    brief = tmp_path / SEEDS[0].name
    shutil.copy(SEEDS[0], brief)
    with Store(url) as store:
        review = reviews.record(
            store,
            flow_run_id="00000000-0000-0000-0000-000000000001",
            brief_id="b",
            path=brief,
            preview=tmp_path,
            digest=reviews.digest(brief, settings),
            brief=brief.read_bytes() if keep_bytes else None,
        )
    return url, settings, brief, review


def test_an_approval_names_the_preview_it_approves(tmp_path: Path) -> None:
    """Without any server: the digest is checked before anything is resumed."""
    from flows.review_actions import approve

    url, settings, brief, waiting = _recorded(tmp_path, keep_bytes=False)
    with pytest.raises(reviews.Changed, match="not the one waiting now"):
        approve("b", settings, digest="0" * 64)
    brief.write_text(brief.read_text() + "\nEdited.\n")
    with pytest.raises(reviews.Changed, match="changed since its preview"):
        approve("b", settings, digest=waiting.digest)
    with pytest.raises(reviews.NotWaiting):
        approve("another", settings)
    assert _review(url, "b").state == "waiting"  # nothing was approved


def test_a_machine_without_the_brief_file_checks_the_kept_bytes_with_its_own_setup(
    tmp_path: Path,
) -> None:
    """A worker elsewhere has no brief file: the bytes kept with the review, with that
    machine's templates and settings, must give the approved digest; where the file is,
    it must be unedited too."""
    from briefcast.config import Settings

    url, settings, brief, review = _recorded(tmp_path, keep_bytes=True)
    data = SEEDS[0].read_bytes()
    assert review.brief == data
    reviews.check(review, settings)  # here, the file as previewed
    brief.write_bytes(data + b"\nEdited after the preview.\n")
    with pytest.raises(reviews.Changed, match="changed since its preview"):
        reviews.check(review, settings)
    brief.unlink()  # elsewhere: no file, the kept bytes
    reviews.check(review, settings)
    elsewhere = Settings(database={"url": url}, site={"name": "Another desk"})
    with pytest.raises(reviews.Changed, match="differ here from where it was previewed"):
        reviews.check(review, elsewhere)
    with Store(url) as store:
        earlier = reviews.record(  # a review kept no bytes before 0005: the file or nothing
            store,
            flow_run_id="00000000-0000-0000-0000-000000000003",
            brief_id="c",
            path=brief,
            preview=tmp_path,
            digest=review.digest,
        )
    with pytest.raises(reviews.Changed, match="cannot be read"):
        reviews.check(earlier, settings)


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[Recorder, int]]:
    """The SMTP server (aiosmtpd) of the module's `briefcast up` fleets: a fleet keeps the
    port it was started with, so its tests share the server (see ``smtp``)."""
    recorder = Recorder()
    with smtp_server(recorder) as port:
        yield recorder, port


@pytest.fixture
def smtp(relay: tuple[Recorder, int]) -> tuple[Recorder, int]:
    """The module's SMTP server, with what it received and the faults set before forgotten:
    a test counts only what it sent (each waits for its sends to end)."""
    relay[0].reset()
    return relay


class Fleets:
    """The `briefcast up` fleets of one test module. Tests of one setting, one after the
    other, share one fleet: each test reviews and sends briefs of its own and leaves none
    waiting or under way. It is stopped when a test needs another (one fleet at a time:
    an idle one still costs CPU) and at the module's end, so the tests of one setting stand
    together in this file (a pytest-xdist worker runs its tests in the file's order). A
    test marked ``own_up`` (it stops its fleet) gets one of its own, stopped after it."""

    def __init__(self, folders: pytest.TempPathFactory, postgres: Server, smtp_port: int) -> None:
        self.folders, self.postgres, self.smtp_port = folders, postgres, smtp_port
        self.running: tuple[tuple[tuple[str, str], ...], dict] | None = None
        self.stack = ExitStack()

    def shared(self, setting: dict[str, str]) -> dict:
        key = tuple(sorted(setting.items()))
        if self.running is None or self.running[0] != key:
            self.stop()
            self.running = key, self.stack.enter_context(self.started(setting))
        return self.running[1]

    def stop(self) -> None:
        """Stops the shared fleet, if one runs (its teardown's checks fail the test here)."""
        self.running = None
        self.stack.close()

    @contextmanager
    def started(self, setting: dict[str, str]) -> Iterator[dict]:
        """`briefcast up` with the ``[workflow]`` settings given (and SUBSCRIBERS, the number
        of subscribers). Prefect's server keeps its data in PostgreSQL, as a fleet's would
        (docs/operations.md): on SQLite, under this load, it drops events ("database is
        locked"), among them the heartbeats the zombie automation watches."""
        workflow = dict(setting)
        subscribers = int(workflow.pop("SUBSCRIBERS", SUBSCRIBERS))
        folder = self.folders.mktemp("up")
        with fresh_database(self.postgres) as prefect_db:
            env = cli_env(
                folder,
                self.smtp_port,
                BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET="workflow-test-secret-0123456789",
                BRIEFCAST_SITE__PUBLIC_DIR=str(folder / "public"),
                BRIEFCAST_WORKFLOW__STATE_DIR=str(folder / "state"),
                BRIEFCAST_WORKFLOW__INBOX=str(folder / "inbox"),
                BRIEFCAST_WORKFLOW__OUT=str(folder / "out"),
                BRIEFCAST_WORKFLOW__PORT=str(free_port()),
                BRIEFCAST_WORKFLOW__ZOMBIE_SECONDS="40",
                PREFECT_HOME=str(folder / "prefect-home"),
                PREFECT_API_DATABASE_CONNECTION_URL=prefect_db.replace("+psycopg", "+asyncpg"),
                PREFECT_LOGGING_LEVEL=os.environ.get("TEST_PREFECT_LOGGING_LEVEL", "CRITICAL"),
            )
            env |= {f"BRIEFCAST_WORKFLOW__{key}": value for key, value in workflow.items()}
            env.pop("PREFECT_API_URL", None)
            with Store(env["BRIEFCAST_DATABASE__URL"]) as store:
                add_subscribers(store, subscribers)
            started = run("up", env=env, cwd=folder)
            assert started.returncode == 0, started.stderr + started.stdout
            state = json.loads((folder / "state" / "up.json").read_text())
            try:
                yield {
                    "env": env,
                    "state": state,
                    "cwd": folder,
                    "said": started.stdout,
                    "subscribers": subscribers,
                }
            finally:
                try:
                    # `down` waits 30 s for the supervisor before it kills it. After a kill
                    # test the supervisor can be in a recovery round that long, and on CI's
                    # loaded machine a `down` was seen alive for 59 s: 60 s was too tight a
                    # guard against a hang (what is asserted below is unchanged).
                    stopped = run("down", env=env, cwd=folder, timeout=120)
                    assert stopped.returncode == 0, stopped.stderr
                    assert not (folder / "state" / "up.json").exists()
                    assert state["pid"] not in {
                        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    }
                except BaseException:
                    # Failed: still no fleet left running on a database about to be dropped
                    # (its children die with the supervisor).
                    with suppress(ProcessLookupError):
                        os.kill(state["pid"], signal.SIGKILL)
                    raise


@pytest.fixture(scope="module")
def fleets(
    tmp_path_factory: pytest.TempPathFactory, postgres: Server, relay: tuple[Recorder, int]
) -> Iterator[Fleets]:
    fleets = Fleets(tmp_path_factory, postgres, relay[1])
    try:
        yield fleets
    finally:
        fleets.stop()


@pytest.fixture
def up(
    request: pytest.FixtureRequest, fleets: Fleets, smtp: tuple[Recorder, int]
) -> Iterator[dict]:
    """A running `briefcast up`: two workers, or the settings given as the fixture's
    parameter; shared with the module's other tests of that setting unless marked
    ``own_up``."""
    setting = DEFAULT_UP | getattr(request, "param", {})
    if request.node.get_closest_marker("own_up"):
        fleets.stop()
        with fleets.started(setting) as fleet:
            yield fleet
    else:
        yield fleets.shared(setting)


def wait_sent(up: dict, brief_id: str, timeout: float = 300) -> None:
    """Until the brief's review says sent; a review that failed fails at once, and either
    way the flow runs' states and the supervisor's log are in the message."""
    url = up["env"]["BRIEFCAST_DATABASE__URL"]

    def sent() -> bool:
        failed = _review(url, brief_id, "failed")
        assert failed is None, f"{brief_id}: {failed.detail}\n{_diagnosis(up)}"
        return _review(url, brief_id, "sent") is not None

    try:
        wait_for(f"{brief_id} sent", sent, timeout=timeout, every=1)
    except AssertionError as exc:
        if "timed out" in str(exc):
            raise AssertionError(f"{exc}\n{_diagnosis(up)}") from None
        raise


def _diagnosis(up: dict) -> str:
    runs = httpx.post(f"{up['state']['api_url']}/flow_runs/filter", json={"limit": 60}).json()
    lines = [
        f"{r['name']} queue={r['work_queue_name']} {r['state']['name']}: {r['state']['message']}"
        for r in runs
    ]
    log = (up["cwd"] / "state" / "up.log").read_text(errors="replace")[-3000:]
    return "\n".join(["flow runs:", *lines, "up.log:", log])


def _review(url: str, brief_id: str | None = None, state: str = "waiting"):
    with Store(url) as store:
        rows = reviews.listed(store, (state,))
    return next((r for r in rows if brief_id is None or r.brief_id == brief_id), None)


@pytest.mark.xdist_group("up-two-workers")
def test_inbox_preview_approve_and_send_to_every_subscriber_once_on_two_workers(
    up: dict, smtp: tuple[Recorder, int]
) -> None:
    recorder, _port = smtp
    env, cwd, state = up["env"], up["cwd"], up["state"]
    url = env["BRIEFCAST_DATABASE__URL"]
    api = state["api_url"]

    # 1. A brief saved into the inbox (written aside, then renamed in, as editors do).
    inbox = cwd / "inbox"
    draft = cwd / ".draft.txt"
    shutil.copy(SEEDS[0], draft)
    os.replace(draft, inbox / SEEDS[0].name)
    waiting = wait_for("the review to wait", lambda: _review(url))
    assert (Path(waiting.preview) / "index.html").is_file()
    artifacts = httpx.post(f"{api}/artifacts/filter", json={"limit": 200}).json()
    keys = {a["key"] for a in artifacts}
    assert f"preview-{waiting.brief_id}"[:100] in keys
    assert f"approve-{waiting.brief_id}"[:100] in keys

    # 2. Another brief previewed, then edited: its approval is refused in one line.
    other = cwd / "drafts" / SEEDS[1].name
    other.parent.mkdir()
    shutil.copy(SEEDS[1], other)
    submitted = run("review", other, env=env, cwd=cwd)
    assert submitted.returncode == 0, submitted.stderr
    second = wait_for(
        "the second review", lambda: _review(url, submitted.stdout.split(":")[0].strip())
    )
    other.write_text(other.read_text() + "\nOne more sentence, added after the preview.\n")
    refused = run("approve", second.brief_id, env=env, cwd=cwd)
    assert refused.returncode == 2
    assert "changed since its preview" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    # The brief as it was previewed again: now it can be approved, here for tomorrow morning
    # (a scheduled flow run, listed and cancellable).
    other.write_text(SEEDS[1].read_text())
    tomorrow = (datetime.now(ZoneInfo("Europe/Rome")) + timedelta(days=1)).strftime(
        "%Y-%m-%d 07:00"
    )
    later = run("approve", second.brief_id, "--at", tomorrow, env=env, cwd=cwd)
    assert later.returncode == 0, later.stderr
    assert "scheduled for" in later.stdout
    # The review is marked scheduled first, then its send run is made and recorded.
    scheduled = wait_for(
        "the schedule",
        lambda: (r := _review(url, second.brief_id, "scheduled")) and r.send_flow_run_id and r,
    )
    send_run = httpx.get(f"{api}/flow_runs/{scheduled.send_flow_run_id}").json()
    assert send_run["state"]["type"] == "SCHEDULED"
    assert send_run["expected_start_time"].startswith(
        (datetime.fromisoformat(tomorrow).replace(tzinfo=ZoneInfo("Europe/Rome")))
        .astimezone(UTC)
        .strftime("%Y-%m-%dT%H:%M")
    )
    listed = run("scheduled", env=env, cwd=cwd)
    assert second.brief_id in listed.stdout and tomorrow in listed.stdout, listed.stdout
    cancelled = run("scheduled", "--cancel", second.brief_id, env=env, cwd=cwd)
    assert cancelled.returncode == 0, cancelled.stderr
    send_run = httpx.get(f"{api}/flow_runs/{scheduled.send_flow_run_id}").json()
    assert send_run["state"]["type"] == "CANCELLED"
    assert "Nothing is scheduled" in run("scheduled", env=env, cwd=cwd).stderr

    # 3. The first one approved: sent to all 500, once each, by both workers. Its file is
    # gone once approved, as on a worker of another machine: the send builds the bytes kept
    # with the review, and each subscriber gets the previewed message byte for byte, but for
    # the envelope (To, the unsubscribe token, and the Date: when the send began).
    approved = run("approve", waiting.brief_id, env=env, cwd=cwd)
    assert approved.returncode == 0, approved.stderr
    assert "sending now" in approved.stdout
    (inbox / SEEDS[0].name).unlink()
    wait_sent(up, waiting.brief_id)
    counts = recorder.count()
    assert len(counts) == SUBSCRIBERS
    assert set(counts.values()) == {1}
    previewed = {
        eml.stem: PreparedEdition(eml.stem, eml.read_bytes())
        for eml in (Path(waiting.preview) / "email").glob("*.eml")
    }
    assert set(previewed) == {"en", "it", "both"}
    for got in recorder.messages():
        # The edition from the Message-ID; the token from the unsubscribe link (the
        # Message-ID's per-recipient part is opaque since issue 16).
        message_id = re.search(rb"(?m)^Message-ID: <[^.]+\.(\w+)\.", got.data)
        link = re.search(r"/u/([^>]+)>", got.message["List-Unsubscribe"])
        assert message_id is not None and link is not None
        edition, token = message_id[1].decode(), link[1]
        sent_at = parsedate_to_datetime(got.message["Date"])
        assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 600
        assert got.data == previewed[edition].dated(sent_at).render(got.rcpt_to, token)
    artifacts = httpx.post(f"{api}/artifacts/filter", json={"limit": 200}).json()
    workers = {
        a["description"].rpartition("worker pid ")[2].strip()
        for a in artifacts
        if (a["key"] or "").startswith("batch-")
    }
    assert workers == {str(pid) for pid in state["workers"]}, workers


def _flow_run_pids() -> dict[str, int]:
    """Flow-run processes on this machine: flow run id -> pid. The process its worker
    started (the run's launcher: flows/supervisor/prefork.py), not the run's own children
    (a batch's sending process inherits the run's environment)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            parent = Path(f"/proc/{_parent(int(proc.name))}/cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if b"\0worker\0start\0" not in parent:  # not started by a Prefect worker
            continue
        for item in environ:
            if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                found[item.partition(b"=")[2].decode()] = int(proc.name)
    return found


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def _children(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _safe_parent(int(p.name)) == pid
    ]


def _prefect_workers(pid: int) -> list[int]:
    """The Prefect workers among a process's children (`briefcast worker` also starts a
    prefork server beside its worker: flows/supervisor/prefork.py)."""
    found = []
    for child in _children(pid):
        with contextlib.suppress(OSError):
            if b"\0worker\0start\0" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def _safe_parent(pid: int) -> int | None:
    try:
        return _parent(pid)
    except (OSError, IndexError, ValueError):
        return None


# On the fleet of the test above, one kill after the other: a fleet goes on after a lost run
# or worker (`briefcast up` starts a killed worker again), as a user's would. A fleet each
# cost ~15 s of a core to start and stop, and ran no more than this.
@pytest.mark.xdist_group("up-two-workers")
@pytest.mark.parametrize("killed", ["batch-process", "worker", "send-worker"])
def test_a_batch_killed_mid_send_is_run_again_without_a_second_copy(
    up: dict, smtp: tuple[Recorder, int], killed: str
) -> None:
    """The batch's process killed (an OOM kill): its worker reports it crashed. Its whole
    worker killed with every process it runs (a lost machine): nobody reports anything, its
    heartbeats stop, the zombie automation marks it crashed. Either way the send flow sends
    the batch again and nobody gets a second copy. The worker running the send flow itself
    killed: the send run is marked crashed the same way, `briefcast up` runs it again, and
    that run finishes the send, again without a second copy. Each case sends a brief of its
    own (500 subscribers, five batches of 100)."""
    recorder, _port = smtp
    # A batch of 100 lasts ~3 s over the pool's three connections: slow enough to be caught
    # mid-batch on a loaded machine (250 a batch at 0.02 s, 2,000 subscribers, took 4x the
    # sending's CPU for a batch of the same length).
    recorder.faults.delay = 0.08
    env, cwd, state = up["env"], up["cwd"], up["state"]
    url, api = env["BRIEFCAST_DATABASE__URL"], state["api_url"]
    brief = cwd / "drafts" / f"killed-{killed}.md"
    brief.parent.mkdir(exist_ok=True)
    brief.write_text(
        _bilingual_brief(f"Killed {killed}", f"Ucciso {killed}", killed.upper(), f"killed-{killed}")
    )
    submitted = run("review", brief, env=env, cwd=cwd)
    assert submitted.returncode == 0, submitted.stderr
    waiting = wait_for("the review", lambda: _review(url, f"killed-{killed}"))
    assert run("approve", waiting.brief_id, env=env, cwd=cwd).returncode == 0

    def running() -> dict[str, tuple[str, int]]:
        runs = httpx.post(
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}, "limit": 50},
        ).json()
        pids = _flow_run_pids()
        return {
            r["id"]: (httpx.get(f"{api}/flows/{r['flow_id']}").json()["name"], pids[r["id"]])
            for r in runs
            if r["id"] in pids
        }

    def running_batch() -> tuple[str, int] | None:
        if len(recorder.received) < 50:
            return None
        now = running()
        senders = {_safe_parent(pid) for name, pid in now.values() if name == "send"}
        for run_id, (name, pid) in now.items():
            if killed == "send-worker":
                if name == "send":
                    return run_id, pid
            # A batch not on the send's worker (that is the send-worker case).
            elif name == "send-batch" and (killed != "worker" or _safe_parent(pid) not in senders):
                return run_id, pid
        return None

    run_id, pid = wait_for("a batch under way", running_batch, timeout=120, every=0.1)
    doomed = [pid]
    if killed in ("worker", "send-worker"):
        worker = _parent(pid)
        assert _parent(worker) == state["pid"]  # one of up's workers (maybe started again)
        doomed = [worker, *_children(worker)]
    for victim in doomed:
        os.kill(victim, signal.SIGKILL)
    wait_sent(up, waiting.brief_id, timeout=400)
    counts = recorder.count()
    assert set(counts.values()) == {1}, "somebody got two copies"
    with Store(url) as store:
        from briefcast.delivery import ledger

        ledger_counts = ledger.counts(store, waiting.brief_id)
    unknown = ledger_counts.get("unknown", 0)
    assert ledger_counts.get("sent", 0) + unknown == up["subscribers"], ledger_counts
    assert len(counts) >= up["subscribers"] - unknown
    # At most one message per connection of each batch that was killed.
    assert unknown <= int(env["BRIEFCAST_DELIVERY__POOL_SIZE"]) * len(doomed)
    states = httpx.get(f"{api}/flow_run_states/", params={"flow_run_id": run_id}).json()
    crashed = [s for s in states if s["type"] == "CRASHED"]
    assert len(crashed) == 1, states
    if killed != "batch-process":
        assert "no heartbeat" in crashed[0]["message"]
    final = httpx.get(f"{api}/flow_runs/{run_id}").json()
    if killed == "send-worker":  # the same send run, run again, finished the send
        assert final["state"]["type"] == "COMPLETED" and final["run_count"] == 2, final
        log = (cwd / "state" / "up.log").read_text()
        assert f"send run {run_id} crashed (no heartbeat" in log and "run again (2)" in log
    else:  # the send submitted another batch run instead
        assert final["state"]["type"] == "CRASHED"


@pytest.mark.xdist_group("up-one-worker")  # one fleet for the five
@pytest.mark.parametrize("up", [{"WORKERS": "1"}], indirect=True)
def test_briefs_approved_together_on_one_worker_are_each_sent_once(
    up: dict, smtp: tuple[Recorder, int]
) -> None:
    """One worker of two slots, two sends approved together. Each send waits for its
    batches in a slot: both sends at once would hold both slots and no batch could start.
    The `sends` queue runs one at a time; the other waits, holding nothing.

    Meanwhile a batch run is left as a worker leaves one it had just taken when it died
    (Pending, "Submitting"): it never starts, and is marked Crashed."""
    recorder, _port = smtp
    env, cwd, api = up["env"], up["cwd"], up["state"]["api_url"]
    url = env["BRIEFCAST_DATABASE__URL"]
    batches = httpx.get(f"{api}/deployments/name/send-batch/briefcast-send-batch").json()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    lost = httpx.post(  # scheduled for tomorrow: no worker takes it meanwhile
        f"{api}/deployments/{batches['id']}/create_flow_run",
        json={
            "parameters": {
                "review_id": "lost",
                "unit": {"channel": "email", "brief_id": "lost", "label": "subscribers 1-1"},
            },
            "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": tomorrow}},
        },
    ).json()
    taken = httpx.post(
        f"{api}/flow_runs/{lost['id']}/set_state",
        json={"state": {"type": "PENDING", "name": "Submitting"}, "force": True},
    )
    assert taken.json()["status"] == "ACCEPT", taken.text
    drafts = cwd / "drafts"
    drafts.mkdir(exist_ok=True)
    ids = []
    for n in (1, 2):  # ids of their own: the fleet's other tests send the seeds
        brief = drafts / f"together-{n}.md"
        brief.write_text(
            _bilingual_brief(f"Together {n}", f"Insieme {n}", f"TOGETHER-{n}", f"together-{n}")
        )
        submitted = run("review", brief, env=env, cwd=cwd)
        assert submitted.returncode == 0, submitted.stderr
        ids.append(submitted.stdout.split(":")[0].strip())
    for brief_id in ids:
        wait_for(f"the review of {brief_id}", lambda b=brief_id: _review(url, b))
    for brief_id in ids:
        approved = run("approve", brief_id, env=env, cwd=cwd)
        assert approved.returncode == 0, approved.stderr
    for brief_id in ids:
        wait_sent(up, brief_id)

    got = Counter(
        (m.rcpt_to, re.search(rb"^Message-ID: <([^.]+)\.", m.data, re.M).group(1).decode())
        for m in recorder.messages()
    )
    assert len(got) == 2 * SUBSCRIBERS and set(got.values()) == {1}
    assert {brief for _, brief in got} == set(ids)
    queues = httpx.post(f"{api}/work_pools/briefcast/queues/filter", json={}).json()
    assert {q["name"]: q["concurrency_limit"] for q in queues}["sends"] == 1

    state = wait_for(  # zombie_seconds (40) after it was taken, and the triggers' next look
        "the run that never started to be marked crashed",
        lambda: (
            (s := httpx.get(f"{api}/flow_runs/{lost['id']}").json()["state"])["type"] == "CRASHED"
            and s
        ),
        timeout=120,
    )
    assert state["message"] == "never started: its worker or machine is gone"


# --- The editor's pages of `briefcast serve` approving on up's server ----------------------

EDITOR, EDITOR_PASSWORD = "ada@example.org", "correct horse battery staple"
_editors_added: set[str] = set()  # the stores (database URLs) with the editor's account


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in _children(todo.pop()):
            found.add(child)
            todo.append(child)
    return found


@contextmanager
def _serving(env: dict[str, str], cwd: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`briefcast serve` in a child process, with an editor's account, until the block ends;
    yields its URL and process. The block's end stops it (SIGTERM) and waits for it."""
    database = env["BRIEFCAST_DATABASE__URL"]
    if database not in _editors_added:  # once per store: a shared fleet's is used again
        added = run(
            "editors",
            "add",
            EDITOR,
            env=env | {"BRIEFCAST_EDITOR_PASSWORD": EDITOR_PASSWORD},
            cwd=cwd,
        )
        assert added.returncode == 0, added.stderr
        _editors_added.add(database)
    port = free_port()
    proc = subprocess.Popen(
        [*briefcast_cmd(), "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, "briefcast serve exited"
        try:
            return httpx.get(f"{url}/editor/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("briefcast serve", answers, timeout=60, every=0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _log_in(client: httpx.Client) -> None:
    login = client.get("/editor/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf, login
    logged = client.post(
        "/editor/login",
        data={"csrf": csrf[1], "name": EDITOR, "password": EDITOR_PASSWORD},
    )
    assert logged.status_code == 303 and logged.headers["location"] == "/editor/"


def _said(client: httpx.Client, done: httpx.Response) -> str:
    """The line the list page shows after an approval (Post/Redirect/Get)."""
    assert done.status_code == 303 and done.headers["location"] == "/editor/"
    said = re.search(
        r'<p class="flash (ok|error)" role="\w+">([^<]*)</p>', client.get("/editor/").text
    )
    assert said, "no line after the approval"
    return f"{said[1]}: {said[2]}"


def _approve_from_the_preview(url: str, brief_id: str) -> tuple[str, str, str]:
    """Log in, open ``brief_id``'s preview as the list links it and approve it with the
    form that page carries: the page, its English edition, and the line the list says."""
    with httpx.Client(base_url=url, timeout=60) as client:
        _log_in(client)
        link = re.search(
            rf'<a href="(/editor/preview/{re.escape(brief_id)}/[0-9a-f]{{64}}/)index.html">',
            client.get("/editor/").text,
        )
        assert link, "no link to the preview"
        page = client.get(f"{link[1]}index.html").text
        edition = client.get(f"{link[1]}email/en.html").text
        form = re.search(
            r'<form class="approve" method="post" action="/editor/approve">\s*'
            r'<input type="hidden" name="csrf" value="([^"]+)">\s*'
            rf'<input type="hidden" name="brief_id" value="{re.escape(brief_id)}">\s*'
            r'<input type="hidden" name="digest" value="([0-9a-f]{64})">',
            page,
        )
        assert form, page
        done = client.post(
            "/editor/approve",
            data={"csrf": form[1], "brief_id": brief_id, "digest": form[2], "send_at": ""},
        )
        return page, edition, _said(client, done)


def _bilingual_brief(en: str, it: str, marker: str, brief_id: str = "one-id-two-files") -> str:
    """A bilingual brief (every subscriber reads it) with the id ``brief_id``."""
    return (
        f"---\nid: {brief_id}\ntitle:\n  en: {en}\n  it: {it}\n"
        f"date: 2026-01-07 18:23\n---\n[en]\n{marker}: what the editor saw in English.\n\n"
        f"[it]\n{marker}: ciò che l'editore ha visto in italiano.\n"
    )


def _approve_on_the_page(url: str, brief_id: str) -> str:
    """Log in, approve ``brief_id`` with the form the list page shows; the line it says."""
    with httpx.Client(base_url=url, timeout=60) as client:
        _log_in(client)
        page = client.get("/editor/").text
        form = re.search(
            r'<form method="post" action="/editor/approve">\s*'
            r'<input type="hidden" name="csrf" value="([^"]+)">\s*'
            rf'<input type="hidden" name="brief_id" value="{re.escape(brief_id)}">\s*'
            r'<input type="hidden" name="digest" value="([0-9a-f]{64})">',
            page,
        )
        assert form, page
        done = client.post(
            "/editor/approve",
            data={"csrf": form[1], "brief_id": brief_id, "digest": form[2], "send_at": ""},
        )
        return _said(client, done)


@pytest.mark.xdist_group("up-one-worker")  # one fleet for the five
@pytest.mark.parametrize("up", [{"WORKERS": "1"}], indirect=True)
def test_the_editors_page_approves_on_the_server_of_briefcast_up(
    up: dict, smtp: tuple[Recorder, int]
) -> None:
    """`serve` finds up's server as the CLI does (its state file: the environment names no
    server) and starts no Prefect server of its own, none left behind when it stops.

    The preview the editor opens is the one whose digest they approve: another file with
    the same id dry-run after the review (out/<id>/ is then that file's) changes neither the
    review's preview page nor what is sent."""
    recorder, _port = smtp
    env, cwd = up["env"], up["cwd"]
    url = env["BRIEFCAST_DATABASE__URL"]
    assert "PREFECT_API_URL" not in env
    brief = cwd / "drafts" / "reviewed.md"
    brief.parent.mkdir(exist_ok=True)
    brief.write_text(_bilingual_brief("The reviewed brief", "Il brief rivisto", "ALPHA-REVIEWED"))
    submitted = run("review", brief, env=env, cwd=cwd)
    assert submitted.returncode == 0, submitted.stderr
    brief_id = submitted.stdout.split(":")[0].strip()
    assert brief_id == "one-id-two-files", submitted.stdout
    waiting = wait_for(f"the review of {brief_id}", lambda: _review(url, brief_id))
    later = cwd / "drafts" / "later.md"
    later.write_text(_bilingual_brief("Another file, same id", "Un altro file", "BRAVO-LATER"))
    dry = run("publish", later, "--out", cwd / "out", env=env, cwd=cwd)
    assert dry.returncode == 0, dry.stderr
    assert "BRAVO-LATER" in (cwd / "out" / brief_id / "email" / "en.html").read_text()
    prefect_servers = partial(_prefect_servers, cwd)  # the fleet's folder, in its env
    before = prefect_servers()
    assert before, "the fleet's own server is not told by its folder"
    with _serving(env, cwd) as (site, proc):
        page, edition, said = _approve_from_the_preview(site, brief_id)
        assert "The reviewed brief" in page and "Another file" not in page
        assert "ALPHA-REVIEWED" in edition and "BRAVO-LATER" not in edition
        assert f'<code class="digest">{waiting.digest}</code>' in page
        assert f"digest <code>{waiting.digest[:12]}</code>" in page  # by the button
        assert said == f"ok: Approved {brief_id}: it is being sent now.", said
        wait_sent(up, brief_id)
        assert not (prefect_servers() & _descendants(proc.pid))
    counts = recorder.count()
    assert len(counts) == SUBSCRIBERS and set(counts.values()) == {1}
    subjects = {
        str(make_header(decode_header(got.message["Subject"]))) for got in recorder.messages()
    }
    assert subjects == {
        "The reviewed brief",
        "Il brief rivisto",
        "The reviewed brief / Il brief rivisto",
    }, subjects
    time.sleep(1)  # a server serve had started would now be re-parented, still running
    assert prefect_servers() - before == set()


def test_without_briefcast_up_the_editors_page_refuses_the_approval_in_one_line(
    tmp_path: Path,
) -> None:
    env = cli_env(
        tmp_path,
        BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET="workflow-test-secret-0123456789",
        BRIEFCAST_WORKFLOW__STATE_DIR=str(tmp_path / "state"),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
    )
    env.pop("PREFECT_API_URL", None)
    url, _settings, _brief, waiting = _recorded(tmp_path, keep_bytes=True)
    assert url == env["BRIEFCAST_DATABASE__URL"]
    prefect_servers = partial(_prefect_servers, tmp_path)
    before = prefect_servers()
    with _serving(env, tmp_path) as (site, proc):
        said = _approve_on_the_page(site, waiting.brief_id)
        assert said == (
            "error: no Prefect server: start `briefcast up` (or set PREFECT_API_URL)"
        ), said
        assert not _descendants(proc.pid)  # nothing spawned, Prefect's server or other
        assert prefect_servers() - before == set()
    assert _review(url, waiting.brief_id).state == "waiting"  # nothing was approved
    assert prefect_servers() - before == set()


@pytest.mark.xdist_group("up-one-worker")  # one fleet for the five
@pytest.mark.parametrize("up", [{"WORKERS": "1"}], indirect=True)
def test_a_brief_that_cannot_be_read_shows_as_failed_with_its_reason(up: dict) -> None:
    """Dropped into the inbox, a brief with a typo in its front matter fails its review: it
    is listed failed, by its file name and with the reason in one line, by `briefcast
    reviews` and on the editor's page, not only in the Prefect UI."""
    env, cwd = up["env"], up["cwd"]
    inbox = cwd / "inbox"
    assert f"inbox: {inbox} (" in up["said"], up["said"]  # made by `up`, and said
    assert inbox.is_dir()
    draft = cwd / ".draft.md"
    draft.write_text("---\ntitle: A brief\nautor: Ada\n---\nSome text to read.\n")
    os.replace(draft, inbox / "broken.md")
    url = env["BRIEFCAST_DATABASE__URL"]
    failed = wait_for("the failed review", lambda: _review(url, "broken.md", "failed"), 120)
    assert "autor" in failed.detail and "\n" not in failed.detail, failed.detail
    assert failed.path == str(inbox / "broken.md")
    listed = run("reviews", env=env | {"COLUMNS": "400"}, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    # One line for it (the fleet's other tests list their own reviews beside it).
    [line] = [ln for ln in listed.stdout.splitlines() if "broken.md" in ln]
    assert "  failed  " in line and "  broken.md  (not read)" in line, line
    assert line.endswith(f"  - {failed.detail}"), line
    with _serving(env, cwd) as (site, _proc), httpx.Client(base_url=site, timeout=30) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/editor/login").text)
        assert csrf
        client.post(
            "/editor/login", data={"csrf": csrf[1], "name": EDITOR, "password": EDITOR_PASSWORD}
        )
        page = client.get("/editor/").text
    section = re.search(r'<section class="review state-failed".*?</section>', page, re.S)
    assert section, page
    assert "<h3" in section[0] and ">broken.md</h3>" in section[0], section[0]
    assert f"<dt>Reason</dt><dd>{failed.detail}</dd>" in html.unescape(section[0])
    assert "/editor/preview/" not in section[0]  # nothing was previewed


class _EditorPage:
    """A logged-in editor on `briefcast serve`, posting the list page's forms."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        login = client.get("/editor/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', login)
        assert csrf, login
        logged = client.post(
            "/editor/login", data={"csrf": csrf[1], "name": EDITOR, "password": EDITOR_PASSWORD}
        )
        assert logged.status_code == 303, logged.text

    def post(self, action: str, brief_id: str, **data: str) -> str:
        """The action's form for ``brief_id``, posted; the line the page then says."""
        page = self.client.get("/editor/?refresh=off").text
        form = re.search(
            rf'<form method="post" action="/editor/{action}">\s*'
            r'<input type="hidden" name="csrf" value="([^"]+)">\s*'
            rf'<input type="hidden" name="brief_id" value="{re.escape(brief_id)}">\s*'
            r'(?:<input type="hidden" name="digest" value="([0-9a-f]{64})">)?',
            page,
        )
        assert form, page
        fields = {"csrf": form[1], "brief_id": brief_id, **data}
        if form[2]:
            fields["digest"] = form[2]
        done = self.client.post(f"/editor/{action}", data=fields)
        assert done.status_code == 303 and done.headers["location"] == "/editor/", done.text
        said = re.search(
            r'<p class="flash (ok|error)" role="\w+">([^<]*)</p>', self.client.get("/editor/").text
        )
        assert said, f"no line after {action}"
        return f"{said[1]}: {said[2]}"


def _flow_run(up: dict, flow_run_id: str) -> dict[str, Any]:
    found = httpx.get(f"{up['state']['api_url']}/flow_runs/{flow_run_id}", timeout=10)
    assert found.status_code == 200, found.text
    return found.json()


@pytest.mark.xdist_group("up-one-worker")  # one fleet for the five
@pytest.mark.parametrize("up", [{"WORKERS": "1"}], indirect=True)
def test_the_editors_page_reschedules_cancels_and_discards_on_the_server_of_briefcast_up(
    up: dict, smtp: tuple[Recorder, int]
) -> None:
    """A send scheduled from the page is moved (the same Prefect run, a new time), then
    cancelled: its run is cancelled and the brief waits for approval again, under a new
    review run; that one, discarded, is cancelled in Prefect and leaves the list. Nothing
    is mailed."""
    recorder, _port = smtp
    env, cwd = up["env"], up["cwd"]
    url = env["BRIEFCAST_DATABASE__URL"]
    brief = cwd / "drafts" / SEEDS[1].name
    brief.parent.mkdir(exist_ok=True)
    shutil.copy(SEEDS[1], brief)
    submitted = run("review", brief, env=env, cwd=cwd)
    assert submitted.returncode == 0, submitted.stderr
    brief_id = submitted.stdout.split(":")[0].strip()
    wait_for(f"the review of {brief_id}", lambda: _review(url, brief_id))
    with _serving(env, cwd) as (site, _proc), httpx.Client(base_url=site, timeout=60) as client:
        editor = _EditorPage(client)
        page = client.get("/editor/?refresh=off").text
        zone = re.search(r"\(optional; ([\w/+-]+) time", page)
        assert zone, page
        tz = ZoneInfo(zone[1])
        tomorrow = (datetime.now(tz) + timedelta(days=1)).replace(second=0, microsecond=0)
        said = editor.post("approve", brief_id, send_at=f"{tomorrow:%Y-%m-%dT%H:%M}")
        assert said.startswith(f"ok: Approved {brief_id}: it will be sent at "), said
        scheduled = wait_for(
            "the scheduled send",
            lambda: (r := _review(url, brief_id, "scheduled")) and r.send_flow_run_id and r,
        )
        send_run = scheduled.send_flow_run_id

        later = tomorrow + timedelta(days=1)
        said = editor.post("reschedule", brief_id, send_at=f"{later:%Y-%m-%dT%H:%M}")
        assert said == f"ok: Rescheduled {brief_id}: it will be sent at {later:%Y-%m-%d %H:%M %Z}."
        state = _flow_run(up, send_run)["state"]
        assert state["type"] == "SCHEDULED", state
        moved = datetime.fromisoformat(state["state_details"]["scheduled_time"])
        assert moved == later.astimezone(UTC), state

        said = editor.post("cancel", brief_id)
        assert said.startswith(f"ok: Cancelled the send of {brief_id}: "), said
        assert _flow_run(up, send_run)["state"]["type"] == "CANCELLED"
        again = wait_for(
            "the new review",
            lambda: (r := _review(url, brief_id)) and r.flow_run_id != scheduled.flow_run_id and r,
        )
        said = editor.post("discard", brief_id)
        assert said == f"ok: Discarded {brief_id}: nothing of it will be sent."
        assert _flow_run(up, again.flow_run_id)["state"]["type"] == "CANCELLED"
        assert _review(url, brief_id) is None
        assert f'value="{brief_id}"' not in client.get("/editor/?refresh=off").text
    assert not recorder.received


@pytest.mark.xdist_group("up-one-worker")  # one fleet for the five
@pytest.mark.parametrize("up", [{"WORKERS": "1"}], indirect=True)
def test_a_worker_of_another_machine_takes_batches_only(
    up: dict, smtp: tuple[Recorder, int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`briefcast worker`, started in a folder of its own, as on another machine: it sends
    batches; the review and the send (they need the inbox, `out`, `public_dir`) stay on the
    worker of `briefcast up`. The brief's file is gone before the send, as it would be
    there: the batches build from the bytes kept with the review."""
    recorder, _port = smtp
    env, cwd, api = up["env"], up["cwd"], up["state"]["api_url"]
    url = env["BRIEFCAST_DATABASE__URL"]
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    extra = subprocess.Popen(
        [*briefcast_cmd(), "worker"],
        env={**env, "PREFECT_API_URL": api},
        cwd=elsewhere,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (worker,) = wait_for("the extra worker", lambda: _prefect_workers(extra.pid), 60)
        brief = cwd / "drafts" / SEEDS[0].name
        brief.parent.mkdir(exist_ok=True)
        shutil.copy(SEEDS[0], brief)
        submitted = run("review", brief, env=env, cwd=cwd)
        assert submitted.returncode == 0, submitted.stderr
        brief_id = submitted.stdout.split(":")[0].strip()
        waiting = wait_for("the review", lambda: _review(url, brief_id))
        assert run("approve", waiting.brief_id, env=env, cwd=cwd).returncode == 0
        brief.unlink()
        wait_sent(up, waiting.brief_id)
    finally:
        extra.terminate()
        extra.wait(timeout=30)
    counts = recorder.count()
    assert len(counts) == SUBSCRIBERS and set(counts.values()) == {1}
    artifacts = httpx.post(f"{api}/artifacts/filter", json={"limit": 200}).json()
    by_key = {a["key"]: a["description"] or "" for a in artifacts if a["key"]}
    batch_workers = {  # this brief's batches (the fleet is shared with other tests)
        d.rpartition("worker pid ")[2].strip()
        for k, d in by_key.items()
        if k.startswith(f"batch-{waiting.brief_id}-".lower())
    }
    assert str(worker) in batch_workers, batch_workers
    assert batch_workers <= {str(worker), *map(str, up["state"]["workers"])}
    (up_worker,) = up["state"]["workers"]
    sent = by_key[f"sent-{waiting.brief_id}"[:100]]
    assert sent.endswith(f"worker pid {up_worker}"), sent
