"""An example briefcast channel: a plain-text digest of each brief, one paragraph per
language, for a desk that pastes briefs into a messaging app. Its live send drops the digest
into a folder the desk's messaging bot watches (``DIGEST_DROP_DIR``), once per brief
(the send ledger), and adds a line to ``sent.log`` there each time it does. See
briefcast's docs/channels.md."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from html import escape
from pathlib import Path

from briefcast.brief import Brief
from briefcast.channel import BuildContext, Outputs, Pacer, Row, SendUnit
from briefcast.config import Settings
from briefcast.errors import ConfigError
from briefcast.safe_io import write_inside
from briefcast.send_ledger import Attempt, SendKey, SendLedger, Sent
from briefcast.store import Store

FOLDER = "DIGEST_DROP_DIR"


@dataclass(frozen=True)
class DigestSummary:
    brief_id: str
    status: str  # the send ledger's: sent, unknown, failed
    sent_now: bool  # False: sent by an earlier run, nothing done

    def line(self) -> str:
        done = "dropped" if self.sent_now else "already dropped, nothing done"
        return f"digest for brief {self.brief_id}: {done} ({self.status})"

    def rows(self) -> list[Row]:
        return [{"brief": self.brief_id, "status": self.status, "this run": int(self.sent_now)}]


class DigestChannel:
    name = "digest"
    title = "Digest"
    order = 100

    def build(self, brief: Brief, ctx: BuildContext) -> str:
        site = ctx.settings.site
        parts = [
            f"{brief.title_in(lang)}\n{brief.summary_in(lang)}\n{site.brief_url(brief.id, lang)}"
            for lang in brief.languages
        ]
        return "\n\n".join(parts) + "\n"

    def preview(self, built: str, folder: Path) -> list[Path]:
        return [write_inside(folder, "digest/digest.txt", built)]

    def preview_html(self, built: str, brief: Brief, settings: Settings) -> str:
        return f'<pre class="digest">{escape(built)}</pre>'

    def preview_rows(self, built: str) -> list[Row]:
        return [{"target": "digest.txt", "text": built, "length": len(built), "limit": 0}]

    # The live send: one unit per brief, through the send ledger.

    def check_ready(self, settings: Settings) -> None:
        if not os.environ.get(FOLDER):
            raise ConfigError(f"digest: set {FOLDER} to the folder digests are dropped into")

    def send_units(self, outputs: Outputs, settings: Settings) -> list[SendUnit]:
        return [SendUnit(self.name, outputs.brief.id, "folder")]

    def send_unit(
        self,
        unit: SendUnit,
        outputs: Outputs,
        settings: Settings,
        *,
        resend_unknown: bool,
        pacer: Pacer,
    ) -> DigestSummary:
        folder = Path(os.environ[FOLDER])
        digest: str = outputs.of(self.name)

        def drop(attempt: Attempt) -> Sent:
            path = write_inside(folder, f"{unit.brief_id}.txt", digest)
            with (folder / "sent.log").open("a", encoding="utf-8") as log:
                # Who sent it: the process and its parent (on the fleet, a worker).
                log.write(f"{unit.brief_id} {socket.gethostname()} {os.getpid()} {os.getppid()}\n")
            return Sent(str(path))

        with Store(settings.database.url) as store:
            key = SendKey(unit.brief_id, self.name, "folder")
            outcome = SendLedger(store).send_once(key, drop, resend_unknown=resend_unknown)
        return DigestSummary(unit.brief_id, outcome.record.status, outcome.called)

    def combine(
        self, outputs: Outputs, settings: Settings, summaries: list[DigestSummary]
    ) -> DigestSummary:
        [summary] = summaries
        return summary


channel = DigestChannel()
