"""``briefcast serve`` on a full disk (issue 16): confirm and unsubscribe answer a page that
says nothing was saved (503, a log line), subscribe keeps what it was asked until the disk has
room, and the same click works afterwards. The disk is real: a 2 MiB tmpfs holding the
database, filled with a file until the kernel says ENOSPC."""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from delivery_helpers import SECRET, add_subscribers, subscriber_rows
from serve_helpers import BASE, csrf_of, serve_settings, uvicorn_server, wait_for
from smtp_servers import HOST, Recorder, smtp_server

from briefcast.delivery import tokens
from briefcast.serve import create_app
from briefcast.store import Store

REQUIRE_TMPFS = "BRIEFCAST_REQUIRE_TMPFS"  # CI sets it: the test must run there


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:  # not root, or no mount namespace of our own
        why = f"no small disk can be mounted here: {mounted.stderr.strip()}"
        if os.environ.get(REQUIRE_TMPFS) == "1":
            pytest.fail(f"{why} and {REQUIRE_TMPFS}=1")
        pytest.skip(f"{why}; set {REQUIRE_TMPFS}=1 to fail")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """A file that takes every free block of the disk."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler
    finally:
        os.close(fd)


def post_form(client: httpx.Client, path: str, **data: str) -> httpx.Response:
    return client.post(path, data={"csrf": csrf_of(client.get(path).text), **data})


def test_a_full_disk_answers_503_loses_nothing_and_the_retry_works(
    disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    public = tmp_path / "public"
    (public / "en").mkdir(parents=True)
    (public / "en" / "index.html").write_text("<!DOCTYPE html><html>en</html>\n")
    recorder = Recorder()
    with smtp_server(recorder) as smtp_port:
        settings = serve_settings(public, disk / "b.db", smtp_port, ip_burst=1000)
        store = Store(settings.database.url)
        add_subscribers(store, 1, start=300)  # reader300, active, en
        leaving = subscriber_rows(store)["reader300@example.org"][0]
        app = create_app(settings)
        app.mailer.retry_seconds = 0.2
        try:
            with (
                uvicorn_server(app) as port,
                httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as client,
            ):
                assert post_form(client, "/subscribe", email="first@example.org", language="en")
                got = wait_for(recorder, "first@example.org")[0].message
                text = got.get_body(("plain",)).get_content()
                confirm = re.search(re.escape(BASE) + r"(/confirm/\S+)", text)
                assert confirm
                # The WAL emptied, as a checkpoint leaves it: the next write needs new blocks.
                with store.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                filler = fill(disk)
                caplog.set_level(logging.ERROR, logger="briefcast.serve")

                confirmed = post_form(client, confirm[1])
                assert confirmed.status_code == 503, confirmed.text
                assert "nothing has changed" in confirmed.text
                assert confirmed.headers["retry-after"] == "120"
                assert status_of_store(store, "first@example.org") == "pending"
                manage = f"/u/{tokens.sign(SECRET, leaving)}"
                left = post_form(client, manage, action="unsubscribe")
                assert left.status_code == 503 and "nothing has changed" in left.text
                one_click = client.post(manage, data={"List-Unsubscribe": "One-Click"})
                assert one_click.status_code == 503
                assert status_of_store(store, "reader300@example.org") == "active"
                # Subscribe answers before it writes (the timing hides who is on the list):
                # the first on a full disk is kept by the mailer, the next are told to wait.
                kept = post_form(client, "/subscribe", email="kept@example.org", language="it")
                assert kept.status_code == 200
                deadline = time.monotonic() + 10
                while not app.mailer.database_failing and time.monotonic() < deadline:
                    time.sleep(0.05)
                later = post_form(client, "/subscribe", email="later@example.org", language="en")
                assert later.status_code == 503 and "nothing has changed" in later.text
                assert "cannot be written" in caplog.text and "Traceback" not in caplog.text

                filler.unlink()  # room again: the same clicks work, the kept one is mailed
                wait_for(recorder, "kept@example.org")
                assert status_of_store(store, "kept@example.org") == "pending"
                assert post_form(client, confirm[1]).status_code == 200
                assert status_of_store(store, "first@example.org") == "active"
                assert post_form(client, manage, action="unsubscribe").status_code == 200
                assert status_of_store(store, "reader300@example.org") == "unsubscribed"
                again = post_form(client, "/subscribe", email="later@example.org", language="en")
                assert again.status_code == 200
                wait_for(recorder, "later@example.org")
        finally:
            store.engine.dispose()


def status_of_store(store: Store, email: str) -> str | None:
    row = subscriber_rows(store).get(email)
    return row[2] if row else None
