"""Reports as they land in a bounce mailbox, built around messages briefcast really sent (what
aiosmtpd received): a Postfix DSN (RFC 3464) with the original's headers as
text/rfc822-headers, a feedback-loop ARF report (RFC 5965) with the whole original as
message/rfc822, an out-of-office reply. The receiving side adds what real servers add:
``Return-Path`` (from the envelope sender, our VERP address) on the original, and
``Return-Path: <>`` and ``Delivered-To`` on the report."""

from __future__ import annotations

import itertools

from smtp_servers import Received

MTA = "mx.example.net"
DATE = "Wed, 07 Jan 2026 18:31:02 +0100"
_ids = itertools.count(1)


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def original_headers(got: Received) -> bytes:
    """The original's header block as the receiving MTA stored it."""
    head = got.data.partition(b"\r\n\r\n")[0]
    received = (
        f"Return-Path: <{got.mail_from}>\r\n"
        f"Received: from relay.example.org (relay.example.org [192.0.2.10])\r\n"
        f"\tby {MTA} (Postfix) with ESMTPS id 4Zx1Yq2Kp1z9sW\r\n"
        f"\tfor <{got.rcpt_to}>; {DATE}\r\n"
    )
    return received.encode() + head + b"\r\n"


def postfix_dsn(
    got: Received,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in "
    "virtual mailbox table",
    envelope_to: str | None = None,
) -> bytes:
    """What Postfix sends back to the envelope sender when a message it accepted bounces
    (or, with ``action="delayed"``, is still being retried)."""
    n = next(_ids)
    queue_id = f"4Zx1Yq{n:04d}Kp"
    to = envelope_to or got.mail_from
    diagnostic = diagnostic.format(rcpt=got.rcpt_to)
    boundary = f"{queue_id}.1767807062/{MTA}"
    delayed = action == "delayed"
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    text = f"""\
Return-Path: <>
Delivered-To: {to}
X-Original-To: {to}
Received: by {MTA} (Postfix)
\tid {queue_id}; {DATE}
Date: {DATE}
From: MAILER-DAEMON@{MTA} (Mail Delivery System)
Subject: {subject}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <20260107173102.{queue_id}@{MTA}>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {MTA}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

                   The mail system

<{got.rcpt_to}>: host mail.example.org[198.51.100.7] said: {diagnostic}
    (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {MTA}
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; {got.mail_from}
Arrival-Date: {DATE}

Final-Recipient: rfc822; {got.rcpt_to}
Original-Recipient: rfc822;{got.rcpt_to}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; {diagnostic}
"""
    if delayed:
        text += "Will-Retry-Until: Wed, 12 Jan 2026 18:31:02 +0100\n"
    text += f"""
--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

"""
    return _crlf(text) + original_headers(got) + _crlf(f"\n--{boundary}--\n")


def arf_report(
    got: Received, *, feedback_type: str = "abuse", name_the_sender: bool = True
) -> bytes:
    """A feedback loop's spam complaint, sent to its own address (not our return path),
    the original attached whole. Without ``name_the_sender`` the provider removed the
    original's Return-Path and its own Original-Mail-From (only the Message-ID is left)."""
    n = next(_ids)
    boundary = f"----=_Part_{n}_1767807062"
    original = original_headers(got) + b"\r\n" + got.data.partition(b"\r\n\r\n")[2]
    if not name_the_sender:
        original = b"\r\n".join(
            line for line in original.split(b"\r\n") if not line.startswith(b"Return-Path:")
        )
    sender = f"Original-Mail-From: <{got.mail_from}>\n" if name_the_sender else ""
    head = f"""\
Return-Path: <>
Delivered-To: fbl@example.org
From: Example Mail Feedback <feedback@fbl.example.net>
To: fbl@example.org
Subject: Email Feedback Report for IP 192.0.2.10
Date: {DATE}
Message-ID: <fbl-{n}.1767807062@fbl.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.10 on {DATE}. For more information about this format please
see http://www.mipassoc.org/arf/.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
{sender}Original-Rcpt-To: <{got.rcpt_to}>
Arrival-Date: {DATE}
Source-IP: 192.0.2.10
Reported-Domain: example.org

--{boundary}
Content-Type: message/rfc822
Content-Disposition: inline

"""
    return _crlf(head) + original + _crlf(f"\n--{boundary}--\n")


def out_of_office(got: Received) -> bytes:
    """An auto-reply that went to the return path: no report at all."""
    n = next(_ids)
    return _crlf(f"""\
Return-Path: <{got.rcpt_to}>
Delivered-To: {got.mail_from}
From: <{got.rcpt_to}>
To: {got.mail_from}
Subject: Out of office
Auto-Submitted: auto-replied
Date: {DATE}
Message-ID: <ooo-{n}@example.org>

I am away until Monday.
""")


def forge(report: bytes, got: Received) -> bytes:
    """The same report with the signatures of its tokens altered (the return path's, and
    the unsubscribe token's in the Message-ID): someone who never had the message nor the
    secret, making a bounce for another delivery."""
    local, _, domain = got.mail_from.partition("@")
    prefix, _, token = local.partition("+")
    delivery, _, signature = token.partition(".")
    forged = f"{prefix}+{delivery}.{'0' * len(signature)}@{domain}"
    assert forged != got.mail_from
    report = report.replace(got.mail_from.encode(), forged.encode())
    message_id = got.message["Message-ID"]  # <brief.edition.ID.SIGNATURE@domain>
    head, _, tail = message_id.partition("@")
    fake = head[:-22] + "A" * 22 + "@" + tail
    assert fake != message_id
    return report.replace(message_id.encode(), fake.encode())
