"""The sending loop: N reused connections driven from one thread, paced, ledger-first.

Each turn of the loop:

1. every connection that is free takes the next job: its claim goes to the ledger's queue
   and its envelope (MAIL, RCPT, DATA) to the relay;
2. if a connection has its 354 and waits for its claim, everything queued is committed in
   one transaction (claims and outcomes of every connection): the relay's round trip is
   what lets the claims pile up, so a commit carries several;
3. bodies go out for the connections whose claims are durable;
4. the loop waits for any socket (or a deadline, a reconnect, the pace) and reads replies;
   each outcome joins the ledger's queue.

So a message's row is ``sending`` before its body goes, its outcome is durable before the
same connection sends another body, and after a crash at most one row per connection is in
doubt. One thread: no lock, no hand-off and no wake-up per message, which is what made a
thread per connection twice as slow as the relay.
"""

from __future__ import annotations

import logging
import selectors
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from briefcast.config import SmtpSettings
from briefcast.delivery.pacing import HourlyCap, RateLimiter
from briefcast.delivery.smtp import Connection, RelayUnreachable, Result, SmtpFatal

log = logging.getLogger(__name__)

# Waits before each reconnect when a connection drops before the message went out.
RECONNECT_DELAYS = (0.1, 0.5, 2.0)
IN_FLIGHT = ("envelope", "ready", "body", "cleanup")
J = TypeVar("J")


class Ticket(Protocol):
    @property
    def committed(self) -> bool: ...


class Handler(Protocol[J]):
    """What the loop needs from its user: a job's bytes, and a durable record of it."""

    def message(self, job: J) -> tuple[str, bytes]:
        """The recipient and the DATA payload; ValueError if it cannot be sent at all."""
        ...

    def claim(self, job: J) -> Ticket:
        """The job is about to go: queue its claim (its body waits until it is committed)."""
        ...

    def settle(self, job: J, result: Result) -> None:
        """Queue the job's outcome."""
        ...

    @property
    def pending(self) -> bool: ...

    def flush(self) -> None:
        """Commit everything queued, in one transaction; raise if it cannot be."""
        ...


