"""End to end through the CLI: the seeds publish, bad input changes nothing."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from briefcast.config import Settings
from briefcast.pipeline import run_publish

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "seeds").glob("*.txt"))
CHROME = ("Iscriviti ora alla", "SITO WEB REALIZZATO", "Looking for Partners Coordinators")
EDITIONS = ("en", "it", "both")


def briefcast(*args: str | Path, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "briefcast.cli", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "BRIEFCAST_DATABASE__URL": f"sqlite:///{cwd / 'b.db'}", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


# `python -m briefcast.cli`, saying on stderr, on a line of its own, each process it starts:
# Python raises the "subprocess.Popen" audit event for every child, the Prefect server too.
WATCHED = """
import runpy, sys
def started(event, args):
    if event == "subprocess.Popen":
        sys.stderr.write("[started] " + " ".join(map(str, args[1])) + "\\n")
sys.addaudithook(started)
runpy.run_module("briefcast.cli", run_name="__main__", alter_sys=True)
"""


def watched(*args: str | Path, cwd: Path, env: dict[str, str] | None = None):
    """``briefcast(*args)`` and the command lines of the processes it started (left out of
    its stderr). A Prefect API in the environment is removed: the CLI decides alone."""
    environ = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    result = subprocess.run(
        [sys.executable, "-c", WATCHED, *map(str, args)],
        cwd=cwd,
        env={**environ, "BRIEFCAST_DATABASE__URL": f"sqlite:///{cwd / 'b.db'}", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stderr.splitlines(keepends=True)
    started = [
        line.removeprefix("[started] ").strip() for line in lines if line.startswith("[started] ")
    ]
    result.stderr = "".join(line for line in lines if not line.startswith("[started] "))
    return result, started


def prefect_servers(started: list[str]) -> list[str]:
    return [command for command in started if "prefect.server.api.server:create_app" in command]


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_publish_all_seeds_through_prefect(tmp_path: Path, monkeypatch) -> None:
    """With no Prefect API, the CLI starts its temporary server (one) and publishes through
    it: the other tests' publishes use the session's server (tests/conftest.py)."""
    result, started = watched("publish", *SEEDS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(prefect_servers(started)) == 1 and len(started) == 1, started
    out = tmp_path / "out"
    folders = sorted(p for p in out.iterdir())
    assert len(folders) == 5
    assert not any(p.name.startswith(".") for p in folders), "staging left behind"
    for folder in folders:
        assert f"{folder.relative_to(tmp_path)}/index.html" in result.stdout
        for edition in EDITIONS:
            for suffix in ("html", "txt", "eml"):
                assert (folder / "email" / f"{edition}.{suffix}").stat().st_size > 0
        for lang in ("en", "it"):
            for name in ("rss.xml", "atom.xml", "feed.json"):
                assert (folder / "feed" / lang / name).exists()
            assert (folder / "web" / f"{lang}.html").exists()
        assert (folder / "social" / "posts.json").exists()

    every_output = b"\n".join(b for f in folders for b in files_under(f).values())
    for chrome in CHROME:
        assert chrome.encode() not in every_output, chrome

    for eml in out.glob("*/email/*.eml"):
        raw = eml.read_bytes()
        assert raw.count(b"\n") == raw.count(b"\r\n"), f"bare LF in {eml}"
        assert b"\r" not in raw.replace(b"\r\n", b""), f"bare CR in {eml}"
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg.get_content_type() == "multipart/alternative"
        types = [part.get_content_type() for part in msg.iter_parts()]
        assert types == ["text/plain", "text/html"]
        html = msg.get_body(("html",)).get_content()
        assert len(html.encode("utf-8")) < 102 * 1024
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The same publish without Prefect (the plain pipeline the flow's tasks call) writes
    # exactly the same files: feeds rebuilt with no new brief are byte-identical too.
    monkeypatch.setenv("BRIEFCAST_DATABASE__URL", f"sqlite:///{tmp_path / 'b.db'}")
    before = {f.name: files_under(f) for f in folders}
    run_publish(SEEDS, Settings(), out=out)
    after = {f.name: files_under(f) for f in sorted(out.iterdir())}
    assert after == before


def test_channels_option_limits_the_previews(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BRIEFCAST_DATABASE__URL", f"sqlite:///{tmp_path / 'b.db'}")
    (folder,) = run_publish(SEEDS[:1], Settings(), names=["social"], out=tmp_path / "o")
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "social"]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


BAD_INPUTS = {
    "empty": (b"", "is empty"),
    "whitespace": (b"  \n\t\r\n  \n", "only whitespace"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary"),
    "undecodable": (b"EU/ENG - Caf\x81 \x8d\x90 society\n", "neither UTF-8 nor"),
    "no-text": (b"EU/ENG - \n...\n--- !!!\n", "no usable text"),
    "bad-front-matter": (b"---\ntitle: [unclosed\n---\nBody text.\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path, case: str) -> None:
    data, reason = BAD_INPUTS[case]
    bad = tmp_path / f"{case}.md" if case == "bad-front-matter" else tmp_path / f"{case}.txt"
    bad.write_bytes(data)
    # A good brief before the bad one: it must not be published either.
    result = briefcast("publish", SEEDS[0], bad, cwd=tmp_path)
    line = one_line_error(result)
    assert bad.name in line and reason in line
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "b.db").exists()


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "no such file" in one_line_error(briefcast("publish", "nope.txt", cwd=tmp_path))
    assert "is a directory" in one_line_error(briefcast("publish", tmp_path, cwd=tmp_path))


def test_size_limit_from_the_environment(tmp_path: Path) -> None:
    result = briefcast(
        "publish", SEEDS[0], cwd=tmp_path, env={"BRIEFCAST_INPUT__MAX_BYTES": "1000"}
    )
    line = one_line_error(result)
    assert SEEDS[0].name in line and "over the 1,000-byte limit" in line
    assert not (tmp_path / "out").exists()


def test_send_without_the_unsubscribe_secret_refuses(tmp_path: Path) -> None:
    line = one_line_error(briefcast("publish", SEEDS[0], "--send", cwd=tmp_path))
    assert "--send" in line and "nothing was sent" in line
    assert not (tmp_path / "out").exists()


def test_unknown_channel(tmp_path: Path) -> None:
    line = one_line_error(briefcast("publish", SEEDS[0], "--channels", "email,fax", cwd=tmp_path))
    assert "fax" in line


PARAGRAPH = "A long analytical paragraph, again and again. " * 10
GMAIL_TOO_LONG = "---\ntitle: Long one\nlang: en\n---\n" + f"{PARAGRAPH}\n\n" * 250
GOOD = {"x.md": "Some text for the brief.\n"}

# name -> (arguments, environment, files to write, what the one line must say)
REFUSED_BEFORE_PREFECT = {
    "settings": (["x.md"], {"BRIEFCAST_INPUT__MAX_BYTES": "lots"}, GOOD, "max_bytes"),
    "missing-file": (["nope.md"], {}, {}, "no such file"),
    "front-matter": (
        ["x.md"],
        {},
        {"x.md": "---\ntitle: [unclosed\n---\nBody.\n"},
        "not valid YAML",
    ),
    "content": (["x.md"], {}, {"x.md": GMAIL_TOO_LONG}, "over Gmail's limit"),
    "out-a-file": (["x.md", "--out", "x.md"], {}, GOOD, "is a file"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BEFORE_PREFECT))
def test_a_refused_publish_starts_no_prefect_server(tmp_path: Path, case: str) -> None:
    """Bad settings, a missing file, bad front matter, a brief its channels refuse, a bad
    --out: refused in one line before the CLI starts its temporary Prefect server (or any
    process)."""
    args, env, files, reason = REFUSED_BEFORE_PREFECT[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text, "utf-8")
    result, started = watched("publish", *args, cwd=tmp_path, env=env)
    assert reason in one_line_error(result)
    assert started == []
