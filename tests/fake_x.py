"""X's API v2 on loopback, just enough for the poster, over real HTTP: ``GET /2/users/me``
and ``POST /2/tweets``, each request's OAuth 1.0a signature checked for the URL it reached.

A tweet is created as X does (an id, the reply's parent kept), and refused as X does when its
text is one this user already has (403 "duplicate content"). A test scripts the next answers
of ``POST /2/tweets`` with ``script`` (a status, headers, a body; ``posted``: given after the
tweet was made) or holds the n-th one with
``hold`` (read, counted and never answered: a request in flight when its sender is killed).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header

HOST = "127.0.0.1"
HOLD_SECONDS = 60.0  # the longest a held request is kept (the fake's stop ends it sooner)
CREDENTIALS = {
    "API_KEY": "consumer-key",
    "API_SECRET": "consumer-secret",
    "ACCESS_TOKEN": "1-access-token",
    "ACCESS_SECRET": "access-secret",
}
DUPLICATE = {
    "detail": "You are not allowed to create a Tweet with duplicate content.",
    "type": "about:blank",
    "title": "Forbidden",
    "status": 403,
}
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": ""}


def environ(account: str = "desk-x", **changes: str | None) -> dict[str, str]:
    """The account's BRIEFCAST_SOCIAL_<NAME>_<KEY> variables for this fake (None: unset)."""
    prefix = f"BRIEFCAST_SOCIAL_{account.upper().replace('-', '_')}_"
    values: dict[str, str | None] = {**CREDENTIALS, **changes}
    return {prefix + key: value for key, value in values.items() if value is not None}


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    posted: bool = False  # a scripted answer given after the tweet was made (a proxy's 502)


@dataclass
class Tweet:
    id: str
    text: str
    in_reply_to: str | None


@dataclass
class FakeX:
    username: str = "desk"
    credentials: dict[str, str] = field(default_factory=lambda: dict(CREDENTIALS))
    url: str = ""
    tweets: list[Tweet] = field(default_factory=list)
    posts_received: int = 0  # POST /2/tweets requests that were signed right
    held: threading.Event = field(default_factory=threading.Event)  # the held one arrived
    _script: deque[Answer] = field(default_factory=deque)
    _hold: set[int] = field(default_factory=set)
    _refuse: dict[int, Answer] = field(default_factory=dict)
    refused: threading.Event = field(default_factory=threading.Event)  # a refusal was given
    _stop: threading.Event = field(default_factory=threading.Event)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1_000_001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *answers: Answer) -> None:
        """The next POST /2/tweets get these answers, in order, before the usual ones."""
        with self._lock:
            self._script.extend(answers)

    def hold(self, n: int) -> None:
        """The n-th POST /2/tweets (counting from 1) is never answered."""
        self._hold.add(n)

    def refuse(self, n: int, answer: Answer) -> None:
        """The n-th POST /2/tweets (counting from 1) gets ``answer`` (nothing is posted)."""
        self._refuse[n] = answer

    def seed(self, text: str) -> Tweet:
        """A tweet this user already has (posted by an attempt whose answer was lost)."""
        with self._lock:
            tweet = Tweet(str(next(self._ids)), text, None)
            self.tweets.append(tweet)
        return tweet

    def delete(self, tweet: Tweet) -> None:
        with self._lock:
            self.tweets.remove(tweet)

    def signed(self, method: str, url: str, header: str | None) -> bool:
        """Whether ``header`` is this user's OAuth 1.0a signature of ``method url``."""
        if not header or not header.startswith("OAuth "):
            return False
        params = dict(parse_authorization_header(header))
        c = self.credentials
        if (params.get("oauth_consumer_key"), params.get("oauth_token")) != (
            c["API_KEY"],
            c["ACCESS_TOKEN"],
        ):
            return False
        client = Client(
            c["API_KEY"],
            client_secret=c["API_SECRET"],
            resource_owner_key=c["ACCESS_TOKEN"],
            resource_owner_secret=c["ACCESS_SECRET"],
            nonce=params.get("oauth_nonce"),
            timestamp=params.get("oauth_timestamp"),
        )
        _, headers, _ = client.sign(url, http_method=method)
        expected = dict(parse_authorization_header(headers["Authorization"]))
        return expected["oauth_signature"] == params.get("oauth_signature")

    def create(self, body: dict[str, Any]) -> Answer | None:
        """What POST /2/tweets answers (None: hold it)."""
        with self._lock:
            self.posts_received += 1
            if self.posts_received in self._hold:
                self.held.set()
                return None
            if self.posts_received in self._refuse:
                self.refused.set()
                return self._refuse[self.posts_received]
            scripted = self._script.popleft() if self._script else None
            if scripted is not None and not scripted.posted:
                return scripted
            text = body["text"]
            if any(t.text == text for t in self.tweets):
                return Answer(403, DUPLICATE)
            parent = (body.get("reply") or {}).get("in_reply_to_tweet_id")
            if parent is not None and not any(t.id == parent for t in self.tweets):
                return Answer(400, {"title": "Invalid Request", "detail": "no such tweet"})
            tweet = Tweet(str(next(self._ids)), text, parent)
            self.tweets.append(tweet)
            if scripted is not None:
                return scripted
        data = {"id": tweet.id, "text": text, "edit_history_tweet_ids": [tweet.id]}
        return Answer(201, {"data": data})


def _handler(fake: FakeX) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = f"http://{self.headers['Host']}{self.path}"
            if not fake.signed(self.command, url, self.headers.get("Authorization")):
                self._answer(Answer(401, UNAUTHORIZED))
            elif (self.command, self.path) == ("GET", "/2/users/me"):
                user = {"id": "42", "name": "The Desk", "username": fake.username}
                self._answer(Answer(200, {"data": user}))
            elif (self.command, self.path) == ("POST", "/2/tweets"):
                answer = fake.create(json.loads(raw))
                if answer is None:
                    fake._stop.wait(HOLD_SECONDS)
                    self.close_connection = True
                    return
                self._answer(answer)
            else:
                self._answer(Answer(404, {"title": "Not Found Error", "status": 404}))

        def _answer(self, answer: Answer) -> None:
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def fake_x(username: str = "desk") -> Iterator[FakeX]:
    """X on a free loopback port; ``fake.url`` is the account's ``api_url``."""
    fake = FakeX(username)
    server = ThreadingHTTPServer((HOST, 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake._stop.set()
        server.shutdown()
        server.server_close()
