"""What the delivery tests share (test_delivery_*.py, test_send_process.py): settings for a
relay on loopback, subscribers put in the store, and the store's rows read back.

The ``store`` and ``brief_and_mails`` fixtures are in conftest.py.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from briefcast.config import (
    DeliverySettings,
    EmailSettings,
    Settings,
    SiteSettings,
    SmtpSettings,
)
from briefcast.store import Store, deliveries, subscribers

ROOT = Path(__file__).resolve().parent.parent
SEED = next((ROOT / "seeds").glob("001_*.txt"))
SECRET = "test-unsubscribe-secret-0123456789"
LANGUAGES = ("en", "it", "both")


def make_settings(port: int = 25, **delivery: object) -> Settings:
    options: dict[str, object] = {
        "unsubscribe_secret": SECRET,
        "pool_size": 3,
        "backoff_seconds": [0.05],
        "retry_window_seconds": 5,
        "timeout_seconds": 5,
        "max_attempts": 5,
    }
    options.update(delivery)
    return Settings(
        site=SiteSettings(base_url="https://briefs.example.org", languages=["en", "it"]),
        email=EmailSettings(
            from_address="briefs@example.org",
            unsubscribe_url="https://briefs.example.org/unsubscribe/{token}",
            unsubscribe_mailto="unsubscribe@example.org",
        ),
        smtp=SmtpSettings(host="127.0.0.1", port=port, starttls=False, tls=False),
        delivery=DeliverySettings(**options),  # type: ignore[arg-type]
    )


def add_subscribers(store: Store, count: int, status: str = "active", start: int = 1) -> None:
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(
            insert(subscribers),
            [
                {
                    "email": f"reader{i}@example.org",
                    "language": LANGUAGES[i % 3],
                    "status": status,
                    "hard_bounces": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, start + count)
            ],
        )


def subscriber_rows(store: Store) -> dict[str, tuple[int, str, str]]:
    """email -> (id, language, status)"""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                subscribers.c.id, subscribers.c.email, subscribers.c.language, subscribers.c.status
            )
        ).all()
    return {r.email: (r.id, r.language, r.status) for r in rows}


def ledger_rows(store: Store, brief_id: str) -> dict[str, dict[str, object]]:
    query = (
        select(subscribers.c.email, deliveries)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.brief_id == brief_id)
    )
    with store.engine.connect() as conn:
        return {r.email: dict(r._mapping) for r in conn.execute(query)}


def active_emails(store: Store) -> set[str]:
    return {e for e, (_, _, status) in subscriber_rows(store).items() if status == "active"}


def cli_env(tmp_path: Path, port: int = 25, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    return env | {
        "BRIEFCAST_DATABASE__URL": f"sqlite:///{tmp_path / 'b.db'}",
        "BRIEFCAST_SMTP__HOST": "127.0.0.1",
        "BRIEFCAST_SMTP__PORT": str(port),
        "BRIEFCAST_SMTP__STARTTLS": "false",
        "BRIEFCAST_DELIVERY__POOL_SIZE": "3",
        "BRIEFCAST_DELIVERY__TIMEOUT_SECONDS": "10",
        **extra,
    }
