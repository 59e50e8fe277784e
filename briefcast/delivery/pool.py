"""The sending loop: N reused connections driven from one thread, paced, ledger-first.

Each turn of the loop:

1. every connection that is free takes the next job and sends its envelope (MAIL, RCPT,
   DATA);
2. the connections whose relay said 354 claim their message, and everything queued (these
   claims, and the outcomes since the last commit, of every connection) is committed in one
   transaction;
3. their bodies go out, each followed in the same write by the envelope of the connection's
   next message when the relay pipelines, so a message costs one round trip;
4. the loop waits for any socket (or a deadline, a reconnect, the pace) and reads replies;
   each outcome joins the ledger's queue.

So a message's row is ``sending`` before its body goes, its outcome is durable before the
same connection sends another body, and after a crash at most one row per connection is in
doubt. One thread: no lock, no hand-off and no wake-up per message, which is what made a
thread per connection half as fast as the relay.

Except for making DKIM-signed messages: the RSA signature alone (0.22 ms) costs more than
everything else an unsigned message costs this loop, and OpenSSL makes it without holding the
interpreter lock. So, when a key is configured, a few threads make the messages of the jobs
to come (``handler.message``: token, body, signature), a chunk at a time and in order, at
most ``AHEAD`` of them ahead, while the loop sends. Making a message early commits nothing:
its claim is still queued and committed by the loop just before its body goes, as above.
"""

from __future__ import annotations

import logging
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar

from briefcast.config import Settings, SmtpSettings
from briefcast.delivery.pacing import HourlyCap, RateLimiter
from briefcast.delivery.smtp import (
    Connection,
    ConnState,
    RelayUnreachable,
    Result,
    ResultStatus,
    SmtpFatal,
)

log = logging.getLogger(__name__)

# Waits before each reconnect when a connection drops before the message went out.
RECONNECT_DELAYS = (0.1, 0.5, 2.0)
IN_FLIGHT = (ConnState.ENVELOPE, ConnState.READY, ConnState.BODY, ConnState.CLEANUP)
# Signed messages are made ahead by this many threads: the sending loop keeps about a third of
# a CPU busy per 1,000 msg/s, the RSA twice that (0.22 ms a message), so 2 threads keep up
# with the loop on the 2-CPU machines this runs on; more would only compete with the loop
# for the CPUs. A constant, not a setting: nothing to tune per site.
SIGNING_THREADS = 2
AHEAD_CHUNK = 8  # jobs per task: one hand-off per chunk, not per message
AHEAD = 256  # messages made and not yet sent, at most (~20 KB each: ~5 MB)
J = TypeVar("J")
Made = tuple[str, str, bytes]  # handler.message's answer: envelope sender, recipient, DATA
J_contra = TypeVar("J_contra", contravariant=True)


class Ticket(Protocol):
    @property
    def committed(self) -> bool: ...


class Handler(Protocol[J_contra]):
    """What the loop needs from its user: a job's bytes, and a durable record of it."""

    def message(self, job: J_contra) -> tuple[str, str, bytes]:
        """The envelope sender (MAIL FROM: each message may have its own), the recipient
        and the DATA payload; ValueError if it cannot be sent at all. Called ahead of the
        job's turn, from other threads, when the pool makes messages ahead (signed ones)."""
        ...

    def claim(self, job: J_contra) -> Ticket:
        """The job is about to go: queue its claim (its body waits until it is committed)."""
        ...

    def settle(self, job: J_contra, result: Result) -> None:
        """Queue the job's outcome."""
        ...

    @property
    def pending(self) -> bool: ...

    def flush(self) -> None:
        """Commit everything queued, in one transaction; raise if it cannot be."""
        ...


class _Work(Generic[J]):
    """A job taken from the source, with its message made."""

    __slots__ = ("data", "job", "paced", "recipient", "sender", "ticket")

    def __init__(self, job: J, sender: str, recipient: str, data: bytes) -> None:
        self.job = job
        self.sender = sender
        self.recipient = recipient
        self.data = data
        self.ticket: Ticket | None = None  # its claim, once queued
        self.paced = False  # it has its place in the rate and the hourly cap


