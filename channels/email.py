"""Email channel: the three editions (en, it, both) as .html, .txt and .eml; live sending,
in batches of subscribers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from briefcast import delivery
from briefcast.brief import Brief
from briefcast.channel import BuildContext, Limit, Outputs, Pacer, Row, SendUnit
from briefcast.config import Settings
from briefcast.delivery import DeliverySummary, TestSend, audience, ledger
from briefcast.delivery.run import combine
from briefcast.delivery.summary import reach_line
from briefcast.delivery.worker import deliver_in_worker
from briefcast.render.email import GMAIL_CLIP_BYTES, EmailEdition, build_emails, edition_names
from briefcast.render.preview import (
    DESKTOP_WIDTH,
    FALLBACK_HEIGHT,
    PHONE_WIDTH,
    dark,
    fragment,
)
from briefcast.safe_io import write_inside
from briefcast.store import Store

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

    def reach(self, brief: Brief, settings: Settings) -> str:
        """Whom the send would reach, as the list is now (the approval's page says it)."""
        readers = audience.of_brief(brief, settings)
        with Store(settings.database.url) as store:
            reach = audience.reach(store, readers, edition_names(settings.site))
        return f"Email {reach_line(reach, readers.left_out)} (as the list is now)."

    def limits(self, settings: Settings) -> list[Limit]:
        """The relay's connections, fleet-wide: every batch sending to it counts."""
        return [Limit(relay_limit(settings), settings.workflow.relay_connections)]

    def send_units(self, outputs: Outputs, settings: Settings) -> list[SendUnit]:
        """The brief's subscribers (its audience, ``briefcast.delivery.audience``) in keyset
        ranges of ``[workflow] send_batch`` (``ledger.subscriber_batches``), each sent in a
        process of its own. A list that fits one batch is one unit for the whole brief: it
        holds the brief's send lock, so it also mails whoever joined since a batched send
        and settles rows no range covers (``briefcast.delivery.lock``)."""
        readers = audience.of_brief(outputs.brief, settings)
        with Store(settings.database.url) as store:
            ranges = ledger.subscriber_batches(store, settings.workflow.send_batch, readers.where())
        brief_id = outputs.brief.id
        if len(ranges) <= 1:
            return [SendUnit(self.name, brief_id, "subscribers", alone=True)]
        return [
            SendUnit(
                self.name,
                brief_id,
                f"subscribers {first}-{last}",
                {"first": first, "last": last},
                alone=True,
            )
            for first, last in ranges
        ]

    def send_unit(
        self,
        unit: SendUnit,
        outputs: Outputs,
        settings: Settings,
        *,
        resend_unknown: bool,
        pacer: Pacer,
    ) -> DeliverySummary:
        """Mail one batch (or the whole brief) to those of its subscribers who read it and
        have not had it (the ``deliveries`` ledger, see briefcast.delivery), from a sending
        process of its own that reads the same settings, holding the pool's connections in
        the relay's fleet-wide limit while it sends."""
        first, last = unit.params.get("first"), unit.params.get("last")
        batch = (int(first), int(last)) if first is not None and last is not None else None
        slots = min(settings.delivery.pool_size, settings.workflow.relay_connections)
        with pacer.hold(relay_limit(settings), slots):
            return deliver_in_worker(
                outputs.brief.id,
                outputs.of(self.name),
                resend_unknown=resend_unknown,
                subscribers=batch,
                audience=audience.of_brief(outputs.brief, settings),
            )

    def combine(
        self, outputs: Outputs, settings: Settings, summaries: list[DeliverySummary]
    ) -> DeliverySummary:
        """The whole brief's summary: the one unit's, or the batches' added up."""
        if len(summaries) == 1:
            return summaries[0]
        editions = [mail.edition for mail in outputs.of(self.name)]
        with Store(settings.database.url) as store:
            return combine(store, outputs.brief.id, editions, summaries)

    def send_test(
        self, outputs: Outputs, settings: Settings, addresses: Sequence[str]
    ) -> list[TestSend]:
        """Every edition to each address, subject marked [TEST]; no ledger, no subscribers."""
        return delivery.send_test(outputs.of(self.name), settings, addresses)


def relay_limit(settings: Settings) -> str:
    """The fleet-wide concurrency limit shared by every batch sending to this relay."""
    return f"smtp-{settings.smtp.host}-{settings.smtp.port}"[:100]


channel = EmailChannel()
