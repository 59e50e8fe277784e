"""Talking to the relay: a pool of reused smtplib connections, paced, with honest outcomes.

Each connection sends one message at a time (one recipient per transaction, since each message
is personal) and keeps track of how far it got, because that decides what a failure means:

- nothing of the message sent yet (connect, MAIL, RCPT, DATA command, or the body itself not
  sent in full): the relay cannot have it, so reconnect and try again;
- the body and its final "." sent, but no reply: the relay may have it -> ``unknown``;
- a reply: 2xx sent, 4xx deferred, 5xx bounced (5xx to MAIL FROM is about us, not the
  recipient: that stops the run).
"""

from __future__ import annotations

import logging
import queue
import smtplib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, NamedTuple, Protocol, TypeVar

from briefcast.config import SmtpSettings

log = logging.getLogger(__name__)

# Waits before each reconnect when a connection drops before the message went out.
RECONNECT_DELAYS = (0.1, 0.5, 2.0)
J = TypeVar("J")


class Result(NamedTuple):
    # sent | deferred | bounced | unknown: what the relay did (or may have done);
    # failed: the message could not be made (bad address), never sent;
    # unsent: handed back, nothing went out; fatal: handed back, and the run must stop.
    status: str
    reply: str = ""
    hard: bool = False  # a 5xx about the recipient: counts towards their hard bounces


class SmtpFatal(Exception):
    """A failure that every message would meet (login refused, sender refused, TLS)."""


class RelayUnreachable(Exception):
    """No connection of the pool could reach the relay."""


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