class _Slot(Generic[J]):
    """A connection, the message it is working on, and the one whose envelope followed that
    message's body (when the relay pipelines)."""

    __slots__ = ("conn", "failures", "next", "retired", "retry_at", "work")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.work: _Work[J] | None = None
        self.next: _Work[J] | None = None
        self.failures = 0  # connects and sessions lost for this message, in a row
        self.retry_at = 0.0  # after a failure: when to reconnect
        self.retired = False  # cannot reach the relay: takes no more jobs

    @property
    def busy(self) -> bool:
        return self.work is not None or self.conn.state in IN_FLIGHT


class Pool(Generic[J]):
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
        make_ahead: int = 0,
    ) -> None:
        """``make_ahead``: threads that make the messages of the jobs to come (0: the loop
        makes each one as it takes its job)."""
        # The From address: its domain is the HELO name (not getfqdn(): it can hang on DNS).
        # Each message's envelope sender comes with it from the handler.
        helo = sender.rpartition("@")[2] or "localhost"
        self._selector = selectors.DefaultSelector()
        self.connections = [
            Connection(settings, self._selector, timeout=timeout, helo=helo, password=password)
            for _ in range(size)
        ]
        self._address = f"{settings.host}:{settings.port}"
        self._limiter = limiter or RateLimiter(0)
        self._cap = cap or HourlyCap(0)
        self._make_ahead = make_ahead
        self._made: Iterator[tuple[J, Made | ValueError]] = iter(())
        self._exhausted = False
        self._stopping = False
        self._fatal: str | None = None
        self._unreachable: str | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, size: int, cap: HourlyCap | None = None
    ) -> Pool[Any]:
        """``size`` connections to the configured relay, paced at ``delivery.rate_per_second``;
        signed messages (a DKIM key is configured) made ahead by SIGNING_THREADS threads."""
        d, smtp = settings.delivery, settings.smtp
        password = smtp.password.get_secret_value() if smtp.password else None
        return cls(
            smtp,
            sender=settings.email.from_address,
            size=size,
            timeout=d.timeout_seconds,
            password=password,
            limiter=RateLimiter(d.rate_per_second),
            cap=cap,
            make_ahead=SIGNING_THREADS if d.dkim_key_path else 0,
        )

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self._selector.close()

    def __enter__(self) -> Pool[J]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self, jobs: Iterable[J], handler: Handler[J], stop: threading.Event | None = None
    ) -> None:
        """Send every job; returns when all are settled and durable. Raises SmtpFatal,
        RelayUnreachable, or whatever the handler raised (a ledger failure). Once ``stop``
        is set, no job starts: those under way finish and are recorded, then it returns."""
        ahead = None
        if self._make_ahead:
            ahead = ThreadPoolExecutor(self._make_ahead, "briefcast-message")
            self._made = _made_ahead(iter(jobs), handler.message, ahead)
        else:
            self._made = ((job, _make(handler.message, job)) for job in jobs)
        self._exhausted = self._stopping = False
        self._fatal = self._unreachable = None
        slots: list[_Slot[J]] = [_Slot(conn) for conn in self.connections]
        by_conn = {id(s.conn): s for s in slots}
        try:
            while True:
                if stop is not None and stop.is_set():
                    self._stopping = True
                now = time.monotonic()
                wake = now + 1.0
                for slot in slots:
                    if slot.retired or slot.conn.state in IN_FLIGHT:
                        continue
                    if slot.work is None:
                        slot.work = self._take(handler)
                    if slot.work is not None:
                        wake = min(wake, self._start(slot, handler, now))
                if not any(s.busy for s in slots) or all(s.retired for s in slots):
                    break
                # Durable before the bodies: commit when a body waits (its claim and the
                # previous outcome of its connection must be in), or when nothing is under
                # way (the loop may wait a while: pace, reconnect).
                ready = [s for s in slots if s.conn.state == ConnState.READY]
                for slot in ready:
                    self._claim(slot, handler)
                if handler.pending and (ready or not any(s.conn.state in IN_FLIGHT for s in slots)):
                    handler.flush()
                for slot in ready:
                    self._send_body(slot, handler)
                deadlines = [s.conn.deadline for s in slots if s.conn.state in IN_FLIGHT]
                wake = min(wake, *deadlines) if deadlines else wake
                timeout = max(0.0, wake - time.monotonic())
                events = self._selector.select(timeout)
                while events:
                    for key, mask in events:
                        slot = by_conn[id(key.data)]
                        result = slot.conn.on_event(mask)
                        while result is not None:  # a read can finish a message, then another
                            self._settle(slot, handler, result)
                            result = slot.conn.advance()
                    # Whatever arrived meanwhile joins this turn, and its claims this commit.
                    events = self._selector.select(0)
                now = time.monotonic()
                for slot in slots:
                    self._settle(slot, handler, slot.conn.expired(now))
        except BaseException:
            # Ctrl-C, a ledger failure: record what is known (if the ledger still can),
            # and hang up mid-message; rows left "sending" become "unknown" next run.
            for slot in slots:
                slot.conn.drop()
            if handler.pending:
                try:
                    handler.flush()
                except Exception:
                    log.exception("could not record the last outcomes")
            raise
        finally:
            if ahead is not None:  # messages made for jobs not taken: dropped, never sent
                ahead.shutdown(cancel_futures=True)
        handler.flush()
        if self._fatal is not None:
            raise SmtpFatal(self._fatal)
        if all(s.retired for s in slots):  # and each handed its job back: work is left
            raise RelayUnreachable(f"cannot reach {self._address}: {self._unreachable}")

    def _take(self, handler: Handler[J]) -> _Work[J] | None:
        """The next job that can be sent, its message made; None when there are none left
        (or the run is stopping)."""
        if self._exhausted or self._stopping:
            return None
        for job, made in self._made:
            if isinstance(made, ValueError):
                handler.settle(job, Result(ResultStatus.FAILED, str(made)))
                continue
            sender, recipient, data = made
            return _Work(job, sender, recipient, data)
        self._exhausted = True
        return None

    def _paced(self, work: _Work[J]) -> float:
        """0 once the message has its place in the pace, else how long to wait."""
        if not work.paced:
            # The rate first: its slot is cheap to waste, the hourly cap's is not.
            wait = self._limiter.reserve() or self._cap.reserve()
            if wait:
                if wait > 1:
                    log.info("hourly cap of %d reached: waiting %.0f s", self._cap.cap, wait)
                return wait
            work.paced = True
        return 0.0

    def _start(self, slot: _Slot[J], handler: Handler[J], now: float) -> float:
        """Begin the slot's message if its time has come; returns when to look again."""
        work = slot.work
        assert work is not None
        if self._stopping:  # claimed, perhaps, but nothing went out: hand it back
            self._hand_back(slot, handler, "the run stopped before this message was sent")
            return now
        if wait := self._paced(work):
            return now + wait
        conn = slot.conn
        if not conn.is_open:
            if slot.retry_at > now:
                return slot.retry_at
            try:
                conn.open()
            except SmtpFatal as exc:
                self._settle(slot, handler, Result(ResultStatus.FATAL, str(exc)))
                return now
            except OSError as exc:  # refused, timed out, 421 on connect, ...
                return self._failed(slot, handler, f"cannot connect: {exc}", now, connect=True)
        self._settle(slot, handler, conn.begin(work.sender, work.recipient, work.data))
        return now + 1.0

    @staticmethod
    def _claim(slot: _Slot[J], handler: Handler[J]) -> None:
        """Claim the message whose body goes next. Not earlier: in the same commit as the
        outcome of its connection's message before (or a later one), so that never two
        messages of a connection are in doubt."""
        work = slot.work
        assert work is not None
        if work.ticket is None:
            work.ticket = handler.claim(work.job)

    def _send_body(self, slot: _Slot[J], handler: Handler[J]) -> None:
        """The body of the slot's message; the next message's envelope with it, if it can."""
        work = slot.work
        assert work is not None and work.ticket is not None
        if not work.ticket.committed:
            self._refused(slot, handler)
            return
        then = None
        if slot.next is None:
            slot.next = self._take(handler)
        nxt = slot.next
        if nxt is not None and slot.conn.can_pipeline(nxt.recipient) and not self._paced(nxt):
            then = (nxt.sender, nxt.recipient, nxt.data)
        self._settle(slot, handler, slot.conn.send_body(then))

    def _settle(self, slot: _Slot[J], handler: Handler[J], result: Result | None) -> None:
        work = slot.work
        if result is None or work is None:
            return
        if result.status == ResultStatus.RETRY:
            self._failed(slot, handler, result.reply, time.monotonic(), connect=False)
            return
        if result.status == ResultStatus.FATAL:
            self._fatal = result.reply
            self._stopping = True
            self._hand_back(slot, handler, result.reply)
            return
        handler.settle(work.job, result)
        self._done(slot)

    def _done(self, slot: _Slot[J]) -> None:
        """The slot's message is settled: the next one (envelope sent or not) takes its
        place; if its envelope was lost with the connection, it starts again from there."""
        slot.work, slot.next = slot.next, None
        slot.failures, slot.retry_at = 0, 0.0

    def _failed(
        self, slot: _Slot[J], handler: Handler[J], why: str, now: float, *, connect: bool
    ) -> float:
        """Nothing went out: try again after a pause, up to len(RECONNECT_DELAYS) times."""
        slot.failures += 1
        if slot.failures <= len(RECONNECT_DELAYS):
            slot.retry_at = now + RECONNECT_DELAYS[slot.failures - 1]
            return slot.retry_at
        if connect:  # this connection cannot reach the relay; the others carry on, if any can
            self._unreachable = why
            slot.retired = True
            self._hand_back(slot, handler, why)
        else:
            work = slot.work
            assert work is not None
            handler.settle(
                work.job, Result(ResultStatus.DEFERRED, f"connection kept failing: {why}")
            )
            self._done(slot)
        return now

    def _refused(self, slot: _Slot[J], handler: Handler[J]) -> None:
        """The claim was refused: another run holds the message (or has sent it). The
        relay said 354 and waits for the body; hanging up before the final "." aborts the
        transaction, and no relay delivers a message whose end of data it never got (RFC
        5321, 4.1.1.4 and 3.8), whereas there is no command to cancel DATA. The job is
        dropped without an outcome: its row is the other run's to settle. The slot
        reconnects for its next job (rare: only when two runs race for the same rows)."""
        log.info("a message's row is another run's: not sent by this one")
        slot.conn.drop()
        if slot.next is not None:  # not started: nothing of it went out
            handler.settle(slot.next.job, Result(ResultStatus.UNSENT, "its connection was dropped"))
        slot.work = slot.next = None

    def _hand_back(self, slot: _Slot[J], handler: Handler[J], why: str) -> None:
        """Return the slot's messages untouched: nothing of them went out."""
        for work in (slot.work, slot.next):
            if work is not None:
                handler.settle(work.job, Result(ResultStatus.UNSENT, why))
        slot.work = slot.next = None


