"""What a report in the bounce mailbox says: pure parsing, no database, no mailbox.

Two kinds are understood, both ``multipart/report`` (RFC 6522):

- a **DSN** (RFC 3464, ``report-type=delivery-status``): a ``message/delivery-status`` part
  with one block of fields per recipient. ``Status: 5.x.x`` is a hard bounce (the address
  does not work), ``4.x.x`` a soft one (full mailbox, greylisting, a delay warning with
  ``Action: delayed``): noted, never held against the subscriber. ``Action: delivered`` or
  ``relayed`` is no bounce at all.
- an **ARF** report (RFC 5965, ``report-type=feedback-report``): a
  ``message/feedback-report`` part; ``Feedback-Type: abuse`` (or ``fraud``) is a spam
  complaint.

Either usually carries the original message, or its headers (``message/rfc822``,
``text/rfc822-headers``): its ``Return-Path`` and ``Message-ID`` (and an ARF report's
``Original-Mail-From``) are where the delivery is found when the report's own envelope
recipient is not our return path (a feedback loop writes to its own address). Anything else
is ``unknown``.

Reports are hostile input: parsed with the lenient ``compat32`` policy (the modern one can
raise on a malformed header), every value read as text, nothing trusted that is not signed.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum


class ReportKind(StrEnum):
    """bounce_reports.kind: what a report says of the message (a member is its string)."""

    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    UNKNOWN = "unknown"


COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
# Where a report says whom it was delivered to: the envelope recipient, our return path.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
KEY_MAX = 400  # bounce_reports.report_key
DETAIL_MAX = 300  # characters of a diagnostic kept
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([245])\d\d\b")


@dataclass(frozen=True)
class Report:
    """One message of the bounce mailbox, as far as it can be read."""

    kind: str  # a ReportKind
    key: str  # the report's Message-ID, or a digest: what makes it "the same report"
    detail: str  # the diagnostic, the complaint, or why it is unknown: one line
    envelope: tuple[str, ...] = ()  # the report's own recipient headers
    return_paths: tuple[str, ...] = ()  # Return-Path of the original message
    message_ids: tuple[str, ...] = ()  # Message-ID of the original message


def parse(raw: bytes, *, truncated: bool = False) -> Report:
    """What ``raw`` (a whole message, or its first bytes when ``truncated``) reports."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # the parser is lenient; anything it still raises is a bug of its
        return Report(ReportKind.UNKNOWN, _digest_key(raw), f"unreadable: {type(exc).__name__}")
    key = _key(msg, raw)
    envelope = tuple(v for name in ENVELOPE_HEADERS for v in _values(msg, name))
    try:
        return _classify(msg, key, envelope, truncated)
    except Exception as exc:  # malformed beyond what the parts below expect
        return Report(ReportKind.UNKNOWN, key, f"unreadable report: {type(exc).__name__}", envelope)


def _classify(msg: Message, key: str, envelope: tuple[str, ...], truncated: bool) -> Report:
    cut = " (read in part: over the size limit)" if truncated else ""
    if msg.get_content_type() != "multipart/report" or not msg.is_multipart():
        kind = msg.get_content_type()
        return Report(ReportKind.UNKNOWN, key, f"not a report ({kind}){cut}", envelope)
    report_type = str(msg.get_param("report-type", "") or "").strip().lower()
    parts = [p for p in msg.get_payload() if isinstance(p, Message)]
    original = _original_headers(parts)
    found = {
        "envelope": envelope,
        "return_paths": tuple(v for h in original for v in _values(h, "Return-Path")),
        "message_ids": tuple(v for h in original for v in _values(h, "Message-ID")),
    }
    if report_type == "delivery-status":
        status = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
        if status is None:
            return Report(
                ReportKind.UNKNOWN, key, f"a DSN without its delivery-status part{cut}", **found
            )
        kind, detail = _delivery_status(_field_blocks(status))
        return Report(kind, key, detail + (cut if kind == ReportKind.UNKNOWN else ""), **found)
    if report_type == "feedback-report":
        feedback = next(
            (p for p in parts if p.get_content_type() == "message/feedback-report"), None
        )
        if feedback is None:
            return Report(
                ReportKind.UNKNOWN, key, f"an ARF report without its feedback part{cut}", **found
            )
        blocks = _field_blocks(feedback)
        kind, detail = _feedback(blocks)
        # The envelope sender the provider received the message from: our return path.
        sender = tuple(v for block in blocks[:1] for v in _values(block, "Original-Mail-From"))
        found["return_paths"] = sender + found["return_paths"]
        return Report(kind, key, detail, **found)
    shown = _one_line(report_type) or "none"
    return Report(ReportKind.UNKNOWN, key, f"a report of another type ({shown}){cut}", **found)


