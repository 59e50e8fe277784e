"""Confirmation emails, made and sent by one thread of their own through the configured relay.

The subscribe page answers before anything about the address is looked up: a job (look the
address up or add it, make the email if one is due) waits in a queue for this thread. So
the answer takes as long whether the address is new, known, or refused (who is on the list
does not show in the timing), and a slow relay or database does not hold a request. The
queue is bounded; when it is full (a relay down, a flood the rate limits let through) new
jobs are dropped with a log line, and the page says the same as ever. A job whose database
write fails (a full disk) is kept and tried again every ``RETRY_SECONDS``; until one goes
through, the subscribe page says it cannot save (:attr:`Mailer.database_failing`), to every
address alike.
The relay is reached as ``publish --send`` reaches it ([smtp]: STARTTLS or TLS, login with
BRIEFCAST_SMTP__PASSWORD), one connection per email; DKIM-signed when a key is configured.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid

from sqlalchemy.exc import OperationalError

from briefcast.config import Settings
from briefcast.delivery.dkim import DkimSigner
from briefcast.delivery.smtp import connect

log = logging.getLogger("briefcast.serve")
Job = Callable[[], "EmailMessage | None"]
QUEUE_MAX = 1000
RETRY_SECONDS = 30.0


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._dkim = DkimSigner.from_settings(settings)
        self._queue: queue.Queue[Job | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._held: deque[Job] = deque()  # jobs whose database write failed, oldest first
        self.retry_seconds = RETRY_SECONDS
        self.database_failing = False
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="briefcast-mailer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None
        if self._held:
            log.error(
                "%d subscription(s) not saved: the database could not be written", len(self._held)
            )

    def message(self, to: str, subject: str, text: str, lang: str) -> EmailMessage:
        mail = self._settings.email
        msg = EmailMessage()
        msg["From"] = formataddr((mail.from_name, mail.from_address))
        msg["To"] = to
        if mail.reply_to:
            msg["Reply-To"] = mail.reply_to
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid("confirm", domain=mail.from_address.rpartition("@")[2])
        msg["Content-Language"] = lang
        msg["Auto-Submitted"] = "auto-generated"  # no out-of-office replies to it, please
        msg.set_content(text)
        return msg

    def submit(self, job: Job) -> bool:
        """Queue a job (it returns the email to send, or None); False (and a log line) when
        the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            log.warning("a subscription dropped: the queue is full")
            return False
        return True

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=self.retry_seconds if self._held else None)
            except queue.Empty:  # time to try the held jobs again, oldest first
                while self._held and self._do(self._held[0]):
                    self._held.popleft()
                continue
            if job is None:
                return
            if self._held or not self._do(job):  # behind the held ones, in order
                if len(self._held) < QUEUE_MAX:
                    self._held.append(job)
                else:
                    log.warning("a subscription dropped: too many wait for the database")

    def _do(self, job: Job) -> bool:
        """Runs a job; False when its database write failed and it should be tried again."""
        try:
            msg = job()
        except OperationalError as exc:  # e.g. "database or disk is full": kept, not lost
            if not self.database_failing:
                log.error(
                    "subscription: not saved yet, the database cannot be written: %s", exc.orig
                )
            self.database_failing = True
            return False
        except Exception as exc:  # any other trouble with one job must not stop the thread
            self.failed += 1
            log.error("subscription: confirmation email not sent: %s", exc)
            return True
        self.database_failing = False
        try:
            if msg is not None:
                self.send(msg)
                self.sent += 1
        except Exception as exc:  # a relay's trouble must not stop it
            self.failed += 1
            log.error("subscription: confirmation email not sent: %s", exc)
        return True

    def send(self, msg: EmailMessage) -> None:
        s = self._settings.smtp
        password = s.password.get_secret_value() if s.password else None
        smtp = connect(s, timeout=self._settings.delivery.timeout_seconds, password=password)
        with smtp:
            to = str(msg["To"])
            raw = msg.as_bytes(policy=SMTP.clone(utf8=not to.isascii()))
            if self._dkim is not None:
                raw = self._dkim.sign(raw) + raw
            options = ["SMTPUTF8"] if not to.isascii() else []
            smtp.sendmail(self._settings.email.from_address, [to], raw, mail_options=options)
