"""The live send in a process of its own: ``python -m briefcast.delivery.worker``.

The publish flow runs in a process that has imported Prefect: well over 100 MB before the
first subscriber is read, and threads of its own competing for the one interpreter lock the
sending loop lives on. The send needs only the store, the SMTP loop and the prepared
editions, so it runs here: small, flat in memory whatever the list's size, and alone.

The parent writes one JSON line on the worker's stdin (the brief, its editions' ``.eml``
bytes, ``resend_unknown``, ``subscribers``: the batch's ``[first_id, last_id]`` or null
for the whole brief, and ``left_out``: the languages whose subscribers it is not for) and
keeps stdin open; the worker reads the same settings (the environment and
``BRIEFCAST_CONFIG`` are inherited) and answers in JSON lines on stdout:
``{"progress": [done, total]}`` while sending, then ``{"summary": {...}}`` or
``{"error": "..."}``. If the parent goes away (stdin closes) or sends SIGTERM/SIGINT, the
worker stops cleanly: the messages under way finish and are recorded.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from typing import IO, Any

from briefcast.config import load_settings
from briefcast.delivery.audience import EVERYONE, Audience
from briefcast.delivery.preflight import DeliveryError
from briefcast.delivery.prepared import PreparedEdition
from briefcast.delivery.run import deliver
from briefcast.delivery.summary import DeliverySummary, Reporter, TestSend, current_reporter
from briefcast.errors import ConfigError
from briefcast.render.email import EmailEdition
from briefcast.store import Store

COMMAND = [sys.executable, "-m", "briefcast.delivery.worker"]


def spec_line(
    brief_id: str,
    mails: Sequence[EmailEdition],
    *,
    resend_unknown: bool,
    subscribers: tuple[int, int] | None = None,
    audience: Audience = EVERYONE,
) -> str:
    """What the worker reads on stdin: one JSON line."""
    editions = {m.edition: base64.b64encode(m.eml).decode("ascii") for m in mails}
    spec = {
        "brief_id": brief_id,
        "resend_unknown": resend_unknown,
        "editions": editions,
        "subscribers": list(subscribers) if subscribers is not None else None,
        "left_out": list(audience.left_out),
    }
    return json.dumps(spec) + "\n"


def deliver_in_worker(
    brief_id: str,
    mails: Sequence[EmailEdition],
    *,
    resend_unknown: bool = False,
    reporter: Reporter | None = None,
    subscribers: tuple[int, int] | None = None,
    audience: Audience = EVERYONE,
) -> DeliverySummary:
    """:func:`briefcast.delivery.deliver`, run by a worker process with the same settings
    (``subscribers``: one batch of the brief, ``audience`` its readers, as there)."""
    reporter = reporter or current_reporter()
    proc = subprocess.Popen(
        COMMAND,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    errors: list[str] = []
    drain = threading.Thread(target=_keep_lines, args=(proc.stderr, errors), daemon=True)
    drain.start()
    summary: DeliverySummary | None = None
    refused: str | None = None
    try:
        spec = spec_line(
            brief_id,
            mails,
            resend_unknown=resend_unknown,
            subscribers=subscribers,
            audience=audience,
        )
        proc.stdin.write(spec)
        proc.stdin.flush()  # and left open: closing it tells the worker to stop
        for line in proc.stdout:
            message = json.loads(line)
            if "progress" in message and reporter is not None:
                reporter.progress(brief_id, *message["progress"])
            elif "summary" in message:
                summary = DeliverySummary(**message["summary"])
            elif "error" in message:
                refused = message["error"]
    except BaseException:
        proc.send_signal(signal.SIGTERM)  # Ctrl-C here: the worker finishes what is under way
        proc.wait()
        raise
    finally:
        proc.stdin.close()
    proc.wait()
    drain.join(timeout=5)
    if refused is not None:
        raise DeliveryError(refused)
    if summary is None:
        last = errors[-1] if errors else f"exit status {proc.returncode}"
        raise DeliveryError(f"the sending process stopped unexpectedly: {last}")
    if reporter is not None:
        reporter.finished(summary)
    return summary


def _keep_lines(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        sys.stderr.write(line)  # the worker's logs, as if they were the parent's
        lines.append(line.rstrip())


class _JsonReporter:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def _say(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    def progress(self, brief_id: str, done: int, total: int) -> None:
        self._say({"progress": [done, total]})

    def finished(self, summary: DeliverySummary) -> None:
        self._say({"summary": asdict(summary)})

    def error(self, message: str) -> None:
        self._say({"error": message})

    def tested(self, results: list[TestSend]) -> None:  # test sends stay in the flow
        raise NotImplementedError


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # stdout carries the protocol only
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second one stops at once

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reporter = _JsonReporter(out)
    line = sys.stdin.readline()
    if not line:  # the parent went before saying what to send
        reporter.error("no brief to send was given")
        return 2
    spec = json.loads(line)

    def watch_parent() -> None:
        sys.stdin.read()  # returns when the parent closes stdin or dies
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    editions = [
        PreparedEdition(edition, base64.b64decode(eml)) for edition, eml in spec["editions"].items()
    ]
    batch = spec.get("subscribers")
    try:
        settings = load_settings()
    except ConfigError as exc:  # the parent read the same settings; they changed since
        reporter.error(f"configuration: {exc}")
        return 2
    try:
        with Store(settings.database.url) as store:
            deliver(
                store,
                spec["brief_id"],
                editions,
                settings,
                resend_unknown=spec["resend_unknown"],
                reporter=reporter,
                stop=stop,
                subscribers=(batch[0], batch[1]) if batch is not None else None,
                audience=Audience(tuple(spec.get("left_out") or ())),
            )
    except DeliveryError as exc:
        reporter.error(str(exc))
        return 2
    except Exception as exc:  # the ledger or the database failed: say so in one line
        reporter.error(f"sending failed: {type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