class Connection:
    """One smtplib connection, opened on first use and reused for message after message."""

    def __init__(
        self, settings: SmtpSettings, *, timeout: float, helo: str, password: str | None
    ) -> None:
        self._settings = settings
        self._timeout = timeout
        self._helo = helo
        self._password = password
        self._smtp: smtplib.SMTP | None = None
        self._pipelining = False
        self._smtputf8 = False

    @property
    def is_open(self) -> bool:
        return self._smtp is not None and self._smtp.sock is not None

    def open(self) -> None:
        s = self._settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.tls:
            smtp = smtplib.SMTP_SSL(
                s.host, s.port, local_hostname=self._helo, timeout=self._timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, local_hostname=self._helo, timeout=self._timeout)
        try:
            # Commands are small writes followed by a read: don't let Nagle hold them back.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo_or_helo_if_needed()
            if s.starttls and not s.tls:
                if not smtp.has_extn("starttls"):
                    raise SmtpFatal(f"{s.host}:{s.port} offers no STARTTLS (smtp.starttls)")
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.user:
                if not self._password:
                    raise SmtpFatal("smtp.user is set but BRIEFCAST_SMTP__PASSWORD is not")
                smtp.login(s.user, self._password)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
            smtp.close()
            raise SmtpFatal(f"{s.host}:{s.port}: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:  # does not get better by retrying
            smtp.close()
            raise SmtpFatal(f"{s.host}:{s.port}: TLS certificate refused: {exc}") from exc
        except BaseException:
            smtp.close()
            raise
        _kernel_timeouts(smtp.sock, self._timeout)
        self._smtp = smtp
        self._pipelining = smtp.has_extn("pipelining")
        self._smtputf8 = smtp.has_extn("smtputf8")

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.sock is not None:
                smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            smtp.close()

    def drop(self) -> None:
        """Close without QUIT: the session is in an unknown state."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def send(
        self, sender: str, recipient: str, data: bytes, ready: Callable[[], None] = lambda: None
    ) -> Result:
        """One message: ``data`` is the DATA payload, dot-stuffed and ending ``.\\r\\n``.

        ``ready()`` blocks until the ledger holds the message as ``sending``; it is called
        just before the body goes, so the claim (submitted before the commands) has had the
        commands' round trip to be committed along with other connections'. If it raises,
        the body is never sent.
        """
        smtp = self._smtp
        assert smtp is not None, "open() first"
        utf8 = not recipient.isascii()
        if utf8 and not self._smtputf8:
            return Result("failed", "the relay does not offer SMTPUTF8 for a non-ASCII address")
        commands = [
            f"MAIL FROM:<{sender}>{' SMTPUTF8' if utf8 else ''}",
            f"RCPT TO:<{recipient}>",
            "DATA",
        ]
        replies: list[tuple[int, bytes]] = []
        try:
            if self._pipelining:  # RFC 2920: one round trip instead of three
                smtp.send("".join(f"{c}\r\n" for c in commands).encode())
                replies = [smtp.getreply() for _ in commands]
            else:
                for command in commands:
                    smtp.send(f"{command}\r\n".encode())
                    replies.append(smtp.getreply())
                    if replies[-1][0] >= 400:
                        break
        except OSError as exc:  # smtplib's errors are OSErrors too
            self.drop()
            return Result("retry", f"connection lost before the message was sent: {exc}")

        refused = next(
            (
                (stage, code, text)
                for stage, (code, text) in zip(("mail", "rcpt"), replies, strict=False)
                if code >= 300
            ),
            None,
        )
        data_code, data_text = replies[2] if len(replies) == 3 else (0, b"")
        if refused is not None or data_code != 354:
            return self._refused(refused or ("data", data_code, data_text), data_code)

        self._ready(ready)
        try:
            smtp.send(data)
        except OSError as exc:
            # The final "." is at the very end: if the send broke, it did not go out, and a
            # relay never keeps a message whose end it did not see.
            self.drop()
            return Result("retry", f"connection lost while sending the message: {exc}")
        try:
            code, text = smtp.getreply()
        except OSError as exc:
            self.drop()
            return Result("unknown", f"connection lost after the message was sent: {exc}")
        reply = _reply(code, text)
        if 200 <= code < 300:
            return Result("sent", reply)
        if code == 421:
            self.drop()
        if 400 <= code < 500:
            return Result("deferred", reply)
        if 500 <= code < 600:
            return Result("bounced", reply, hard=True)
        self.drop()
        return Result("unknown", f"unexpected reply after the message was sent: {reply}")

    def _ready(self, ready: Callable[[], None]) -> None:
        try:
            ready()
        except BaseException:
            self.drop()  # mid-transaction with no body: hanging up is the only clean way out
            raise

    def _refused(self, refused: tuple[str, int, bytes], data_code: int) -> Result:
        """The relay said no before the body: tidy the session up and say what it means."""
        stage, code, text = refused
        reply = _reply(code, text)
        smtp = self._smtp
        assert smtp is not None
        try:
            if data_code == 354:  # a pipelining relay that took DATA after refusing: end it
                smtp.send(b".\r\n")
                smtp.getreply()
            if code != 421:
                smtp.rset()
        except OSError:
            self.drop()
        if code == 421:  # the relay is closing this connection
            self.drop()
        if code < 0 or code >= 600 or 200 <= code < 400:
            self.drop()
            return Result("retry", f"unexpected reply at {stage}: {reply}")
        if code < 500:
            return Result("deferred", reply)
        if stage == "mail":
            return Result("fatal", f"the relay refused the sender: {reply}")
        return Result("bounced", reply, hard=True)


class RateLimiter:
    """At most ``per_second`` messages, evenly spaced, over all connections together."""

    def __init__(self, per_second: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def acquire(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)  # no credit piles up while idle: no bursts
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


class HourlyCap:
    """At most ``cap`` messages in any rolling ``window`` seconds (an hour).

    Counts per minute, not per message, so memory stays small at any cap; it rounds the
    safe way (a message leaves the count a full window after it was sent, or later).
    """

    def __init__(
        self,
        cap: int,
        *,
        window: float = 3600.0,
        buckets: int = 60,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cap = cap
        self._width = window / buckets
        self._buckets = buckets
        self._counts: dict[int, int] = {}
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def seed(self, times: Iterable[float]) -> None:
        """Messages sent before this run (the relay counted them too)."""
        with self._lock:
            for when in times:
                key = int(when // self._width)
                self._counts[key] = self._counts.get(key, 0) + 1

    def used(self) -> int:
        with self._lock:
            self._expire(int(self._clock() // self._width))
            return sum(self._counts.values())

    def _expire(self, current: int) -> None:
        for key in [k for k in self._counts if k < current - self._buckets]:
            del self._counts[key]

    def acquire(self, before_waiting: Callable[[], None] | None = None) -> None:
        """Take a slot, waiting for one if need be (calling ``before_waiting`` first)."""
        if not self.cap:
            return
        while True:
            with self._lock:
                now = self._clock()
                current = int(now // self._width)
                self._expire(current)
                if sum(self._counts.values()) < self.cap:
                    self._counts[current] = self._counts.get(current, 0) + 1
                    return
                wake = (min(self._counts) + self._buckets + 1) * self._width
            log.info("hourly cap of %d reached: waiting %.0f s", self.cap, wake - now)
            if before_waiting is not None:
                before_waiting()
                before_waiting = None
            self._sleep(max(0.01, wake - now))


class Handler(Protocol[J]):
    """What the pool needs from its user: the bytes of a job, and a durable record."""

    def message(self, job: J) -> tuple[str, bytes]:
        """The recipient and the DATA payload; ValueError if it cannot be sent at all."""
        ...

    def record(self, done: tuple[J, Result] | None, claim: J | None) -> Callable[[], None]:
        """Start making the last outcome and the next claim durable, together; the returned
        function blocks until they are (and raises if they cannot be)."""
        ...


_STOP = object()


class Pool(Generic[J]):
    """N connections, each in its own thread (the work is waiting on sockets), fed from one
    bounded queue so that however many jobs there are, few are in memory at once."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        sender: str,
        size: int,
        timeout: float,
        password: str | None,
        limiter: RateLimiter | None = None,
        cap: HourlyCap | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backlog: int = 1000,
    ) -> None:
        helo = sender.rpartition("@")[2] or "localhost"  # not getfqdn(): it can hang on DNS
        self.connections = [
            Connection(settings, timeout=timeout, helo=helo, password=password) for _ in range(size)
        ]
        self._address = f"{settings.host}:{settings.port}"
        self._sender = sender
        self._limiter = limiter or RateLimiter(0)
        self._cap = cap or HourlyCap(0)
        self._sleep = sleep
        self._backlog = backlog
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._unreachable: str | None = None

    def close(self) -> None:
        for conn in self.connections:
            conn.close()

    def __enter__(self) -> Pool[J]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, jobs: Iterable[J], handler: Handler[J]) -> None:
        """Send every job; returns when all are settled and recorded. Raises SmtpFatal,
        RelayUnreachable, or whatever stopped a worker (a ledger failure)."""
        self._stop.clear()
        self._error = None
        self._unreachable = None
        work: queue.SimpleQueue[object] = queue.SimpleQueue()  # bounded by _put
        threads = [
            threading.Thread(target=self._work, args=(c, work, handler), name=f"smtp-{i}")
            for i, c in enumerate(self.connections)
        ]
        for t in threads:
            t.start()
        starved = False  # jobs were left with no connection alive to take them
        try:
            for job in jobs:
                if not self._put(work, job, threads):
                    starved = not self._stop.is_set()
                    break
        except BaseException:  # Ctrl-C, a database error: finish the messages in hand only
            self._stop.set()
            raise
        finally:
            for _ in threads:
                self._put(work, _STOP, threads)
            for t in threads:
                t.join()
        if self._error is not None:
            raise self._error
        left = [item for item in _drain(work) if item is not _STOP]
        if self._unreachable is not None and (starved or left):
            raise RelayUnreachable(f"cannot reach {self._address}: {self._unreachable}")

    def _put(
        self, work: queue.SimpleQueue[object], item: object, threads: list[threading.Thread]
    ) -> bool:
        # Not a blocking put: that would wake this thread at every get() once the queue is
        # full, a context switch per message. Top it up a few hundred times a second instead.
        while not self._stop.is_set():
            if work.qsize() < self._backlog:
                work.put_nowait(item)
                return True
            if not any(t.is_alive() for t in threads):
                return False
            self._sleep(0.005)
        return False

    def _get(self, work: queue.SimpleQueue[object]) -> object:
        while not self._stop.is_set():
            try:
                return work.get(timeout=0.1)
            except queue.Empty:
                continue
        return _STOP

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._stop.set()

    def _work(self, conn: Connection, work: queue.SimpleQueue[object], handler: Handler[J]) -> None:
        done: tuple[J, Result] | None = None
        durable: Callable[[], None] = _nothing  # waits for this worker's last record

        def record(claim: J | None) -> None:
            nonlocal done, durable
            durable()  # in order: a claim is committed before its outcome is submitted
            durable = handler.record(done, claim)
            done = None

        def flush() -> None:
            record(None)
            durable()

        try:
            while not self._stop.is_set():
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    flush()  # idle: the last outcome durable now, not with the next claim
                    item = self._get(work)
                if item is _STOP:
                    break
                job: J = item  # type: ignore[assignment]
                try:
                    recipient, data = handler.message(job)
                except ValueError as exc:
                    record(None)
                    done = (job, Result("failed", str(exc)))
                    continue
                self._cap.acquire(before_waiting=flush)  # a long wait: record the last first
                self._limiter.acquire()
                record(job)  # the body waits for this claim (see Connection.send)
                result = self._attempt(conn, recipient, data, durable)
                done = (job, result)
                if result.status == "fatal":
                    self._fail(SmtpFatal(result.reply))
                elif result.status == "unsent":
                    # This connection cannot reach the relay; the others carry on, if any can.
                    self._unreachable = result.reply
                    break
        except BaseException as exc:
            self._fail(exc)
        finally:
            try:
                flush()
            except BaseException as exc:
                self._fail(exc)

    def _attempt(
        self, conn: Connection, recipient: str, data: bytes, ready: Callable[[], None]
    ) -> Result:
        last = ""
        for delay in (*RECONNECT_DELAYS, None):
            if not conn.is_open:
                try:
                    conn.open()
                except SmtpFatal as exc:
                    return Result("fatal", str(exc))
                except OSError as exc:  # refused, timed out, 421 on connect, ...
                    last = f"cannot connect: {exc}"
                    if delay is None:
                        return Result("unsent", last)
                    self._sleep(delay)
                    continue
            result = conn.send(self._sender, recipient, data, ready)
            if result.status != "retry":
                return result
            last = result.reply
            if delay is not None:
                self._sleep(delay)
        return Result("deferred", f"connection kept failing: {last}")


def _kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Blocking socket, timeouts kept by the kernel (SO_RCVTIMEO/SO_SNDTIMEO): Python's own
    timeout mode polls before every send and receive, which doubles the system calls (and
    the GIL hand-offs) per message. A timed-out call still raises an OSError."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:  # not this platform's timeval: keep Python's timeouts
        return
    sock.settimeout(None)


def _nothing() -> None:
    return None


def _drain(work: queue.SimpleQueue[object]) -> list[object]:
    items = []
    while True:
        try:
            items.append(work.get_nowait())
        except queue.Empty:
            return items