class _Slot(Generic[J]):
    """A connection and the job it is working on."""

    __slots__ = (
        "conn",
        "data",
        "failures",
        "job",
        "paced",
        "recipient",
        "retired",
        "retry_at",
        "ticket",
    )

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.job: J | None = None
        self.recipient = ""
        self.data = b""
        self.ticket: Ticket | None = None
        self.paced = False  # the job has its place in the rate and the hourly cap
        self.failures = 0  # connects and sessions lost for this job, in a row
        self.retry_at = 0.0  # after a failure: when to reconnect
        self.retired = False  # cannot reach the relay: takes no more jobs

    @property
    def busy(self) -> bool:
        return self.job is not None or self.conn.state in IN_FLIGHT


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
    ) -> None:
        helo = sender.rpartition("@")[2] or "localhost"  # not getfqdn(): it can hang on DNS
        self._selector = selectors.DefaultSelector()
        self.connections = [
            Connection(settings, self._selector, timeout=timeout, helo=helo, password=password)
            for _ in range(size)
        ]
        self._address = f"{settings.host}:{settings.port}"
        self._sender = sender
        self._limiter = limiter or RateLimiter(0)
        self._cap = cap or HourlyCap(0)
        self._stopping = False
        self._fatal: str | None = None
        self._unreachable: str | None = None

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
        source = iter(jobs)
        slots: list[_Slot[J]] = [_Slot(conn) for conn in self.connections]
        by_conn = {id(s.conn): s for s in slots}
        self._stopping, self._fatal, self._unreachable = False, None, None
        exhausted = False
        try:
            while True:
                if stop is not None and stop.is_set():
                    self._stopping = True
                now = time.monotonic()
                wake = now + 1.0
                for slot in slots:
                    if slot.retired or slot.conn.state in IN_FLIGHT:
                        continue
                    idle = slot.job is None and not (exhausted or self._stopping)
                    if idle and not self._take(slot, source, handler):
                        exhausted = True
                        continue
                    if slot.job is not None:
                        wake = min(wake, self._start(slot, handler, now))
                if not any(s.busy for s in slots):
                    break
                if all(s.retired for s in slots):
                    break
                # Durable before the bodies: commit when a body waits for its claim, or
                # when nothing is under way (the loop may wait a while: pace, reconnect).
                if handler.pending and (
                    any(s.conn.state == "ready" for s in slots)
                    or not any(s.conn.state in IN_FLIGHT for s in slots)
                ):
                    handler.flush()
                for slot in slots:
                    if slot.conn.state == "ready" and slot.ticket and slot.ticket.committed:
                        self._settle(slot, handler, slot.conn.send_body())
                deadlines = [s.conn.deadline for s in slots if s.conn.state in IN_FLIGHT]
                wake = min(wake, *deadlines) if deadlines else wake
                timeout = max(0.0, wake - time.monotonic())
                for key, mask in self._selector.select(timeout):
                    slot = by_conn[id(key.data)]
                    self._settle(slot, handler, slot.conn.on_event(mask))
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
        handler.flush()
        if self._fatal is not None:
            raise SmtpFatal(self._fatal)
        if all(s.retired for s in slots):  # and each handed its job back: work is left
            raise RelayUnreachable(f"cannot reach {self._address}: {self._unreachable}")

    def _take(self, slot: _Slot[J], source: Iterator[J], handler: Handler[J]) -> bool:
        """Give the slot the next job that can be sent; False when there are none left."""
        for job in source:
            try:
                slot.recipient, slot.data = handler.message(job)
            except ValueError as exc:
                handler.settle(job, Result("failed", str(exc)))
                continue
            slot.job, slot.ticket, slot.paced = job, None, False
            slot.failures, slot.retry_at = 0, 0.0
            return True
        return False

    def _start(self, slot: _Slot[J], handler: Handler[J], now: float) -> float:
        """Begin the slot's job if its time has come; returns when to look again."""
        job = slot.job
        assert job is not None
        if self._stopping:  # claimed, perhaps, but nothing went out: hand it back
            self._hand_back(slot, handler, "the run stopped before this message was sent")
            return now
        if not slot.paced:
            # The rate first: its slot is cheap to waste, the hourly cap's is not.
            wait = self._limiter.reserve() or self._cap.reserve()
            if wait:
                if wait > 1:
                    log.info("hourly cap of %d reached: waiting %.0f s", self._cap.cap, wait)
                return now + wait
            slot.paced = True
        conn = slot.conn
        if not conn.is_open:
            if slot.retry_at > now:
                return slot.retry_at
            try:
                conn.open()
            except SmtpFatal as exc:
                self._fatal = str(exc)
                self._stopping = True
                self._hand_back(slot, handler, str(exc))
                return now
            except OSError as exc:  # refused, timed out, 421 on connect, ...
                return self._failed(slot, handler, f"cannot connect: {exc}", now, connect=True)
        if slot.ticket is None:
            slot.ticket = handler.claim(job)
        self._settle(slot, handler, conn.begin(self._sender, slot.recipient, slot.data))
        return now + 1.0

    def _settle(self, slot: _Slot[J], handler: Handler[J], result: Result | None) -> None:
        if result is None or slot.job is None:
            return
        if result.status == "retry":
            self._failed(slot, handler, result.reply, time.monotonic(), connect=False)
            return
        if result.status == "fatal":
            self._fatal = result.reply
            self._stopping = True
            self._hand_back(slot, handler, result.reply)
            return
        job, slot.job, slot.ticket = slot.job, None, None
        handler.settle(job, result)

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
            job, slot.job, slot.ticket = slot.job, None, None
            assert job is not None
            handler.settle(job, Result("deferred", f"connection kept failing: {why}"))
        return now

    def _hand_back(self, slot: _Slot[J], handler: Handler[J], why: str) -> None:
        job, slot.job, slot.ticket = slot.job, None, None
        if job is not None:
            handler.settle(job, Result("unsent", why))
