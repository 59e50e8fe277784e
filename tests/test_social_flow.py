"""The social channel's scale-out send: one account's posting alone (the core, no Prefect),
then the channel's units (one per account) sent by ``flows.units.send_channel`` inside a
Prefect flow against a temporary Prefect server (``prefect_test_harness``): one task per
account, every post once, each post after a slot of its network's fleet-wide rate limit,
which really paces them. X, Mastodon and Bluesky are
the HTTP fakes of tests/fake_*.py."""

from __future__ import annotations

import itertools
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_bluesky import FakePds, fake_pds
from fake_mastodon import TOKEN, FakeMastodon
from fake_x import FakeX, environ, fake_x
from test_social_send import BRIEF, FAST, SITE, chained

from briefcast import pipeline
from briefcast.channel import Outputs
from briefcast.config import (
    AccountSettings,
    DatabaseSettings,
    DeliverySettings,
    Settings,
    SocialSettings,
    WorkflowSettings,
)
from briefcast.delivery.lock import sending
from briefcast.posting.run import SocialSummary, post_account, post_brief
from briefcast.render.social import build_social
from briefcast.send_ledger import SendLedger
from briefcast.store import Store

BRIEF_ID = "paris-force"


@pytest.fixture
def brief_file(tmp_path: Path) -> Path:
    path = tmp_path / "paris.md"
    path.write_text(BRIEF, "utf-8")
    return path


@pytest.fixture
def x() -> Iterator[FakeX]:
    with fake_x() as fake:
        yield fake


@pytest.fixture
def x2() -> Iterator[FakeX]:
    """A second X (another user: the same thread is no duplicate there)."""
    with fake_x("desk2") as fake:
        yield fake


@pytest.fixture
def mastodon() -> Iterator[FakeMastodon]:
    with FakeMastodon(max_characters=1000).running() as fake:
        yield fake


@pytest.fixture
def pds() -> Iterator[FakePds]:
    with fake_pds() as fake:
        yield fake


def x_account(url: str, name: str = "desk-x") -> AccountSettings:
    return AccountSettings(name=name, network="x", languages=["en"], api_url=url)


def mastodon_account(url: str) -> AccountSettings:
    return AccountSettings(name="desk-m", network="mastodon", languages=["en"], api_url=url)


def bluesky_account(pds: FakePds) -> AccountSettings:
    return AccountSettings(
        name="desk-b",
        network="bluesky",
        languages=["en", "it"],
        api_url=pds.url,
        handle=pds.handle,
    )


def settings_for(
    tmp_path: Path,
    *accounts: AccountSettings,
    posts_per_minute: float = 30,
    lock_wait_seconds: float = 10,
    # Only the test server's speed bounds how long a free slot takes to be given: in CI (a
    # loaded 2-core machine, the harness's SQLite busy with the run's states) one took over
    # 5 s once. The tests check that every post takes a slot and the pace, not the server.
    max_wait_seconds: float = 60,
) -> Settings:
    return Settings(
        site=SITE,
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'b.db'}"),
        delivery=DeliverySettings(lock_wait_seconds=lock_wait_seconds),
        social=SocialSettings(accounts=list(accounts), max_wait_seconds=max_wait_seconds),
        workflow=WorkflowSettings(posts_per_minute=posts_per_minute),
    )


def credentials(pds: FakePds | None = None) -> dict[str, str]:
    """Every account's variables: desk-x, desk-x2 (the fakes' X credentials), desk-m, desk-b."""
    env = environ() | environ("desk-x2") | {"BRIEFCAST_SOCIAL_DESK_M_ACCESS_TOKEN": TOKEN}
    if pds is not None:
        env["BRIEFCAST_SOCIAL_DESK_B_APP_PASSWORD"] = pds.password
    return env


def ledger(settings: Settings) -> dict[tuple[str, str], str]:
    """(account, part) -> status of the brief's social rows."""
    with Store(settings.database.url) as store:
        rows = SendLedger(store).for_brief(BRIEF_ID, "social")
    return {(r.key.target, r.key.part): r.status for r in rows}


