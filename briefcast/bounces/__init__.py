"""Late bounces and spam complaints: ``briefcast bounces fetch``.

A relay may accept a message and bounce it later (a DSN, RFC 3464); a mailbox provider may
report a reader's spam complaint (ARF, RFC 5965). Both arrive as mail: at the return path
each message was sent from (``bounces+<token>@domain``, see
:mod:`briefcast.delivery.verp`), or at a feedback-loop address. ``fetch`` reads that
mailbox (IMAP over TLS, or a Maildir) and records each report on its delivery and
subscriber, once.

- :mod:`~briefcast.bounces.reports`: what a message says (pure parsing);
- :mod:`~briefcast.bounces.record`: which delivery it is about, and what it changes;
- :mod:`~briefcast.bounces.mailboxes`: the IMAP folder or the Maildir;
- :mod:`~briefcast.bounces.run`: ``fetch``, the whole run, and its ``BounceSummary``.
"""

from __future__ import annotations

from briefcast.bounces.mailboxes import BouncesConfigError, BouncesError
from briefcast.bounces.run import BounceSummary, check_ready, fetch

__all__ = ["BounceSummary", "BouncesConfigError", "BouncesError", "check_ready", "fetch"]
