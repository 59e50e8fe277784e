"""A Mastodon server on loopback, just enough of its API for the poster's tests: it records
every request (method, path, headers, form or JSON body) and answers like Mastodon, unless a
test scripts the next answers of a route (a status code, headers, a delay before answering).

- ``GET /api/v1/accounts/verify_credentials``: the account, or 401 for another token;
- ``GET /api/v2/instance``: the domain and ``configuration.statuses.max_characters``, or 404
  when ``max_characters`` is None (a server older than Mastodon 4.0);
- ``POST /api/v1/statuses``: a new status, or the one an earlier request with the same
  ``Idempotency-Key`` made (as Mastodon does for an hour).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "desk-token"
USERNAME = "desk"
DOMAIN = "social.example"


@dataclass
class Seen:
    """One request as the server got it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    form: dict[str, str]  # the form fields (last value of each), or the JSON object's
    body: bytes


@dataclass
class Answer:
    """A scripted answer: ``status`` None does what the server would do, then ``headers``
    are added (replacing the server's, Date included) and the answer waits ``delay`` seconds."""

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeMastodon:
    def __init__(self, *, max_characters: int | None = 1000) -> None:
        self.max_characters = max_characters
        self.seen: list[Seen] = []
        self.statuses: list[dict[str, Any]] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self._script: dict[tuple[str, str], deque[Answer]] = {}
        self._lock = threading.Lock()
        self.closing = threading.Event()  # ends the delays when the test is over
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, method: str, path: str, *answers: Answer) -> None:
        """The next answers of ``method path``, in order; then the usual ones again."""
        self._script.setdefault((method, path), deque()).extend(answers)

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == "/api/v1/statuses"]

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if s.method == method and s.path == path)

    @contextmanager
    def running(self) -> Iterator[FakeMastodon]:
        thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.closing.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)

    # --- what the server does ------------------------------------------------------------------

    def answer(self, seen: Seen) -> tuple[int, Any, dict[str, str], float]:
        with self._lock:
            self.seen.append(seen)
            queued = self._script.get((seen.method, seen.path))
            scripted = queued.popleft() if queued else Answer()
            if scripted.status is not None:
                return scripted.status, scripted.body, scripted.headers, scripted.delay
            status, body = self._usual(seen)
            return status, body, scripted.headers, scripted.delay

    def _usual(self, seen: Seen) -> tuple[int, Any]:
        route = (seen.method, seen.path)
        if route == ("GET", "/api/v2/instance"):
            if self.max_characters is None:
                return 404, {"error": "Record not found"}
            config = {"statuses": {"max_characters": self.max_characters}}
            return 200, {"domain": DOMAIN, "title": "Social", "configuration": config}
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "The access token is invalid"}
        if route == ("GET", "/api/v1/accounts/verify_credentials"):
            return 200, {"id": "7", "username": USERNAME, "acct": USERNAME}
        if route == ("POST", "/api/v1/statuses"):
            key = seen.headers.get("idempotency-key")
            if key is not None and key in self._by_key:
                return 200, self._by_key[key]
            number = str(len(self.statuses) + 1)
            status = {
                "id": number,
                "url": f"https://{DOMAIN}/@{USERNAME}/{number}",
                "content": seen.form.get("status", ""),
                "in_reply_to_id": seen.form.get("in_reply_to_id"),
                "language": seen.form.get("language"),
                "visibility": seen.form.get("visibility", "public"),
            }
            self.statuses.append(status)
            if key is not None:
                self._by_key[key] = status
            return 200, status
        return 404, {"error": "Record not found"}


def _handler(fake: FakeMastodon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.headers.get("Content-Type", "")
            form: dict[str, str] = {}
            if kind.startswith("application/json"):
                form = json.loads(body.decode("utf-8"))
            elif body:
                fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
                form = {name: values[-1] for name, values in fields.items()}
            seen = Seen(
                method=self.command,
                path=urlsplit(self.path).path.rstrip("/"),  # Mastodon.py asks for ".../instance/"
                headers={k.lower(): v for k, v in self.headers.items()},
                form=form,
                body=body,
            )
            status, answer, extra, delay = fake.answer(seen)
            if delay and fake.closing.wait(delay):
                return  # the test is over
            data = b"" if answer is None else json.dumps(answer).encode("utf-8")
            headers = {
                "Date": formatdate(usegmt=True),
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(data)),
                **extra,
            }
            try:
                self.send_response_only(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up waiting
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