def _make(message: Callable[[J], Made], job: J) -> Made | ValueError:
    """``handler.message(job)``, or the ValueError that says it cannot be sent."""
    try:
        return message(job)
    except ValueError as exc:
        return exc


def _made_ahead(
    jobs: Iterator[J], message: Callable[[J], Made], threads: ThreadPoolExecutor
) -> Iterator[tuple[J, Made | ValueError]]:
    """The jobs with their messages, in order, made by ``threads`` AHEAD_CHUNK jobs a task
    and at most AHEAD jobs ahead of the one taken. The jobs are read here, in the loop's
    thread (the source may be a database cursor); anything but a ValueError that making a
    message raises is raised here, in its job's turn."""

    def make(chunk: list[J]) -> list[tuple[J, Made | Exception]]:
        made: list[tuple[J, Made | Exception]] = []
        for job in chunk:
            try:
                made.append((job, message(job)))
            except Exception as exc:
                made.append((job, exc))
        return made

    chunks: deque[Future[list[tuple[J, Made | Exception]]]] = deque()
    while True:
        while len(chunks) * AHEAD_CHUNK < AHEAD and (chunk := list(islice(jobs, AHEAD_CHUNK))):
            chunks.append(threads.submit(make, chunk))
        if not chunks:
            return
        for job, made in chunks.popleft().result():
            if isinstance(made, Exception) and not isinstance(made, ValueError):
                raise made
            yield job, made
