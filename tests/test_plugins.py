"""Channels are plug-ins: an out-of-tree package with one entry point shows up in
``briefcast channels``, ``--channels``, a dry run and the preview page, and its live send
runs from ``publish --send`` and on ``briefcast up``'s workers, once per brief, with no line
of briefcast changed (tests/plugins/briefcast-digest, installed for these tests only)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import test_workflow
from test_cli import SEEDS, briefcast, one_line_error
from test_workflow import _review, run, wait_for, wait_sent

from briefcast.send_ledger import SendKey, SendLedger
from briefcast.store import Store

# `briefcast up` and its relay, as the workflow tests start them.
up = test_workflow.up
smtp = test_workflow.smtp
fleets = test_workflow.fleets
relay = test_workflow.relay

PLUGIN = Path(__file__).parent / "plugins" / "briefcast-digest"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example plug-in installed as a user would (pip, a real wheel build), into a
    folder of its own that only these tests put on the path."""
    target = tmp_path_factory.mktemp("site")
    # Built from a copy: a build writes build/ and *.egg-info beside the sources.
    source = tmp_path_factory.mktemp("src") / PLUGIN.name
    shutil.copytree(PLUGIN, source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    assert list(target.glob("briefcast_digest-*.dist-info"))
    return str(target)


def test_the_plugin_is_listed(tmp_path: Path, plugin_path: str) -> None:
    result = briefcast("channels", cwd=tmp_path, env={"PYTHONPATH": plugin_path})
    assert result.returncode == 0, result.stderr
    names = [line.split("│")[1].strip() for line in result.stdout.splitlines() if "│" in line]
    assert names == ["email", "feed", "social", "web", "digest"]  # built-ins first, by order
    # Without the plug-in on the path it is not there: nothing in briefcast names it.
    plain = briefcast("channels", cwd=tmp_path)
    assert "digest" not in plain.stdout
    line = one_line_error(briefcast("publish", SEEDS[0], "--channels", "digest", cwd=tmp_path))
    assert "unknown channel digest; choose from email,feed,social,web" in line


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_the_plugin_previews_in_a_dry_run(tmp_path: Path, plugin_path: str) -> None:
    result = briefcast(
        "publish",
        SEEDS[1],
        "--channels",
        "email,digest",
        cwd=tmp_path,
        env={"PYTHONPATH": plugin_path},
    )
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["digest", "email", "index.html"]
    digest = (folder / "digest" / "digest.txt").read_text("utf-8")
    assert f"https://briefs.europolitiche.it/en/{folder.name}/" in digest
    index = (folder / "index.html").read_text("utf-8")
    assert '<section id="channel-digest">' in index and "<h2>Digest</h2>" in index
    assert index.index("channel-email") < index.index("channel-digest")
    assert '<pre class="digest">' in index


def test_a_broken_plugin_is_one_line(tmp_path: Path) -> None:
    """An entry point that is not a Channel: named in one line, exit 2."""
    site = tmp_path / "site"
    info = site / "broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[briefcast.channels]\nfax = json:dumps\n")
    line = one_line_error(briefcast("channels", cwd=tmp_path, env={"PYTHONPATH": str(site)}))
    assert "channel plug-in 'fax' (json:dumps) is not a briefcast Channel" in line


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_the_plugins_send_drops_each_brief_once(tmp_path: Path, plugin_path: str) -> None:
    """``publish --send``: the plug-in's one unit through the send ledger; sent again,
    nothing is done twice; without its folder set, refused before anything is sent."""
    dropped = tmp_path / "dropped"
    env = {"PYTHONPATH": plugin_path, "DIGEST_DROP_DIR": str(dropped)}
    args = ("publish", SEEDS[1], "--channels", "digest", "--send")
    refused = one_line_error(briefcast(*args, cwd=tmp_path, env={"PYTHONPATH": plugin_path}))
    assert "digest: set DIGEST_DROP_DIR" in refused and not dropped.exists()

    first = briefcast(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    (folder,) = (tmp_path / "out").iterdir()
    brief_id = folder.name
    assert f"digest for brief {brief_id}: dropped (sent)" in first.stdout
    built = (folder / "digest" / "digest.txt").read_text("utf-8")
    assert (dropped / f"{brief_id}.txt").read_text("utf-8") == built

    again = briefcast(*args, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert f"digest for brief {brief_id}: already dropped, nothing done (sent)" in again.stdout
    (line,) = (dropped / "sent.log").read_text("utf-8").splitlines()
    assert line.split()[0] == brief_id


@pytest.fixture
def digest_on_up(monkeypatch: pytest.MonkeyPatch, plugin_path: str, tmp_path: Path) -> Path:
    """The plug-in on the path of `briefcast up` and of every worker it starts (asked for
    before ``up``, which takes its environment from this process); the folder it drops into."""
    dropped = tmp_path / "dropped"
    monkeypatch.setenv("PYTHONPATH", plugin_path)
    monkeypatch.setenv("DIGEST_DROP_DIR", str(dropped))
    return dropped


@pytest.mark.parametrize("up", [{"WORKERS": "1", "SEND_BATCH": "5000"}], indirect=True)
def test_the_plugins_send_runs_on_the_workers_of_briefcast_up_once(
    digest_on_up: Path, up: dict
) -> None:
    """Reviewed, approved and sent on `briefcast up`: the plug-in's unit runs in a flow run
    of a worker that `up` started, through the send ledger; the send run again (as
    ``briefcast up`` runs a crashed send again) drops nothing twice."""
    env, cwd, state = up["env"], up["cwd"], up["state"]
    url, api = env["BRIEFCAST_DATABASE__URL"], state["api_url"]
    brief = cwd / "drafts" / SEEDS[1].name
    brief.parent.mkdir()
    shutil.copy(SEEDS[1], brief)
    assert run("review", brief, env=env, cwd=cwd).returncode == 0
    waiting = wait_for("the review", lambda: _review(url))
    approved = run("approve", waiting.brief_id, env=env, cwd=cwd)
    assert approved.returncode == 0, approved.stderr
    wait_sent(up, waiting.brief_id)

    built = (Path(waiting.preview) / "digest" / "digest.txt").read_text("utf-8")
    assert (digest_on_up / f"{waiting.brief_id}.txt").read_text("utf-8") == built
    (line,) = (digest_on_up / "sent.log").read_text("utf-8").splitlines()
    brief_id, _host, _pid, parent = line.split()
    assert brief_id == waiting.brief_id
    # A flow run's process: forked from up's prefork server, for a worker of up's.
    assert int(parent) == state["prefork"], (line, state)

    send = httpx.get(f"{api}/deployments/name/send/briefcast-send").json()
    again = httpx.post(
        f"{api}/deployments/{send['id']}/create_flow_run",
        json={"parameters": {"review_id": waiting.flow_run_id}},
    ).json()

    def ended() -> dict | None:
        state = httpx.get(f"{api}/flow_runs/{again['id']}").json()["state"]
        return state if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

    assert wait_for("the send run again", ended, timeout=240)["type"] == "COMPLETED"
    assert len((digest_on_up / "sent.log").read_text("utf-8").splitlines()) == 1
    with Store(url) as store:
        row = SendLedger(store).get(SendKey(waiting.brief_id, "digest", "folder"))
    assert row is not None and (row.status, row.attempts) == ("sent", 1)
