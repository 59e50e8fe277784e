"""An HTTP server on loopback that answers every request badly, as a hostile or broken API
might: ``trickle`` sends a 200 with a small JSON body one byte at a time (each byte within any
per-read timeout, the whole far beyond one); ``huge`` sends a 200 whose body runs to
``huge_bytes`` without a Content-Length (read until the connection closes). Every network's
poster can be pointed at it (its ``api_url``): what is asked does not matter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
TRICKLE_BODY = b'{"data": {"id": "1", "username": "desk"}, "padding": "' + b"x" * 60 + b'"}'


@contextmanager
def slow_server(
    mode: str, *, byte_every: float = 0.25, huge_bytes: int = 200 << 20
) -> Iterator[dict[str, Any]]:
    """The server (``trickle`` or ``huge``) on a free port: ``info["url"]``, and
    ``info["requests"]`` counts what it was asked."""
    stop = threading.Event()
    info: dict[str, Any] = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            info["requests"] += 1
            self.close_connection = True
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if mode == "trickle":
                    self.send_header("Content-Length", str(len(TRICKLE_BODY)))
                    self.end_headers()
                    for i in range(len(TRICKLE_BODY)):
                        if stop.wait(byte_every):
                            return
                        self.wfile.write(TRICKLE_BODY[i : i + 1])
                        self.wfile.flush()
                else:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b'{"data": {"padding": "')
                    chunk = b"x" * (1 << 16)
                    for _ in range(huge_bytes // len(chunk)):
                        if stop.is_set():
                            return
                        self.wfile.write(chunk)
                    self.wfile.write(b'"}}')
            except OSError:
                pass  # the client gave up: what a bound should make it do

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    info["url"] = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield info
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
