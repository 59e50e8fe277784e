"""``send_test`` (``--test-to``): every edition, subject marked ``[TEST]``, to a few
addresses, outside the ledger."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from briefcast.config import Settings
from briefcast.delivery.dkim import DkimError, DkimSigner
from briefcast.delivery.messages import Messages
from briefcast.delivery.pool import Pool
from briefcast.delivery.preflight import DeliveryError
from briefcast.delivery.prepared import PreparedEdition
from briefcast.delivery.smtp import RelayUnreachable, Result, SmtpFatal
from briefcast.delivery.summary import Reporter, TestSend, current_reporter
from briefcast.render.email import EmailEdition


@dataclass(frozen=True, slots=True)
class _TestJob:
    address: str
    edition: str


class _Committed:
    """Test messages have no claims to wait for."""

    committed = True


_COMMITTED = _Committed()


class _TestHandler:
    """Test messages: no ledger, a token that unsubscribes nobody, results kept in memory."""

    pending = False

    def __init__(self, messages: Messages, sender: str) -> None:
        self._messages = messages
        self._sender = sender  # test messages are outside the ledger: a fixed return path
        self.results: list[TestSend] = []

    def message(self, job: _TestJob) -> tuple[str, str, bytes]:
        # Unique per send so that mailboxes do not hide a repeated test as a duplicate.
        token = f"test-{secrets.token_hex(6)}"
        return self._sender, job.address, self._messages.data(job.edition, job.address, token)

    def claim(self, job: _TestJob) -> _Committed:
        return _COMMITTED

    def settle(self, job: _TestJob, result: Result) -> None:
        self.results.append(TestSend(job.address, job.edition, result.status, result.reply))

    def flush(self) -> None:
        return None


def send_test(
    mails: Sequence[EmailEdition],
    settings: Settings,
    addresses: Sequence[str],
    *,
    reporter: Reporter | None = None,
) -> list[TestSend]:
    """Every edition to every address, subject marked ``[TEST]``; no ledger, no subscribers."""
    try:
        dkim = DkimSigner.from_settings(settings)
    except DkimError as exc:
        raise DeliveryError(str(exc)) from exc
    now = datetime.now(settings.site.tz)
    prepared = {
        m.edition: PreparedEdition.from_edition(m).marked_test(m.subject).dated(now) for m in mails
    }
    handler = _TestHandler(Messages(prepared, dkim), settings.email.from_address)
    jobs = [_TestJob(a, e) for a in addresses for e in prepared]
    with Pool.from_settings(settings, min(settings.delivery.pool_size, max(1, len(jobs)))) as pool:
        try:
            pool.run(jobs, handler)
        except (SmtpFatal, RelayUnreachable) as exc:
            raise DeliveryError(str(exc)) from exc
    order = {(j.address, j.edition): i for i, j in enumerate(jobs)}
    results = sorted(handler.results, key=lambda r: order[(r.address, r.edition)])
    reporter = reporter or current_reporter()
    if reporter is not None:
        reporter.tested(results)
    return results