def one_account(brief_file: Path, settings: Settings, account: str, **kw: Any) -> SocialSummary:
    (brief,) = pipeline.read([brief_file], settings)
    posts = build_social(brief, settings.site)
    env = kw.pop("environ", credentials())
    return post_account(brief, posts, settings, account, waits=FAST, environ=env, **kw)


def timed(fake: Any, method: str, times: list[float]) -> None:
    """Keep the time each call of ``fake.method`` (a post reaching the fake) began."""
    original = getattr(fake, method)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        times.append(time.monotonic())
        return original(*args, **kwargs)

    setattr(fake, method, wrapper)


# --- one account at a time, no Prefect -------------------------------------------------------


def test_each_account_alone_posts_its_own_and_together_they_make_post_briefs_summary(
    tmp_path: Path, brief_file: Path, x: FakeX, x2: FakeX, mastodon: FakeMastodon
) -> None:
    settings = settings_for(
        tmp_path, x_account(x.url), mastodon_account(mastodon.url), x_account(x2.url, "desk-x2")
    )
    calls: list[str] = []

    def before_post(network: str) -> None:
        # Before the part's row says "sending": a run killed here leaves it queued.
        assert "sending" not in ledger(settings).values()
        calls.append(network)

    # In any order (as tasks end), each account alone.
    by_name = {
        name: one_account(brief_file, settings, name, before_post=before_post)
        for name in ("desk-x2", "desk-m", "desk-x")
    }
    assert len(x.tweets) == 3 and chained(x) and len(x2.tweets) == 3 and chained(x2)
    assert len(mastodon.statuses) == 1
    assert sorted(calls) == ["mastodon"] + ["x"] * 6  # once per post, with its network
    assert by_name["desk-m"].rows()[0]["posted"] == 1 and by_name["desk-m"].error is None

    combined = SocialSummary.combine(BRIEF_ID, [by_name[a.name] for a in settings.social.accounts])
    assert [r["account"] for r in combined.rows()] == ["desk-x", "desk-m", "desk-x2"]
    assert combined.total("posted") == 7 and combined.error is None
    assert combined.line() == (
        f"social for brief {BRIEF_ID}: posted 7, unknown 0, failed 0, queued 0, skipped 0 "
        "(3 account(s))"
    )

    # All accounts in one run (the CLI's publish --send): nothing again, no post paced.
    (brief,) = pipeline.read([brief_file], settings)
    again = post_brief(
        brief,
        build_social(brief, SITE),
        settings,
        waits=FAST,
        environ=credentials(),
        before_post=before_post,
    )
    assert again.rows() == [{**r, "posted": 0, "skipped": r["posted"]} for r in combined.rows()]
    assert len(calls) == 7 and x.posts_received == x2.posts_received == 3


def test_accounts_post_side_by_side_and_lock_only_themselves(
    tmp_path: Path, brief_file: Path, x: FakeX, x2: FakeX, mastodon: FakeMastodon
) -> None:
    settings = settings_for(
        tmp_path,
        x_account(x.url),
        x_account(x2.url, "desk-x2"),
        mastodon_account(mastodon.url),
        lock_wait_seconds=0.3,
    )
    # Another run is posting desk-x: desk-x2 and desk-m go on, side by side, meanwhile.
    with (
        Store(settings.database.url) as store,
        sending(store, f"social:{BRIEF_ID}:desk-x"),
        ThreadPoolExecutor(3) as pool,
    ):
        futures = {
            name: pool.submit(one_account, brief_file, settings, name)
            for name in ("desk-x", "desk-x2", "desk-m")
        }
        done = {name: f.result(timeout=60) for name, f in futures.items()}
    assert len(x2.tweets) == 3 and chained(x2) and len(mastodon.statuses) == 1
    assert not x.tweets and done["desk-x"].total("queued") == 3
    error = done["desk-x"].error or ""
    assert error.startswith("desk-x (en): social: ") and "being sent by another run" in error
    assert done["desk-x2"].error is None and done["desk-m"].error is None

    again = one_account(brief_file, settings, "desk-x")  # the other run is over
    assert again.total("posted") == 3 and chained(x)