def _delivery_status(blocks: list[Message]) -> tuple[str, str]:
    """The most severe recipient of a DSN: (kind, detail)."""
    if len(blocks) < 2:
        return ReportKind.UNKNOWN, "a DSN with no recipient in it"
    reporter = _one_line(_first(blocks[0], "Reporting-MTA")).removeprefix("dns;").strip()
    worst: tuple[int, str, str] | None = None
    for block in blocks[1:]:
        action = _one_line(_first(block, "Action")).lower()
        status = _STATUS.search(_first(block, "Status"))
        diagnostic = _one_line(_first(block, "Diagnostic-Code"))
        if status:
            klass = status[1]
        elif smtp := _SMTP_CODE.search(diagnostic):
            klass = smtp[1]
        else:
            klass = "4" if action in ("failed", "delayed") else "2"  # unsure: never hard
        if action == "delayed" and klass == "5":
            klass = "4"  # still trying: not a failure yet
        if action in ("delivered", "relayed", "expanded") or klass == "2":
            rank, kind = 0, "success"
        elif klass == "5":
            rank, kind = 2, ReportKind.HARD
        else:
            rank, kind = 1, ReportKind.SOFT
        code = status[0] if status else ""
        text = " ".join(
            x for x in (f"{action or 'no action'} {code}".strip() + ":", diagnostic) if x
        )
        if reporter:
            text += f" (reported by {reporter})"
        if worst is None or rank > worst[0]:
            worst = (rank, kind, text)
    assert worst is not None
    _, kind, text = worst
    if kind == "success":
        return ReportKind.UNKNOWN, f"a DSN that reports no failure ({text})"[:DETAIL_MAX]
    label = "late bounce" if kind == ReportKind.HARD else "soft bounce"
    return kind, f"{label}: {text}"[:DETAIL_MAX]


def _feedback(blocks: list[Message]) -> tuple[str, str]:
    fields = blocks[0] if blocks else Message()
    kind = _one_line(_first(fields, "Feedback-Type")).lower()
    agent = _one_line(_first(fields, "User-Agent"))
    by = f" (reported by {agent})" if agent else ""
    if kind in COMPLAINT_TYPES:
        return ReportKind.COMPLAINT, f"spam complaint: feedback type {kind}{by}"[:DETAIL_MAX]
    return ReportKind.UNKNOWN, f"a feedback report that is no complaint (type {kind or 'none'}){by}"


def _field_blocks(part: Message) -> list[Message]:
    """The blocks of fields of a delivery-status or feedback-report part, whichever way the
    parser left them (a list of header blocks, or text when encoded)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [parser.parsestr(block) for block in blocks if block.strip()]


def _original_headers(parts: list[Message]) -> list[Message]:
    """The original message's headers, from a message/rfc822 part or text/rfc822-headers."""
    found: list[Message] = []
    for part in parts:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list):
                found += [p for p in payload if isinstance(p, Message)]
            elif isinstance(payload, str):
                found.append(email.parser.HeaderParser().parsestr(payload))
        elif kind in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
                found.append(parser.parsebytes(data))
    return found


def _values(msg: Message, name: str) -> list[str]:
    # Raw: get() would hand 8-bit text back as a Header that has already lost its bytes.
    lower = name.lower()
    return [_one_line(str(v)) for k, v in msg.raw_items() if k.lower() == lower]


def _first(msg: Message, name: str) -> str:
    return next(iter(_values(msg, name)), "")


def _one_line(text: str) -> str:
    """Text fit for the ledger: one line, no NUL (PostgreSQL refuses it), and valid UTF-8
    (the parser keeps 8-bit bytes as lone surrogates, which no database takes)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.replace("\x00", " ").split())


def _key(msg: Message, raw: bytes) -> str:
    """The report's identity: its Message-ID when it has one (a digest when that is too
    long for the column), else a digest of its bytes."""
    mid = _one_line(_first(msg, "Message-ID"))
    if not mid:
        return _digest_key(raw)
    if len(mid) > KEY_MAX:
        return "sha256:" + hashlib.sha256(mid.encode("utf-8", "surrogateescape")).hexdigest()
    return mid


def _digest_key(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()
