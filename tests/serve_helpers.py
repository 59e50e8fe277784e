"""What the ``briefcast serve`` tests share (test_serve.py, test_browser.py): the settings for
a server on loopback with an aiosmtpd relay, uvicorn in a thread of its own, and the mail and
subscriber rows read back."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from delivery_helpers import SECRET, subscriber_rows
from smtp_servers import HOST, Received, Recorder, free_port

from briefcast.config import (
    DatabaseSettings,
    DeliverySettings,
    EmailSettings,
    ServeSettings,
    Settings,
    SiteSettings,
    SmtpSettings,
)
from briefcast.serve import ServeApp
from briefcast.store import Store

BASE = "https://briefs.example.org"


@dataclass
class Served:
    url: str
    port: int
    app: ServeApp
    settings: Settings
    store: Store
    public: Path
    recorder: Recorder
    outside: Path | None = None  # a folder beside the site, that must not be served


def serve_settings(
    public: Path, database: Path, smtp_port: int, base_url: str = BASE, **serve: object
) -> Settings:
    """Everything given here, so neither config/briefcast.toml nor the environment leaks in."""
    return Settings(
        site=SiteSettings(base_url=base_url, languages=["en", "it"], public_dir=public),
        database=DatabaseSettings(url=f"sqlite:///{database}"),
        email=EmailSettings(
            from_address="briefs@example.org", unsubscribe_mailto="unsubscribe@example.org"
        ),
        smtp=SmtpSettings(host=HOST, port=smtp_port, starttls=False, tls=False),
        delivery=DeliverySettings(
            unsubscribe_secret=SECRET,  # type: ignore[arg-type]
            pool_size=2,
            backoff_seconds=[0.05],
            retry_window_seconds=5,
            timeout_seconds=5,
        ),
        serve=ServeSettings(**serve),  # type: ignore[arg-type]
    )


@contextmanager
def uvicorn_server(app: ServeApp, port: int | None = None) -> Iterator[int]:
    """The app on a loopback port (a free one unless given), in a thread, until the end of
    the block; yields the port."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=HOST,
            port=port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # as `briefcast serve` runs it unless trust_proxy
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m[1]


def wait_for(
    recorder: Recorder, rcpt: str, count: int = 1, timeout: float = 10.0
) -> list[Received]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [r for r in recorder.messages() if r.rcpt_to == rcpt]
        if len(got) >= count:
            return got
        time.sleep(0.02)
    raise AssertionError(f"{count} message(s) to {rcpt} did not arrive")


def status_of(served: Served, email: str) -> tuple[str, str] | None:
    """(language, status) of the address's row, None when it has none."""
    row = subscriber_rows(served.store).get(email)
    return (row[1], row[2]) if row else None