def test_no_pacing_slot_in_time_leaves_the_rest_for_the_next_run(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))
    calls: list[str] = []

    def one_then_timeout(network: str) -> None:
        calls.append(network)
        if len(calls) > 1:
            raise TimeoutError("no slot of social-x within 5 second(s)")

    summary = one_account(brief_file, settings, "desk-x", before_post=one_then_timeout)
    assert len(x.tweets) == 1 and calls == ["x", "x"]
    (row,) = summary.rows()
    assert (row["posted"], row["queued"], row["failed"]) == (1, 2, 0)
    assert summary.error is None  # as when the network itself rate-limits it for long
    (note,) = summary.notes()
    assert note == (
        "desk-x (x, en): no x posting slot in time (TimeoutError: no slot of social-x within "
        "5 second(s)): left for the next run"
    )
    # Part 2 was never marked: queued for the next run, not unknown.
    assert ledger(settings) == {("desk-x", "x-en-1of3"): "sent"}

    summary = one_account(brief_file, settings, "desk-x")
    assert summary.rows()[0]["posted"] == 2 and summary.rows()[0]["skipped"] == 1
    assert len(x.tweets) == 3 and chained(x)


def test_a_failing_pacing_stops_the_account_with_an_error(
    tmp_path: Path, brief_file: Path, x: FakeX
) -> None:
    settings = settings_for(tmp_path, x_account(x.url))

    def down(network: str) -> None:
        raise RuntimeError("the Prefect API cannot be reached")

    summary = one_account(brief_file, settings, "desk-x", before_post=down)
    assert not x.tweets and summary.total("queued") == 3
    assert summary.error == (
        "desk-x (en): posting pace failed (RuntimeError: the Prefect API cannot be reached): "
        "left for the next run"
    )
    assert ledger(settings) == {}


def test_an_account_not_configured_is_refused(tmp_path: Path, brief_file: Path) -> None:
    settings = settings_for(tmp_path, x_account("https://api.x.com"))
    with pytest.raises(ValueError, match=re.escape('no [[social.accounts]] named "desk-y"')):
        one_account(brief_file, settings, "desk-y")


def test_the_limits_follow_posts_per_minute_for_each_network_in_use(tmp_path: Path) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from channels.social import social_limits

    accounts = (
        x_account("https://api.x.com"),
        mastodon_account("https://mastodon.social"),
        x_account("https://api.x.com", "desk-x2"),
    )
    assert social_limits(settings_for(tmp_path, *accounts)) == [
        ("social-x", 1, 0.5),
        ("social-mastodon", 1, 0.5),
    ]
    assert social_limits(settings_for(tmp_path, *accounts, posts_per_minute=600))[0] == (
        "social-x",
        10,
        10.0,
    )
    ((_, slots, decay),) = social_limits(settings_for(tmp_path, accounts[0], posts_per_minute=3))
    assert slots == 1 and decay == pytest.approx(0.05)
    assert social_limits(settings_for(tmp_path)) == []
    for name, limit, decay in social_limits(settings_for(tmp_path, *accounts)):
        made = GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
        assert made.slot_decay_per_second > 0  # a rate limit


# --- the channel's units in a Prefect flow, against a temporary Prefect server ---------------


