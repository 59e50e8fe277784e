"""Channels are plug-ins: an out-of-tree package with one entry point shows up in
``briefcast channels``, ``--channels``, a dry run and the preview page, with no line of
briefcast changed (tests/plugins/briefcast-digest, installed for these tests only)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import SEEDS, briefcast, one_line_error

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
