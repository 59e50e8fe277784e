"""What a send tells its watcher: the summary of a live send, the results of a test send,
and the :class:`Reporter` that watches them (registered with :func:`reporting`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from briefcast.delivery.ledger import ATTEMPTED, DeliveryStatus
from briefcast.reporting import Watched


@dataclass(frozen=True)
class DeliverySummary:
    brief_id: str
    this_run: dict[str, int]  # rows this run left in each status
    ledger: dict[str, int]  # every row of the brief, by status
    skipped: int  # rows this run left alone (done before, unknown, not active)
    seconds: float  # time spent sending (waits for deferred retries not included)
    unknown: list[str] = field(default_factory=list)  # first addresses whose outcome is unknown
    deferred: list[str] = field(default_factory=list)
    error: str | None = None  # why the run stopped early, if it did
    # The subscribers the brief is for (its rows in the ledger), per edition; and the site
    # languages whose subscribers it is not mailed to (briefcast.delivery.audience).
    editions: dict[str, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.this_run.get(DeliveryStatus.SENT, 0) / self.seconds if self.seconds > 0 else 0.0

    def rows(self) -> list[dict[str, str | int]]:
        """By status: this run and all runs (the flow's table artifact)."""
        return [
            {"status": status, "this run": n, "all runs": self.ledger.get(status, 0)}
            for status, n in self.this_run.items()
        ]

    def line(self) -> str:
        """One line for logs: ``brief X: sent 9,998, deferred 0, ... (2,512 msg/s)``."""
        counts = ", ".join(f"{status} {self.this_run.get(status, 0):,}" for status in ATTEMPTED)
        return (
            f"brief {self.brief_id}: {counts}, skipped {self.skipped:,} "
            f"in {self.seconds:.1f} s ({self.rate:,.0f} msg/s); {self.reach()}"
        )

    def reach(self) -> str:
        return reach_line(self.editions, self.left_out)


def reach_line(editions: dict[str, int], left_out: Sequence[str]) -> str:
    """``for 3 subscribers: en 2, both 1; not mailed: it subscribers (not in their
    language)``: whom each edition reaches, for the summaries and the dry run."""
    total = sum(editions.values())
    each = ", ".join(f"{edition} {n:,}" for edition, n in editions.items())
    text = f"for {total:,} subscribers" + (f": {each}" if each else "")
    if left_out:
        text += f"; not mailed: {', '.join(left_out)} subscribers (not in their language)"
    return text


@dataclass(frozen=True)
class TestSend:
    address: str
    edition: str
    status: str
    reply: str


class Reporter(Protocol):
    """Who watches a send: the CLI's progress bar and summary table."""

    def progress(self, brief_id: str, done: int, total: int) -> None: ...

    def finished(self, summary: DeliverySummary) -> None: ...

    def tested(self, results: list[TestSend]) -> None: ...


# The CLI runs the Prefect flow in its own process and shows the flow's sending live; a flow
# parameter cannot carry a callback, so the CLI registers its reporter here.
_watched: Watched[Reporter] = Watched()
reporting = _watched.by
current_reporter = _watched.current