@contextmanager
def limits(*made: tuple[str, int, float]) -> Iterator[None]:
    """Global concurrency limits used as rate limits, for the length of a ``with``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        for name, limit, decay in made:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
            )
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            for name, _, _ in made:
                client.delete_global_concurrency_limit_by_name(name)


def outputs_of(brief_file: Path, settings: Settings) -> Outputs:
    briefs = pipeline.date(pipeline.read([brief_file], settings), settings)
    (outputs,) = pipeline.build(briefs, settings, ["social"])
    return outputs


@pytest.fixture
def paced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, float]]:
    """Every ``rate_limit`` the flow asks for: (limit, task run's name, when it was given)."""
    from prefect.runtime import task_run

    import flows.units

    real = flows.units.rate_limit
    seen: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def recording(name: str, **kwargs: Any) -> None:
        real(name, **kwargs)
        with lock:
            seen.append((name, str(task_run.name), time.monotonic()))

    monkeypatch.setattr(flows.units, "rate_limit", recording)
    return seen


def run_flow(outputs: Outputs, settings: Settings) -> tuple[SocialSummary, str]:
    """The channel's send (``send_channel``, as both flows send) in a flow run of its own:
    its summary and the flow run's id."""
    from prefect import flow

    from flows import without_heartbeats
    from flows.units import send_channel

    @flow(name="social-send-test")
    def social_send() -> SocialSummary:
        return send_channel("social", outputs, settings)

    with without_heartbeats():
        state: Any = social_send(return_state=True)
    return state.result(), str(state.state_details.flow_run_id)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def task_runs(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        return list(
            client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=50,
            )
        )


def artifact_keys() -> set[str]:
    from prefect.settings import PREFECT_API_URL

    found = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json={"limit": 200})
    return {a["key"] for a in found.json() if a["key"]}


