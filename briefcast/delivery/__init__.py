"""Live delivery of a brief's email editions to the active subscribers.

- :mod:`~briefcast.delivery.run`: ``deliver``, the live send through the ledger (of a whole
  brief, or of one batch of its subscribers: ``subscriber_batches`` cuts the list);
- :mod:`~briefcast.delivery.audience`: who a brief is mailed to (by default, its readers);
- :mod:`~briefcast.delivery.trial`: ``send_test`` (``--test-to``), outside the ledger;
- :mod:`~briefcast.delivery.preflight`: ``check_ready`` and ``DeliveryError``;
- :mod:`~briefcast.delivery.summary`: what a send reports, and to whom (``reporting``);
- :mod:`~briefcast.delivery.worker`: the live send in a process of its own;
- underneath: ``ledger``, ``lock`` (one sender per brief), ``pool`` and ``smtp`` (the sending
  loop), ``messages``, ``prepared``, ``dkim`` and ``tokens`` (the bytes), ``verp`` (each
  message's own return path, where late bounces come back to), ``pacing``.
"""

from __future__ import annotations

from briefcast.delivery.ledger import subscriber_batches
from briefcast.delivery.preflight import DeliveryError, check_ready, unsubscribe_secret
from briefcast.delivery.run import deliver
from briefcast.delivery.summary import (
    DeliverySummary,
    Reporter,
    TestSend,
    current_reporter,
    reporting,
)
from briefcast.delivery.trial import send_test

__all__ = [
    "DeliveryError",
    "DeliverySummary",
    "Reporter",
    "TestSend",
    "check_ready",
    "current_reporter",
    "deliver",
    "reporting",
    "send_test",
    "subscriber_batches",
    "unsubscribe_secret",
]
