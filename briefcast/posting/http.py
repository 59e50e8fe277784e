"""Every social API request bounded as a whole: one deadline for connect, send and read, and
an answer read up to a size bound.

``requests`` (tweepy, Mastodon.py) and ``httpx`` (atproto) take a timeout per socket operation:
a server that trickles one byte every few seconds never trips it, and an answer of any size is
read whole into memory. Both are bounded here, in one place, the way curl's ``--max-time`` and
``--max-filesize`` bound a transfer: a watchdog timer shuts the request's socket down when the
deadline passes (a blocked ``recv`` then returns at once, whatever the phase: TLS handshake,
headers, body), and the body is read in chunks and refused past ``ANSWER_MAX_BYTES``.

What the caller sees is each library's own error, so the posters' classification holds:
``ReadTimeout`` when the deadline passed (after sending: the post may exist), and
``AnswerTooLarge`` (a ``RequestException`` / ``httpx.TransportError``) for an answer over the
bound. Answers are asked for uncompressed (``Accept-Encoding: identity``) so that the bound
is on what is held in memory, not on what a compressed bomb expands to.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpx
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from briefcast.config import SocialSettings

# A social API's answer is a few kB (a post, an account, a Mastodon instance's description
# with its rules): 1 MiB leaves room for any honest one.
ANSWER_MAX_BYTES = 1 << 20
# A whole request's time when the caller gives none: [social] timeout_seconds' default.
DEFAULT_TIMEOUT: float = SocialSettings.model_fields["timeout_seconds"].default
_CHUNK = 16 * 1024


class Deadline:
    """A request's end: ``watch`` the sockets it uses, shut down when the time is up."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left (never zero: a zero timeout means "non-blocking" to sockets)."""
        return max(0.001, self.end - time.monotonic())

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def timed_out(self, seconds: float) -> str:
        return f"no complete answer within {seconds:g} s (timeout_seconds, the whole request)"


def _shut(sock: socket.socket) -> None:
    # shutdown wakes a recv blocked in another thread (close() does not); OSError: already
    # closed, or detached by an ssl wrap (the wrapped socket is watched too)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _over(size: int, limit: int) -> str:
    return f"the answer is larger than {limit:,} bytes ({size:,} or more): not read"


# --- requests (tweepy, Mastodon.py) -------------------------------------------------------------

_active = threading.local()  # the Deadline of the request this thread is making, if any


def _watch(sock: socket.socket | None) -> None:
    deadline: Deadline | None = getattr(_active, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _WatchedConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # before TLS: the handshake is bounded too
        return sock

    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection: connect() is not called again
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        _watch(self.sock)  # the TLS socket (the plain one was detached into it)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class AnswerTooLarge(requests.exceptions.RequestException):
    """The answer was over ``ANSWER_MAX_BYTES``: not read (the request went out)."""


class BoundedAdapter(HTTPAdapter):
    """A transport adapter whose requests end within ``timeout`` seconds, all told, with an
    answer of at most ``max_bytes``; never retried (a POST retried could post twice)."""

    def __init__(self, timeout: float, *, max_bytes: int = ANSWER_MAX_BYTES) -> None:
        super().__init__(max_retries=0)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.last: requests.Response | None = None  # the last answer (its status and headers)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = {"http": _Pool, "https": _HTTPSPool}
        return manager

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        request.headers["Accept-Encoding"] = "identity"
        deadline = Deadline(self.timeout)
        _active.deadline = deadline
        self.last = None
        try:
            kwargs["timeout"] = (deadline.left(), deadline.left())
            kwargs["stream"] = True
            response = super().send(request, **kwargs)
            self.last = response
            try:
                response._content = self._read(response)
                response._content_consumed = True  # type: ignore[attr-defined]
            except BaseException:
                response.close()
                raise
            response.raw.release_conn()
            return response
        except (requests.exceptions.RequestException, Urllib3Error, OSError) as exc:
            # The deadline, or a read timeout a moment before it: one message for both.
            read_timeout = isinstance(exc, requests.exceptions.ReadTimeout | ReadTimeoutError)
            if deadline.expired or read_timeout:
                raise requests.exceptions.ReadTimeout(
                    deadline.timed_out(self.timeout), request=request
                ) from exc
            raise
        finally:
            _active.deadline = None
            deadline.cancel()

    def _read(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise AnswerTooLarge(_over(int(declared), self.max_bytes), response=response)
        try:
            return _gather(
                iter(lambda: response.raw.read(_CHUNK), b""),
                self.max_bytes,
                lambda size: AnswerTooLarge(_over(size, self.max_bytes), response=response),
            )
        except ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(str(exc), response=response) from exc
        except Urllib3Error as exc:  # cut short: what requests itself says for it
            raise requests.exceptions.ChunkedEncodingError(str(exc), response=response) from exc


def _gather(chunks: Iterable[bytes], limit: int, too_large: Any) -> bytes:
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise too_large(len(data))
    return bytes(data)


def bound_session(session: requests.Session, timeout: float) -> BoundedAdapter:
    """Mount a ``BoundedAdapter`` on ``session`` for every http(s) URL; the adapter."""
    adapter = BoundedAdapter(timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter


# --- httpx (atproto) -----------------------------------------------------------------------------


class HttpxAnswerTooLarge(httpx.TransportError):
    """The answer was over ``ANSWER_MAX_BYTES``: not read (the request went out)."""


_KEPT = ("http_version", "reason_phrase")  # not the network stream: it is closed
_STREAMS = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class BoundedTransport(httpx.BaseTransport):
    """An httpx transport whose requests end within ``timeout`` seconds, all told, with an
    answer of at most ``max_bytes``. Connections are not kept alive: each request opens its
    own, so the watchdog always learns its socket (from httpcore's ``trace`` events)."""

    def __init__(self, timeout: float, *, max_bytes: int = ANSWER_MAX_BYTES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._inner = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        deadline = Deadline(self.timeout)
        traced = request.extensions.get("trace")

        def trace(event: str, info: dict[str, Any]) -> None:
            if event in _STREAMS and info.get("return_value") is not None:
                deadline.watch(info["return_value"].get_extra_info("socket"))
            if traced is not None:
                traced(event, info)

        left = deadline.left()
        timeouts = {
            name: min(value, left) if value is not None else left
            for name, value in dict(request.extensions.get("timeout", {})).items()
        } or dict.fromkeys(("connect", "read", "write", "pool"), left)
        request.extensions = {**request.extensions, "trace": trace, "timeout": timeouts}
        try:
            response = self._inner.handle_request(request)
            try:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise HttpxAnswerTooLarge(_over(int(declared), self.max_bytes))
                data = _gather(
                    response.stream,  # type: ignore[arg-type]
                    self.max_bytes,
                    lambda size: HttpxAnswerTooLarge(_over(size, self.max_bytes)),
                )
            finally:
                response.close()
        except (httpx.TransportError, OSError) as exc:
            if deadline.expired or isinstance(exc, httpx.ReadTimeout):
                raise httpx.ReadTimeout(deadline.timed_out(self.timeout), request=request) from exc
            raise
        finally:
            deadline.cancel()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=data,
            request=request,
            extensions={k: v for k, v in response.extensions.items() if k in _KEPT},
        )

    def close(self) -> None:
        self._inner.close()
