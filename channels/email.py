"""Email channel: the three editions (en, it, both) as .html, .txt and .eml; live sending."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from briefcast.config import Settings
from briefcast.delivery import DeliverySummary, TestSend, send_test
from briefcast.delivery.worker import deliver_in_worker
from briefcast.pipeline import Edition
from briefcast.safe_io import write_inside


def preview(edition: Edition, folder: Path) -> list[Path]:
    paths = []
    for mail in edition.emails:
        for suffix, data in (("html", mail.html), ("txt", mail.text), ("eml", mail.eml)):
            paths.append(write_inside(folder, f"email/{mail.edition}.{suffix}", data))
    return paths


def send(edition: Edition, *, resend_unknown: bool = False) -> DeliverySummary:
    """Mail the brief to every active subscriber who has not had it (see briefcast.delivery),
    from a sending process of its own that reads the same settings."""
    return deliver_in_worker(edition.brief.id, edition.emails, resend_unknown=resend_unknown)


def send_tests(edition: Edition, settings: Settings, addresses: Sequence[str]) -> list[TestSend]:
    """Every edition to each address, subject marked [TEST]; no ledger, no subscribers."""
    return send_test(edition.emails, settings, addresses)
