"""Email channel: the three editions (en, it, both) as .html, .txt and .eml; live sending."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from briefcast import delivery
from briefcast.brief import Brief
from briefcast.channel import BuildContext, Outputs, Row
from briefcast.config import Settings
from briefcast.delivery import DeliverySummary, TestSend, audience
from briefcast.delivery.worker import deliver_in_worker
from briefcast.render.email import GMAIL_CLIP_BYTES, EmailEdition, build_emails
from briefcast.render.preview import (
    DESKTOP_WIDTH,
    FALLBACK_HEIGHT,
    PHONE_WIDTH,
    dark,
    fragment,
)
from briefcast.safe_io import write_inside

Editions = list[EmailEdition]


class EmailChannel:
    name = "email"
    title = "Email"
    order = 10

    def build(self, brief: Brief, ctx: BuildContext) -> Editions:
        return build_emails(brief, ctx.settings)

    def preview(self, built: Editions, folder: Path) -> list[Path]:
        return [
            write_inside(folder, f"email/{mail.edition}.{suffix}", data)
            for mail in built
            for suffix, data in (("html", mail.html), ("txt", mail.text), ("eml", mail.eml))
        ]

    def preview_html(self, built: Editions, brief: Brief, settings: Settings) -> str:
        return fragment(
            "email.html.j2",
            emails=built,
            dark=dark,
            desktop=DESKTOP_WIDTH,
            phone=PHONE_WIDTH,
            height=FALLBACK_HEIGHT,
        )

    def preview_rows(self, built: Editions) -> list[Row]:
        return [
            {
                "target": f"edition {mail.edition}",
                "text": mail.subject,
                "length": len(mail.html.encode("utf-8")),
                "limit": GMAIL_CLIP_BYTES,
            }
            for mail in built
        ]

    def check_ready(self, settings: Settings) -> None:
        delivery.check_ready(settings)

    def send(
        self, outputs: Outputs, settings: Settings, *, resend_unknown: bool
    ) -> DeliverySummary:
        """Mail the brief to every active subscriber who reads it (briefcast.delivery.audience)
        and has not had it (the ``deliveries``
        ledger, see briefcast.delivery), from a sending process of its own that reads the
        same settings."""
        return deliver_in_worker(
            outputs.brief.id,
            outputs.of(self.name),
            resend_unknown=resend_unknown,
            audience=audience.of_brief(outputs.brief, settings),
        )

    def send_test(
        self, outputs: Outputs, settings: Settings, addresses: Sequence[str]
    ) -> list[TestSend]:
        """Every edition to each address, subject marked [TEST]; no ledger, no subscribers."""
        return delivery.send_test(outputs.of(self.name), settings, addresses)


channel = EmailChannel()