def test_one_task_per_account_posts_each_post_once_after_its_networks_slot(
    prefect_server: None,
    paced: list[tuple[str, str, float]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    brief_file: Path,
    x: FakeX,
    mastodon: FakeMastodon,
    pds: FakePds,
) -> None:
    from channels.social import social_limits

    for name, value in credentials(pds).items():
        monkeypatch.setenv(name, value)
    settings = settings_for(
        tmp_path,
        x_account(x.url),
        mastodon_account(mastodon.url),
        bluesky_account(pds),
        posts_per_minute=6000,  # 100 slots, 100 a second: no wait for a slot here
    )
    outputs = outputs_of(brief_file, settings)
    with limits(*social_limits(settings)):
        summary, flow_run_id = run_flow(outputs, settings)

    assert len(x.tweets) == 3 and chained(x)
    assert len(mastodon.statuses) == 1 and len(pds.records) == 1
    assert summary.error is None and summary.total("posted") == 5
    assert [(r["account"], r["posted"]) for r in summary.rows()] == [
        ("desk-x", 3),
        ("desk-m", 1),
        ("desk-b", 1),
    ]
    # Each post took a slot of its network's limit, from its account's own task run.
    assert sorted((name, task) for name, task, _ in paced) == [
        ("social-bluesky", "social-desk-b"),
        ("social-mastodon", "social-desk-m"),
        *[("social-x", "social-desk-x")] * 3,
    ]
    runs = wait_for(
        "the task runs",
        lambda: (
            (r := task_runs(flow_run_id))
            and all(t.state and t.state.is_final() for t in r)
            and len(r) >= 3
            and r
        ),
    )
    assert sorted(t.name for t in runs) == ["social-desk-b", "social-desk-m", "social-desk-x"]
    assert all(t.state.is_completed() for t in runs)
    keys = wait_for(
        "the artifacts",
        lambda: (
            (k := artifact_keys()) >= {f"social-desk-x-{BRIEF_ID}", f"send-social-{BRIEF_ID}"} and k
        ),
    )
    assert {f"social-desk-m-{BRIEF_ID}", f"social-desk-b-{BRIEF_ID}"} <= keys

    # Sent again: nothing posted twice, and nothing waits for a slot.
    paced.clear()
    with limits(*social_limits(settings)):
        again, _ = run_flow(outputs, settings)
    assert again.total("posted") == 0 and again.total("before") == 5 and not paced
    assert (x.posts_received, len(mastodon.statuses), len(pds.records)) == (3, 1, 1)


def test_the_fleet_rate_limit_paces_the_posts_of_every_account(
    prefect_server: None,
    paced: list[tuple[str, str, float]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    brief_file: Path,
    x: FakeX,
    x2: FakeX,
) -> None:
    for name, value in credentials().items():
        monkeypatch.setenv(name, value)
    settings = settings_for(tmp_path, x_account(x.url), x_account(x2.url, "desk-x2"))
    received: list[float] = []
    timed(x, "create", received)
    timed(x2, "create", received)
    outputs = outputs_of(brief_file, settings)
    decay = 5.0  # one slot, given back at 5 a second: a post every 0.2 s at most, fleet-wide
    started = time.monotonic()
    with limits(("social-x", 1, decay)):
        summary, _ = run_flow(outputs, settings)
    took = time.monotonic() - started

    assert summary.total("posted") == 6 and summary.error is None
    assert chained(x) and chained(x2) and len(received) == 6
    assert {task for _, task, _ in paced} == {"social-desk-x", "social-desk-x2"}
    # Each post its own slot, asked for from its account's task run.
    assert sorted(name for name, _, _ in paced) == ["social-x"] * len(received)
    received.sort()
    gaps = [b - a for a, b in itertools.pairwise(received)]
    # (n - 1) / decay at least; generous for a loaded machine.
    assert received[-1] - received[0] >= 0.9 * (len(received) - 1) / decay, gaps
    # Paced, not in bursts: most posts a slot's decay after the one before. Not each one:
    # on a loaded machine a post's request can be held up after its slot and reach the fake
    # just before the next one's (CI saw two 0.015 s apart, each with a slot of its own).
    assert statistics.median(gaps) >= 0.5 / decay, gaps
    assert took < 60


def test_no_slot_within_max_wait_leaves_the_rest_for_the_next_run(
    prefect_server: None,
    paced: list[tuple[str, str, float]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    brief_file: Path,
    x: FakeX,
) -> None:
    for name, value in credentials().items():
        monkeypatch.setenv(name, value)
    # Long enough for the first slot on a busy test server (see settings_for),
    # then no second one in time.
    settings = settings_for(tmp_path, x_account(x.url), max_wait_seconds=15)
    outputs = outputs_of(brief_file, settings)
    started = time.monotonic()
    with limits(("social-x", 1, 0.001)):  # a slot back every 1,000 s
        summary, _ = run_flow(outputs, settings)
    assert time.monotonic() - started < 60
    assert len(x.tweets) == 1 and summary.error is None
    (row,) = summary.rows()
    assert (row["posted"], row["queued"]) == (1, 2)
    (note,) = summary.notes()
    assert note.startswith("desk-x (x, en): no x posting slot in time (") and "next run" in note
    assert ledger(settings) == {("desk-x", "x-en-1of3"): "sent"}


@contextmanager
def slow_prefect_api(delay: float, answers: list[tuple[int, dict[str, str]]]) -> Iterator[str]:
    """A Prefect API whose slot requests take ``delay`` seconds each, answered in turn from
    ``answers`` (status, headers; the last repeats): a server busy with a fleet's writes."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls = itertools.count()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the client's CSRF token: as a server that has none
            body = b'{"detail": "CSRF protection is disabled."}'
            self.send_response(422)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay)
            status, headers = answers[min(next(calls), len(answers) - 1)]
            body = b"[]" if status == 200 else b'{"detail": "locked"}'
            self.send_response(status)
            for key, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_prefect_server_is_no_reason_to_leave_a_post_for_the_next_run() -> None:
    """``max_wait_seconds`` bounds the wait for a slot, not the server's time to answer: on
    the suite's shared server a send with no limit at all once posted nothing (Prefect's own
    ``rate_limit`` counted its slow API call as the wait and gave up)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.units import PrefectPacer

    with slow_prefect_api(1.0, [(200, {})]) as url, temporary_settings({PREFECT_API_URL: url}):
        started = time.monotonic()
        PrefectPacer().tick("social-x", timeout=0.3)  # the server took 1 s: no TimeoutError
        assert time.monotonic() - started >= 1.0
    locked = (423, {"Retry-After": "0.2"})
    with (
        slow_prefect_api(0.0, [locked, locked, (200, {})]) as url,
        temporary_settings({PREFECT_API_URL: url}),
    ):
        started = time.monotonic()
        PrefectPacer().tick("social-x", timeout=5)  # two waits the server asked for
        assert 0.4 <= time.monotonic() - started < 5
    with slow_prefect_api(0.0, [locked]) as url, temporary_settings({PREFECT_API_URL: url}):
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="no slot of social-x within 1 second"):
            PrefectPacer().tick("social-x", timeout=1)
        assert time.monotonic() - started < 1.5
