"""A fake Bluesky PDS on loopback: just enough XRPC for a poster, over real HTTP.

It serves ``com.atproto.server.createSession`` (an app password's session: JWTs that atproto
decodes for their expiry), ``refreshSession``, ``getSession``, ``app.bsky.actor.getProfile``
and ``com.atproto.repo.createRecord`` (each body kept in ``records``). A test scripts what a
method answers next with ``fail`` (a status, headers, an XRPC error) or ``stall`` (the request
is read, kept, and never answered until the fake stops).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
STALL_SECONDS = 10.0  # the longest a stalled request is held (the fake's stop ends it sooner)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT: atproto reads the payload, nobody checks the signature."""
    return f"{_b64({'alg': 'HS256', 'typ': 'at+jwt'})}.{_b64(claims)}.c2lnbmF0dXJl"


@dataclass
class Scripted:
    status: int = 0  # 0: stall
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    message: str = ""
    written: bool = False  # createRecord: the record is written, then this is answered


@dataclass
class FakePds:
    handle: str
    password: str
    url: str = ""
    did: str = DID
    records: list[dict[str, Any]] = field(default_factory=list)  # createRecord bodies
    calls: list[str] = field(default_factory=list)  # every method asked, in order
    sessions: int = 0  # sessions created
    script: dict[str, list[Scripted]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    _tokens: set[str] = field(default_factory=set)
    _rkeys: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self,
        method: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        error: str = "",
        message: str = "",
        written: bool = False,
    ) -> None:
        """The next call of ``method`` answers ``status`` (and an XRPC error body); with
        ``written``, after the record was written (a proxy's 502 over a PDS that wrote it)."""
        answer = Scripted(status, headers or {}, error or f"Error{status}", message, written)
        self.script.setdefault(method, []).append(answer)

    def stall(self, method: str) -> None:
        """The next call of ``method`` is read in full, kept, and never answered."""
        self.script.setdefault(method, []).append(Scripted())

    def scripted(self, method: str) -> Scripted | None:
        with self._lock:
            queue = self.script.get(method)
            return queue.pop(0) if queue else None

    def new_session(self) -> dict[str, Any]:
        now = int(time.time())
        with self._lock:
            self.sessions += 1
            n = self.sessions
        access = jwt(
            {"scope": "com.atproto.appPass", "sub": self.did, "iat": now, "exp": now + 7200}
        )
        refresh = jwt({"scope": "com.atproto.refresh", "sub": self.did, "jti": f"r{n}"})
        self._tokens.add(access)
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "did": self.did,
            "handle": self.handle,
            "active": True,
        }

    def authorized(self, header: str | None) -> bool:
        return header is not None and header.removeprefix("Bearer ") in self._tokens

    def revoke_sessions(self) -> None:
        self._tokens.clear()

    def created(self, body: dict[str, Any]) -> dict[str, str]:
        with self._lock:
            self.records.append(body)
            rkey = f"3lbr{next(self._rkeys):09d}"
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
        cid = "bafyrei" + base64.b32encode(digest).decode().lower().rstrip("=")
        return {"uri": f"at://{body['repo']}/{body['collection']}/{rkey}", "cid": cid}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._xrpc()

    def do_POST(self) -> None:
        self._xrpc()

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _xrpc(self) -> None:
        fake = self.server.fake
        method = self.path.split("?", 1)[0].removeprefix("/xrpc/")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        fake.calls.append(method)
        scripted = fake.scripted(method)
        if scripted is not None and not scripted.status:
            if method == "com.atproto.repo.createRecord":
                fake.created(body)  # the PDS wrote it; the answer never comes
            fake.stop.wait(STALL_SECONDS)
            self.close_connection = True
            return
        if scripted is not None:
            if scripted.written and method == "com.atproto.repo.createRecord":
                fake.created(body)
            error = {"error": scripted.error, "message": scripted.message or scripted.error}
            self._answer(scripted.status, error, scripted.headers)
            return
        if method == "com.atproto.server.createSession":
            ok = body.get("identifier") == fake.handle and body.get("password") == fake.password
            if not ok:
                said = "Invalid identifier or password"
                self._answer(401, {"error": "AuthenticationRequired", "message": said})
                return
            self._answer(200, fake.new_session())
            return
        if method == "com.atproto.server.refreshSession":
            self._answer(200, fake.new_session())
            return
        if not fake.authorized(self.headers.get("Authorization")):
            self._answer(400, {"error": "ExpiredToken", "message": "Token has expired"})
            return
        if method == "com.atproto.server.getSession":
            self._answer(200, {"did": fake.did, "handle": fake.handle, "active": True})
        elif method == "app.bsky.actor.getProfile":
            self._answer(200, {"did": fake.did, "handle": fake.handle})
        elif method == "com.atproto.repo.createRecord":
            record = body.get("record", {})
            valid = (
                body.get("repo") == fake.did
                and body.get("collection") == "app.bsky.feed.post"
                and record.get("$type") == "app.bsky.feed.post"
                and isinstance(record.get("text"), str)
                and "createdAt" in record
            )
            if not valid:
                self._answer(
                    400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record"}
                )
                return
            self._answer(200, fake.created(body))
        else:
            self._answer(
                501, {"error": "MethodNotImplemented", "message": "Method Not Implemented"}
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakePds


@contextmanager
def fake_pds(
    handle: str = "desk.example.org", password: str = "abcd-efgh-ijkl-mnop"
) -> Iterator[FakePds]:
    """A fake PDS on a free loopback port, stopped (stalled requests released) on exit."""
    fake = FakePds(handle=handle, password=password)
    server = _Server((HOST, 0), _Handler)
    server.fake = fake
    fake.url = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
