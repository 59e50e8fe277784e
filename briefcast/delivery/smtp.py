"""One SMTP connection to the relay, reused for message after message, never blocking.

smtplib opens it (connect, EHLO, STARTTLS, login: rare, and fiddly to get right). After that
the socket is non-blocking and this class speaks the transaction itself, so that one loop
(:mod:`briefcast.delivery.pool`) can drive every connection from one thread: no thread per
connection, no hand-off and no lock per message.

Each message is one transaction with one recipient (each message is personal). How far it got
decides what a failure means:

- nothing of the message sent yet (connect, MAIL, RCPT, DATA, or the body not sent in full):
  the relay cannot have it -> ``retry`` (the pool reconnects and sends it again);
- the body and its final "." sent, but no reply: the relay may have it -> ``unknown``;
- a reply: 2xx sent, 4xx deferred, 5xx bounced (5xx to MAIL FROM is about us, not the
  recipient: ``fatal``, the run stops).
"""

from __future__ import annotations

import selectors
import smtplib
import socket
import ssl
import time
from enum import StrEnum
from typing import NamedTuple

from briefcast.config import SmtpSettings

# The ssl module's "try again when the socket is ready" signals are OSErrors too.
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_END_OF_DATA = b".\r\n"


def connect(
    s: SmtpSettings, *, timeout: float, password: str | None, helo: str | None = None
) -> smtplib.SMTP:
    """A blocking smtplib session to the relay: connect, EHLO, STARTTLS, login. Raises
    SmtpFatal for what retrying cannot mend, OSError (smtplib's errors are OSErrors) for what
    it might."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if s.tls:
        smtp = smtplib.SMTP_SSL(
            s.host, s.port, local_hostname=helo, timeout=timeout, context=context
        )
    else:
        smtp = smtplib.SMTP(s.host, s.port, local_hostname=helo, timeout=timeout)
    try:
        smtp.ehlo_or_helo_if_needed()
        if s.starttls and not s.tls:
            if not smtp.has_extn("starttls"):
                raise SmtpFatal(f"{s.host}:{s.port} offers no STARTTLS (smtp.starttls)")
            smtp.starttls(context=context)
            smtp.ehlo()
        if s.user:
            if not password:
                raise SmtpFatal("smtp.user is set but BRIEFCAST_SMTP__PASSWORD is not")
            smtp.login(s.user, password)
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
        smtp.close()
        raise SmtpFatal(f"{s.host}:{s.port}: {exc}") from exc
    except ssl.SSLCertVerificationError as exc:  # does not get better by retrying
        smtp.close()
        raise SmtpFatal(f"{s.host}:{s.port}: TLS certificate refused: {exc}") from exc
    except BaseException:
        smtp.close()
        raise
    return smtp


class ResultStatus(StrEnum):
    """What one attempt came to (the delivery ledger's status is made from it)."""

    # What the relay did (or may have done).
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    UNKNOWN = "unknown"
    FAILED = "failed"  # the message could not be made (bad address), never sent
    RETRY = "retry"  # the connection was lost before the message went out, nothing sent
    UNSENT = "unsent"  # handed back, nothing went out
    FATAL = "fatal"  # handed back, and the run must stop


class ConnState(StrEnum):
    """Where a connection's SMTP session is: closed; idle (may take a message); envelope
    (MAIL/RCPT/DATA sent, replies awaited); ready (354: the body may go); body (the body
    going, its reply awaited); cleanup (RSET after a refusal)."""

    CLOSED = "closed"
    IDLE = "idle"
    ENVELOPE = "envelope"
    READY = "ready"
    BODY = "body"
    CLEANUP = "cleanup"


class Result(NamedTuple):
    status: ResultStatus
    reply: str = ""
    hard: bool = False  # a 5xx about the recipient: counts towards their hard bounces


class SmtpFatal(Exception):
    """A failure that every message would meet (login refused, sender refused, TLS)."""


class RelayUnreachable(Exception):
    """No connection of the pool could reach the relay."""


def _reply(code: int, text: bytes) -> str:
    return f"{code} {' '.join(text.decode('utf-8', 'replace').split())}"


class Connection:
    """States: ``closed`` -> (open) ``idle`` -> (begin) ``envelope`` -> ``ready`` (the relay
    said 354; the body waits for the ledger) -> (send_body) ``body`` -> ``idle``; after a
    refusal, ``cleanup`` (ending the transaction) -> ``idle``. Every read and write is
    non-blocking; :meth:`on_event` and :meth:`expired` return a :class:`Result` when the
    message's fate is known."""

    def __init__(
        self,
        settings: SmtpSettings,
        selector: selectors.BaseSelector,
        *,
        timeout: float,
        helo: str,
        password: str | None,
    ) -> None:
        self._settings = settings
        self._selector = selector
        self._timeout = timeout
        self._helo = helo
        self._password = password
        self._smtp: smtplib.SMTP | None = None
        self._sock: socket.socket | None = None
        self._pipelining = False
        self._smtputf8 = False
        self.state = ConnState.CLOSED
        self._inbox = b""  # bytes read and not yet parsed into replies
        self._outbox: list[memoryview] = []  # bytes to write, in order
        self._mask = 0
        self._commands: list[tuple[str, bytes]] = []  # not yet sent (a relay without PIPELINING)
        self._stages: list[str] = []  # what each awaited reply answers, in order
        self._replies: list[tuple[str, int, bytes]] = []
        self._body: bytes = b""
        self._then: bytes | None = None  # the next message's body, its envelope sent
        self.deadline = 0.0  # when the relay's silence becomes a lost connection

    # --- opening and closing (blocking, through smtplib) ---------------------------------

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def open(self) -> None:
        """Connect, EHLO, STARTTLS, login (see :func:`connect`), then go non-blocking."""
        smtp = connect(
            self._settings, timeout=self._timeout, password=self._password, helo=self._helo
        )
        sock = smtp.sock
        assert sock is not None  # connected: smtplib set it
        # Commands are small writes followed by a read: don't let Nagle hold them back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._smtp, self._sock = smtp, sock
        self._pipelining = smtp.has_extn("pipelining")
        self._smtputf8 = smtp.has_extn("smtputf8")
        self._inbox, self._outbox = b"", []
        self._mask = selectors.EVENT_READ
        self._selector.register(sock, self._mask, self)
        self.state = ConnState.IDLE

    def close(self) -> None:
        """QUIT politely (briefly blocking) if the session is between messages."""
        smtp = self._smtp
        if smtp is not None and self.state == ConnState.IDLE and self._sock is not None:
            self._unregister()
            try:
                self._sock.settimeout(min(self._timeout, 5.0))
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
        self.drop()

    def drop(self) -> None:
        """Hang up without QUIT: the session is in an unknown state."""
        self._unregister()
        smtp, self._smtp, self._sock = self._smtp, None, None
        if smtp is not None:
            smtp.close()
        self.state = ConnState.CLOSED
        self._outbox, self._inbox, self._stages, self._then = [], b"", [], None

    def _unregister(self) -> None:
        if self._sock is not None and self._mask:
            self._selector.unregister(self._sock)
            self._mask = 0

    # --- one transaction -----------------------------------------------------------------

    def can_pipeline(self, recipient: str) -> bool:
        """Whether a message to ``recipient`` can have its envelope sent after the body of
        the message before, in the same write (see :meth:`send_body`)."""
        return self._pipelining and (recipient.isascii() or self._smtputf8)

    def begin(self, sender: str, recipient: str, body: bytes) -> Result | None:
        """Send the envelope (MAIL, RCPT, DATA: in one write if the relay pipelines).
        ``body`` is the DATA payload, dot-stuffed and ending ``.\\r\\n``; it goes out with
        :meth:`send_body` once the relay said 354 (state ``ready``)."""
        assert self.state == ConnState.IDLE, self.state
        if not recipient.isascii() and not self._smtputf8:
            return Result(
                ResultStatus.FAILED, "the relay does not offer SMTPUTF8 for a non-ASCII address"
            )
        commands = self._envelope(sender, recipient)
        self._body = body
        self._replies = []
        self.state = ConnState.ENVELOPE
        if self._pipelining:  # RFC 2920: one round trip instead of three
            self._stages = [stage for stage, _ in commands]
            self._commands = []
            self._write(b"".join(command for _, command in commands))
        else:
            self._stages, self._commands = [], commands
            self._next_command()
        return self._flush_or_lost()

    def send_body(self, then: tuple[str, str, bytes] | None = None) -> Result | None:
        """Send the body. With ``then`` (sender, recipient, body of the next message; see
        :meth:`can_pipeline`), the next envelope follows it in the same write: RFC 2920
        lets message content open a pipelined group, so the relay's end-of-data reply and
        the next message's 354 come back together, one round trip a message."""
        assert self.state == ConnState.READY, self.state
        self.state = ConnState.BODY
        self._stages = ["end"]
        if then is not None:
            sender, recipient, body = then
            commands = self._envelope(sender, recipient)
            # One write: a relay that reads the end of the body and the next envelope
            # together answers them together (no Nagle wait between its replies).
            self._write(b"".join([self._body, *(command for _, command in commands)]))
            self._stages += [stage for stage, _ in commands]
            self._then = body
        else:
            self._write(self._body)
            self._then = None
        return self._flush_or_lost()

    def advance(self) -> Result | None:
        """Go on with replies already read (after :meth:`on_event` returned a result)."""
        if self._sock is None:
            return None
        try:
            return self._on_replies()
        except OSError as exc:
            return self._lost(str(exc) or type(exc).__name__)

    def on_event(self, mask: int) -> Result | None:
        """The socket is readable and/or writable: move the transaction on."""
        try:
            if mask & selectors.EVENT_WRITE:
                self._flush()
            if mask & selectors.EVENT_READ:
                if not self._read():
                    return self._lost("the relay closed the connection")
                return self._on_replies()
        except OSError as exc:
            return self._lost(str(exc) or type(exc).__name__)
        return None

    def expired(self, now: float) -> Result | None:
        """The relay has been silent for longer than the timeout: give up on it."""
        if self.state in (ConnState.CLOSED, ConnState.IDLE, ConnState.READY) or now < self.deadline:
            return None
        return self._lost(f"no answer in {self._timeout:g} s")

    # --- inside --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._outbox.append(memoryview(data))

    def _flush_or_lost(self) -> Result | None:
        try:
            self._flush()
        except OSError as exc:
            return self._lost(str(exc) or type(exc).__name__)
        return None

    def _flush(self) -> None:
        """Write what the socket takes now; wait for it to be writable for the rest."""
        sock = self._sock
        assert sock is not None
        outbox = self._outbox
        while outbox:
            chunk = outbox[0]
            try:
                n = sock.send(chunk)
            except _WOULD_BLOCK:
                break
            if n < len(chunk):
                outbox[0] = chunk[n:]
            else:
                outbox.pop(0)
        self.deadline = time.monotonic() + self._timeout
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if outbox else 0)
        if mask != self._mask:
            self._selector.modify(sock, mask, self)
            self._mask = mask

    def _read(self) -> bool:
        """Read what is there; False if the relay hung up."""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                chunk = sock.recv(65536)
            except _WOULD_BLOCK:
                return True
            if not chunk:
                return False
            self._inbox += chunk
            # TLS may hold decrypted bytes the selector cannot see; a plain socket has told
            # us all it had (another read would be one more system call to say so).
            if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                return True

    def _on_replies(self) -> Result | None:
        while self._stages and (reply := self._next_reply()) is not None:
            stage = self._stages.pop(0)
            code, text = reply
            if stage == "end":
                result = self._ended(code, text)
                if self._sock is not None and self._then is not None:
                    # The next message's envelope went with this body: its replies follow.
                    self.state, self._body, self._replies = ConnState.ENVELOPE, self._then, []
                    self._then = None
                return result
            if stage == "cleanup":
                if not self._stages:
                    self.state = ConnState.IDLE
                continue
            self._replies.append((stage, code, text))
            if self._commands and 200 <= code < 300:  # one by one: the next command
                self._next_command()
                self._flush()
            elif not self._stages:
                return self._envelope_answered()
        if self.state == ConnState.IDLE and self._inbox:  # a relay speaking out of turn (421)
            return self._lost("unexpected reply: " + self._inbox[:200].decode("ascii", "replace"))
        return None

    @staticmethod
    def _envelope(sender: str, recipient: str) -> list[tuple[str, bytes]]:
        utf8 = " SMTPUTF8" if not recipient.isascii() else ""
        return [
            ("mail", f"MAIL FROM:<{sender}>{utf8}\r\n".encode()),
            ("rcpt", f"RCPT TO:<{recipient}>\r\n".encode()),
            ("data", b"DATA\r\n"),
        ]

    def _next_command(self) -> None:
        stage, command = self._commands.pop(0)
        self._stages.append(stage)
        self._write(command)

    def _next_reply(self) -> tuple[int, bytes] | None:
        """One whole reply (all of its lines) from the inbox, or None if not all here yet."""
        inbox = self._inbox
        start = 0
        texts = []
        while (end := inbox.find(b"\r\n", start)) >= 0:
            line = inbox[start:end]
            start = end + 2
            texts.append(line[4:])
            if line[3:4] != b"-":  # "250-..." continues, "250 ..." or "250" ends the reply
                self._inbox = inbox[start:]
                code = int(line[:3]) if line[:3].isdigit() else -1
                return code, b" ".join(texts)
        return None

    def _envelope_answered(self) -> Result | None:
        replies = self._replies
        refused = next(((s, c, t) for s, c, t in replies if s != "data" and c >= 300), None)
        data = next(((s, c, t) for s, c, t in replies if s == "data"), None)
        if refused is None and data is not None and data[1] == 354:
            self.state = ConnState.READY
            return None
        stage, code, text = refused or data or replies[-1]
        reply = _reply(code, text)
        if code < 0 or code >= 600 or 200 <= code < 400:
            self.drop()
            return Result(ResultStatus.RETRY, f"unexpected reply at {stage}: {reply}")
        if code == 421:  # the relay is closing this connection
            self.drop()
            return Result(ResultStatus.DEFERRED, reply)
        # End the transaction before the next: a pipelining relay that took DATA after
        # refusing the recipient wants a body, an empty one will do; then RSET.
        self.state = ConnState.CLEANUP
        self._stages, self._commands = [], []
        if data is not None and data[1] == 354:
            self._stages.append("cleanup")
            self._write(_END_OF_DATA)
        self._stages.append("cleanup")
        self._write(b"RSET\r\n")
        self._flush_or_lost()  # if the connection is gone, so is the transaction: no matter
        if code < 500:
            return Result(ResultStatus.DEFERRED, reply)
        if stage == "mail":
            return Result(ResultStatus.FATAL, f"the relay refused the sender: {reply}")
        return Result(ResultStatus.BOUNCED, reply, hard=True)

    def _ended(self, code: int, text: bytes) -> Result:
        reply = _reply(code, text)
        self.state = ConnState.IDLE
        if 200 <= code < 300:
            return Result(ResultStatus.SENT, reply)
        if code == 421:
            self.drop()
        if 400 <= code < 500:
            return Result(ResultStatus.DEFERRED, reply)
        if 500 <= code < 600:
            return Result(ResultStatus.BOUNCED, reply, hard=True)
        self.drop()
        return Result(ResultStatus.UNKNOWN, f"unexpected reply after the message was sent: {reply}")

    def _lost(self, why: str) -> Result | None:
        """The connection broke (or went silent): what that means depends on the stage."""
        state, body_out = self.state, not self._outbox
        self.drop()
        if state == ConnState.BODY and body_out:
            # The final "." went out: the relay may have kept the message.
            return Result(
                ResultStatus.UNKNOWN, f"connection lost after the message was sent: {why}"
            )
        if state in (ConnState.ENVELOPE, ConnState.READY, ConnState.BODY):
            # The final "." is at the very end of the body: if it did not go out, the relay
            # never keeps the message.
            return Result(ResultStatus.RETRY, f"connection lost before the message was sent: {why}")
        return None  # idle or tidying up after a refusal: the outcome is known already
