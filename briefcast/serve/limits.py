"""What one connection may cost ``briefcast serve``: uvicorn's HTTP protocol (httptools) with
the limits uvicorn leaves out, each one of ``[serve]``'s settings.

uvicorn bounds neither the time a client takes to finish its request's head nor the head's
size (httptools buffers a header of any length), so a few hundred clients that never finish
a header hold their connections for ever, and one 60 MB header is read and answered. Here,
as nginx does it (the most trusted server in front of apps like this one):

- the head (request line and headers) must be complete ``header_timeout_seconds`` after the
  connection opens or the request's first byte arrives (nginx ``client_header_timeout``),
  else 408 and the connection is closed;
- the head may be ``max_header_bytes`` long (nginx ``large_client_header_buffers``), else
  431 (RFC 6585) and closed, counted while it arrives, before httptools buffers more;
- a body's bytes may not stop coming for ``body_timeout_seconds`` (nginx
  ``client_body_timeout``), else 408 and closed: a body sent a byte now and then would hold
  its connection for ever, as a slow head did;
- a body may be ``max_body_bytes`` long (nginx ``client_max_body_size``): a larger
  Content-Length is refused with 413 before the app runs, a chunked body when it passes
  the bound;
- one client address may hold ``max_connections_per_client`` connections at once (nginx's
  ``limit_conn``): the next ones get 503 and are closed, so one address cannot take every
  slot of ``max_connections`` (uvicorn's ``limit_concurrency``, which answers 503 too).

uvicorn runs this class in each worker (``http=``); :func:`configure` gives it the limits,
from the settings the worker read (:func:`briefcast.serve.worker_app`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from briefcast.config import ServeSettings

__all__ = ["LimitedHttpTools", "Limits", "configure"]


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_header_bytes: int
    max_body_bytes: int
    body_timeout: float
    per_client: int  # 0: no cap (behind a proxy, every connection is the proxy's)

    @classmethod
    def of(cls, serve: ServeSettings) -> Limits:
        return cls(
            header_timeout=serve.header_timeout_seconds,
            max_header_bytes=serve.max_header_bytes,
            max_body_bytes=serve.max_body_bytes,
            body_timeout=serve.body_timeout_seconds,
            per_client=0 if serve.trust_proxy else serve.max_connections_per_client,
        )


_limits = Limits.of(ServeSettings())
_per_client: Counter[str] = Counter()  # open connections per client address, this worker

LINGER_SECONDS = 5.0  # nginx's lingering_timeout
_REASONS = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def configure(serve: ServeSettings) -> None:
    """The limits of the connections this process accepts from now on."""
    global _limits
    _limits = Limits.of(serve)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request already answered."""


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the limits above."""

    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _reading_head = True
    _head_bytes = 0
    _body_bytes = 0
    _address = ""
    _lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.limits = _limits
        self._address = self.client[0] if self.client else ""
        _per_client[self._address] += 1
        if self.limits.per_client and _per_client[self._address] > self.limits.per_client:
            self._refuse(503)
            return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        _per_client[self._address] -= 1
        if _per_client[self._address] <= 0:
            del _per_client[self._address]  # the counter stays as small as what is open
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing() or self._lingering:
            return  # answered: what else comes is dropped
        if self._reading_head:
            # httptools buffers a header until its end and says nothing before: count what
            # arrives while the head is unfinished (on_headers_complete starts again at 0).
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._reading_head
            and self._head_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()  # not answered already (a 400, a 431)
        ):
            self._refuse(431)  # httptools held at most the bound and one read (256 KiB)

    def send_400_response(self, msg: str) -> None:
        if not (self.transport.is_closing() or self._lingering):  # not over an answer given
            super().send_400_response(msg)

    # --- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._body_bytes = 0
        if self._head_timer is None:  # a kept-alive connection's next request
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        # What arrived in this read after the head is not the head: count the head itself.
        head = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if head > self.limits.max_header_bytes:
            self._refuse(431)
            raise _Refused
        self._reading_head = False
        self._head_bytes = 0
        self._stop_head_timer()
        for name, value in self.headers:
            if (
                name == b"content-length"
                and value.isdigit()
                and int(value) > self.limits.max_body_bytes
            ):
                self._refuse(413, linger=True)
                raise _Refused
        super().on_headers_complete()
        self._start_body_timer()  # until the body's end (at once, when there is none)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:  # chunked: no length said first
            cycle = self.cycle
            started = cycle is not None and cycle.response_started
            if cycle is not None:
                cycle.disconnected = True  # the app's reads end, its answer goes nowhere
                cycle.message_event.set()
            if started:
                self.transport.close()
            else:
                self._refuse(413, linger=True)
            raise _Refused
        self._start_body_timer()  # between two reads, as nginx counts it
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_body_timer()
        super().on_message_complete()
        self._reading_head = True  # what comes next is the next request's head

    # --- helpers ---------------------------------------------------------------------------

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        _cancel(self._head_timer)
        self._head_timer = None

    def _start_body_timer(self) -> None:
        self._stop_body_timer()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_too_slow)

    def _stop_body_timer(self) -> None:
        _cancel(self._body_timer)
        self._body_timer = None

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        started = cycle is not None and cycle.response_started
        if cycle is not None:
            cycle.disconnected = True  # the app, waiting for the body, sees the client gone
            cycle.message_event.set()
        if started:
            self.transport.close()
        else:
            self._refuse(408)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(408)
        else:  # a pipelined head behind an answer still going: no 408 in its middle
            self.transport.close()

    def _refuse(self, status: int, linger: bool = False) -> None:
        """Answer ``status`` without the app and close the connection; with ``linger``,
        after reading and dropping what the client still sends, for up to LINGER_SECONDS:
        closing a socket with unread data resets it, and the client, still sending its
        body, would never read the answer (nginx's lingering_close, lingering_timeout)."""
        self._stop_head_timer()
        self._stop_body_timer()
        reason = _REASONS[status]
        self.logger.warning(
            "refused a connection from %s: %d %s", self._address, status, reason.decode()
        )
        body = reason + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        if linger:
            self._lingering = True
            self.flow.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()
