"""Live delivery against a real SMTP server on loopback (aiosmtpd): every active subscriber
gets exactly one copy, in their language, with working headers, whatever the relay does and
even when the sender is killed part way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from smtp_servers import Faults, Received, Recorder, self_signed, smtp_server
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from briefcast import pipeline
from briefcast.config import (
    DeliverySettings,
    EmailSettings,
    Settings,
    SiteSettings,
    SmtpSettings,
)
from briefcast.delivery import DeliveryError, deliver, ledger, lock, send_test, tokens
from briefcast.delivery.ledger import Claim, LedgerWriter, Outcome
from briefcast.delivery.pacing import HourlyCap, RateLimiter
from briefcast.delivery.prepared import PreparedEdition
from briefcast.render.email import EmailEdition, build_emails
from briefcast.store import Store, deliveries, subscribers

ROOT = Path(__file__).resolve().parent.parent
SEED = next((ROOT / "seeds").glob("001_*.txt"))
SECRET = "test-unsubscribe-secret-0123456789"
LANGUAGES = ("en", "it", "both")
CONTENT_LANGUAGE = {"en": "en", "it": "it", "both": "en, it"}


# --- fixtures and helpers -----------------------------------------------------------------


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


@pytest.fixture(scope="module")
def brief_and_mails() -> tuple[str, list[EmailEdition]]:
    settings = make_settings()
    (brief,) = pipeline.read([SEED], settings)
    dated = brief.dated(datetime(2026, 1, 7, 18, 23, tzinfo=ZoneInfo("Europe/Rome")))
    return dated.id, build_emails(dated, settings)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as store:
        yield store


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


def check_message(got: Received, store: Store, mails: list[EmailEdition]) -> None:
    """Byte for byte the prepared edition for this subscriber, with working headers."""
    sub_id, language, _ = subscriber_rows(store)[got.rcpt_to]
    token = tokens.sign(SECRET, sub_id)
    edition = {m.edition: m for m in mails}[language]
    assert got.data == PreparedEdition.from_edition(edition).render(got.rcpt_to, token)
    raw = got.data
    assert raw.count(b"\n") == raw.count(b"\r\n") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = got.message
    assert msg["To"] == got.rcpt_to
    assert got.mail_from == "briefs@example.org"
    assert msg["Content-Language"] == CONTENT_LANGUAGE[language]
    assert msg["Precedence"] == "bulk"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = msg["List-Unsubscribe"]
    assert f"<https://briefs.example.org/unsubscribe/{token}>" in unsubscribe
    assert f"<mailto:unsubscribe@example.org?subject=unsubscribe%20{token}>" in unsubscribe
    assert tokens.verify(SECRET, token) == sub_id  # the link unsubscribes this reader only
    assert token in msg["Message-ID"]
    html = msg.get_body(("html",)).get_content()
    assert f"https://briefs.example.org/unsubscribe/{token}" in html
    assert "__BC_" not in msg.as_string()


# --- tokens, prepared bytes, limiter -------------------------------------------------------


def test_unsubscribe_tokens_are_per_subscriber_and_unforgeable() -> None:
    token = tokens.sign(SECRET, 42)
    assert tokens.verify(SECRET, token) == 42
    sub_id, signature = token.split(".")
    assert tokens.verify(SECRET, f"43.{signature}") is None  # someone else's id
    assert tokens.verify("another-secret", token) is None
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert tokens.verify(SECRET, f"{sub_id}.{flipped}") is None
    for junk in ("", "42", "42.", ".abc", "0." + signature, "42." + signature + "x", "x" * 500):
        assert tokens.verify(SECRET, junk) is None
    assert tokens.sign(SECRET, 42) == token  # stable: the same link in every newsletter
    assert all(c.isalnum() or c in "._-" for c in token)


def test_prepared_edition_fills_in_only_the_recipient(brief_and_mails) -> None:
    _, mails = brief_and_mails
    for mail in mails:
        prepared = PreparedEdition.from_edition(mail)
        one = prepared.render("anna@example.org", "7.tok")
        expected = mail.eml.replace(b"__BC_TO__", b"anna@example.org").replace(
            b"__BC_TOKEN__", b"7.tok"
        )
        assert one == expected
        wire = prepared.wire("anna@example.org", "7.tok")
        assert wire.endswith(b"\r\n.\r\n")
        lines = wire[:-3].split(b"\r\n")
        assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines)
        assert prepared.message_id("7.tok").startswith("<") and "7.tok@" in prepared.message_id(
            "7.tok"
        )
        with pytest.raises(ValueError):
            prepared.render("evil@example.org\r\nBcc: x@example.org", "7.tok")
        test = prepared.marked_test(mail.subject)
        assert test.render("a@example.org", "t").count(b"Subject:") == 1
        assert b"[TEST]" in test.render("a@example.org", "t").partition(b"\r\n\r\n")[0]


def test_rate_limiter_and_hourly_cap_pace_messages() -> None:
    now = [10_000.0]
    limiter = RateLimiter(100, clock=lambda: now[0])
    assert limiter.reserve() == 0  # the first goes at once
    wait = limiter.reserve()
    assert wait == pytest.approx(0.01)  # the next waits for its slot, and is not given it
    assert limiter.reserve() == wait
    now[0] += wait
    assert limiter.reserve() == 0
    now[0] += 5  # idle for a while: no credit piles up, so no burst follows
    assert limiter.reserve() == 0 and limiter.reserve() > 0

    cap = HourlyCap(3, window=60, buckets=6, clock=lambda: now[0])
    cap.seed([now[0] - 30])  # one sent by an earlier run, half a window ago
    assert [cap.reserve(), cap.reserve()] == [0, 0]
    wait = cap.reserve()  # the fourth in the window waits until the oldest has left it
    assert 30 <= wait <= 41 and cap.used() == 3
    now[0] += wait
    assert cap.reserve() == 0 and cap.used() <= 3


def test_secrets_are_refused_in_the_settings_file(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "b.toml"
    config.write_text('[delivery]\nunsubscribe_secret = "oops"\n')
    monkeypatch.setenv("BRIEFCAST_CONFIG", str(config))
    with pytest.raises(ValueError, match="BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET"):
        Settings()
    monkeypatch.setenv("BRIEFCAST_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET", "from-env")
    assert Settings().delivery.unsubscribe_secret.get_secret_value() == "from-env"


# --- the ledger -----------------------------------------------------------------------------


def test_ledger_has_one_row_per_subscriber_whatever_happens(store: Store) -> None:
    add_subscribers(store, 25)
    now = datetime.now(UTC)
    active = list(pipeline_subscribers(store))
    assert ledger.enqueue(store, "b1", active, {"en", "it", "both"}, now, batch=7) == 25
    assert ledger.enqueue(store, "b1", active, {"en", "it", "both"}, now, batch=7) == 0
    with store.engine.begin() as conn:
        conn.execute(update(deliveries).values(status="sent"))
    assert ledger.enqueue(store, "b1", active, {"en", "it", "both"}, now, batch=100) == 0
    assert ledger.counts(store, "b1") == Counter({"sent": 25})  # sent rows stay sent
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            insert(deliveries).values(
                brief_id="b1", subscriber_id=1, edition="en", status="queued", updated_at=now
            )
        )
    editions = {r["edition"] for r in ledger_rows(store, "b1").values()}
    assert editions == {"en", "it", "both"}


def pipeline_subscribers(store: Store):  # the sender's walk, as delivery uses it
    from briefcast.subscribers import iter_active

    return iter_active(store, batch=4)


def test_group_commit_makes_claims_durable_a_turn_at_a_time(store: Store) -> None:
    """Four connections' claims and outcomes, one commit per turn of the loop: each claim is
    durable (visible to another connection) once flushed, never one commit per row."""
    add_subscribers(store, 4000)
    ledger.enqueue(
        store, "b", pipeline_subscribers(store), {"en", "it", "both"}, datetime.now(UTC), batch=1000
    )
    jobs = list(ledger.iter_due(store, "b", datetime.now(UTC), batch=1000))
    writer = LedgerWriter(store, clock=lambda: datetime.now(UTC))
    for i in range(0, len(jobs), 4):  # a turn: four outcomes, four claims, one commit
        turn = jobs[i : i + 4]
        tickets = [writer.claim(Claim(job, "<id@example.org>")) for job in turn]
        assert not any(t.committed for t in tickets)
        writer.flush()
        assert all(t.committed for t in tickets)
        with store.engine.connect() as conn:  # durable: another connection sees it
            sending = conn.execute(
                select(deliveries.c.status).where(deliveries.c.id == turn[0].delivery_id)
            ).scalar_one()
        assert sending == "sending"
        for job in turn:
            writer.settle(Outcome(job, "sent", "250 ok"))
    writer.close()
    assert ledger.counts(store, "b") == Counter({"sent": 4000})
    assert writer.commits == len(jobs) // 4 + 1


def test_a_reply_with_a_nul_byte_is_recorded_without_it(store: Store) -> None:
    add_subscribers(store, 1)
    now = datetime.now(UTC)
    ledger.enqueue(store, "b", pipeline_subscribers(store), {"en", "it", "both"}, now)
    (job,) = ledger.iter_due(store, "b", now)
    with LedgerWriter(store, clock=lambda: datetime.now(UTC)) as writer:
        writer.settle(Outcome(job, "deferred", "451 odd\x00relay", now))
    assert ledger_rows(store, "b")["reader1@example.org"]["last_reply"] == "451 oddrelay"


# --- sending against a real server ----------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_each_active_subscriber_gets_one_copy_in_their_language(
    store: Store, brief_and_mails, pipelining: bool
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 30)
    add_subscribers(store, 2, status="unsubscribed", start=100)
    add_subscribers(store, 2, status="bounced", start=200)
    add_subscribers(store, 2, status="pending", start=300)
    recorder = Recorder(pipelining=pipelining)
    states: list[tuple[str, object]] = []

    def at_data(rcpt: str) -> None:  # the ledger must say "sending" before the body goes
        row = ledger_rows(store, brief_id)[rcpt]
        states.append((row["status"], row["message_id"]))

    recorder.on_data = at_data
    with smtp_server(recorder) as port:
        settings = make_settings(port)
        summary = deliver(store, brief_id, mails, settings)
        again = deliver(store, brief_id, mails, settings)

    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
    for got in recorder.messages():
        check_message(got, store, mails)
    assert all(status == "sending" and mid for status, mid in states)
    assert recorder.connections <= settings.delivery.pool_size  # connections were reused
    assert summary.this_run["sent"] == 30 and summary.error is None
    assert (summary.unknown, summary.deferred) == ([], [])
    rows = ledger_rows(store, brief_id)
    assert {r["status"] for r in rows.values()} == {"sent"} and len(rows) == 30
    for got in recorder.messages():
        assert rows[got.rcpt_to]["message_id"] == got.message["Message-ID"]
        assert rows[got.rcpt_to]["attempts"] == 1
    assert again.this_run["sent"] == 0 and again.skipped == 30  # a re-run mails nobody


def test_451_is_retried_with_backoff_until_accepted(store: Store, brief_and_mails) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 12)
    deferred = {"reader2@example.org": 2, "reader5@example.org": 1, "reader9@example.org": 3}
    recorder = Recorder(Faults(defer=dict(deferred)))
    with smtp_server(recorder) as port:
        summary = deliver(store, brief_id, mails, make_settings(port))

    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
    rows = ledger_rows(store, brief_id)
    for email, times in deferred.items():
        assert rows[email]["status"] == "sent" and rows[email]["attempts"] == times + 1
    assert summary.this_run["sent"] == 12 and summary.this_run["deferred"] == 0


def test_deferrals_are_bounded_and_a_later_run_picks_them_up(store: Store, brief_and_mails) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 6)
    recorder = Recorder(Faults(defer={"reader1@example.org": 99, "reader2@example.org": 1}))
    with smtp_server(recorder) as port:
        # A backoff longer than the run waits: reader2 stays deferred for a later run.
        late = make_settings(port, backoff_seconds=[60], retry_window_seconds=1)
        first = deliver(store, brief_id, mails, late)
        assert first.deferred == ["reader1@example.org", "reader2@example.org"]
        assert first.this_run["deferred"] == 2 and first.this_run["sent"] == 4
        with store.engine.begin() as conn:  # time passes
            conn.execute(update(deliveries).values(next_attempt_at=datetime.now(UTC)))
        bounded = make_settings(port, max_attempts=3)
        second = deliver(store, brief_id, mails, bounded)

    rows = ledger_rows(store, brief_id)
    assert rows["reader2@example.org"]["status"] == "sent"
    gave_up = rows["reader1@example.org"]
    assert gave_up["status"] == "bounced" and gave_up["attempts"] == 3
    assert "gave up after 3 attempts: 451" in gave_up["last_reply"]
    assert subscriber_rows(store)["reader1@example.org"][2] == "active"  # not a hard bounce
    assert second.this_run["sent"] == 1
    assert recorder.count() == Counter(
        dict.fromkeys(active_emails(store) - {"reader1@example.org"}, 1)
    )


def test_connection_dropped_before_data_is_resent_on_a_new_connection(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 15)
    drops = {"reader3@example.org": 1, "reader4@example.org": 2, "reader11@example.org": 1}
    recorder = Recorder(Faults(drop_at_rcpt=dict(drops)))
    with smtp_server(recorder) as port:
        summary = deliver(store, brief_id, mails, make_settings(port))

    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
    assert summary.this_run["sent"] == 15 and summary.unknown == []
    assert recorder.connections > 3  # reconnected
    for got in recorder.messages():
        check_message(got, store, mails)


def test_connection_lost_after_data_is_unknown_until_the_editor_resends(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 10)
    lost = {"reader4@example.org", "reader7@example.org"}
    recorder = Recorder(Faults(drop_after_data=dict.fromkeys(lost, 1)))
    with smtp_server(recorder) as port:
        settings = make_settings(port)
        first = deliver(store, brief_id, mails, settings)
        assert sorted(first.unknown) == sorted(lost) and first.this_run["unknown"] == 2
        plain = deliver(store, brief_id, mails, settings)
        assert plain.this_run["sent"] == 0 and plain.unknown == sorted(lost)
        assert not lost & set(recorder.count())  # not resent by a plain re-run
        resent = deliver(store, brief_id, mails, settings, resend_unknown=True)

    assert resent.this_run["sent"] == 2 and resent.unknown == []
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
    rows = ledger_rows(store, brief_id)
    assert all(rows[e]["status"] == "sent" and rows[e]["attempts"] == 2 for e in lost)


def test_a_relay_that_stops_answering_after_the_body_leaves_it_unknown(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 8)
    recorder = Recorder(Faults(stall={"reader5@example.org": 2.0}))
    with smtp_server(recorder) as port:
        summary = deliver(store, brief_id, mails, make_settings(port, timeout_seconds=0.5))

    assert summary.unknown == ["reader5@example.org"] and summary.this_run["sent"] == 7
    assert (
        "connection lost after the message was sent"
        in (ledger_rows(store, brief_id)["reader5@example.org"]["last_reply"])
    )
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))


def test_550_bounces_and_repeated_hard_bounces_retire_the_subscriber(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 9)
    rejected = {"reader2@example.org", "reader6@example.org"}
    recorder = Recorder(Faults(reject=set(rejected)))
    with smtp_server(recorder) as port:
        settings = make_settings(port, hard_bounce_threshold=2)
        summary = deliver(store, brief_id, mails, settings)
        assert summary.this_run["bounced"] == 2 and summary.this_run["sent"] == 7
        assert {s[2] for e, s in subscriber_rows(store).items() if e in rejected} == {"active"}
        # The next brief bounces again: the threshold is reached and they leave the list.
        deliver(store, "another-brief", mails, settings)
        third = deliver(store, "third-brief", mails, settings)

    rows = ledger_rows(store, brief_id)
    for email in rejected:
        assert rows[email]["status"] == "bounced" and rows[email]["last_reply"].startswith("550")
        assert subscriber_rows(store)[email][2] == "bounced"
    assert third.this_run["bounced"] == 0 and third.this_run["sent"] == 7
    assert set(recorder.count()) == active_emails(store)


def test_test_to_sends_every_edition_marked_outside_the_ledger(
    store: Store, brief_and_mails
) -> None:
    _, mails = brief_and_mails
    recorder = Recorder()
    with smtp_server(recorder) as port:
        settings = make_settings(port, unsubscribe_secret=None)  # not needed for tests
        results = send_test(mails, settings, ["ed@example.org", "check@example.org"])

    assert [(r.address, r.edition, r.status) for r in results] == [
        (a, e, "sent") for a in ("ed@example.org", "check@example.org") for e in LANGUAGES
    ]
    assert recorder.count() == Counter({"ed@example.org": 3, "check@example.org": 3})
    for got in recorder.messages():
        assert got.message["Subject"].startswith("[TEST] ")
        assert got.message["To"] == got.rcpt_to
    with store.engine.connect() as conn:
        assert conn.execute(select(deliveries)).all() == []


def test_starttls_and_login_with_the_password_from_the_environment(
    store: Store, brief_and_mails, tmp_path: Path, monkeypatch
) -> None:
    import ssl

    brief_id, mails = brief_and_mails
    add_subscribers(store, 4)
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts our test CA
    recorder = Recorder()
    with smtp_server(recorder, tls_context=context, login=("briefs", "pw-from-env")) as port:
        settings = make_settings(port)
        settings.smtp.starttls, settings.smtp.user = True, "briefs"
        monkeypatch.setenv("BRIEFCAST_SMTP__PASSWORD", "wrong")
        settings.smtp.password = Settings().smtp.password
        refused = deliver(store, brief_id, mails, settings)
        assert refused.error and "535" in refused.error and refused.this_run["sent"] == 0
        assert ledger.counts(store, brief_id) == Counter({"queued": 4})  # nothing lost

        monkeypatch.setenv("BRIEFCAST_SMTP__PASSWORD", "pw-from-env")
        settings.smtp.password = Settings().smtp.password
        summary = deliver(store, brief_id, mails, settings)

    assert summary.this_run["sent"] == 4 and summary.error is None
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))


def test_unreachable_relay_stops_the_run_and_loses_nothing(
    store: Store, brief_and_mails, monkeypatch
) -> None:
    from smtp_servers import free_port

    from briefcast.delivery import pool as pool_module

    monkeypatch.setattr(pool_module, "RECONNECT_DELAYS", (0.01,))
    brief_id, mails = brief_and_mails
    add_subscribers(store, 5)
    summary = deliver(store, brief_id, mails, make_settings(free_port()))
    assert summary.error and "cannot reach" in summary.error
    assert ledger.counts(store, brief_id) == Counter({"queued": 5})


def test_dkim_signature_covers_the_unsubscribe_headers(
    store: Store, brief_and_mails, tmp_path: Path
) -> None:
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    brief_id, mails = brief_and_mails
    add_subscribers(store, 3)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "dkim.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name.startswith(b"brief2026._domainkey.example.org")
        return record

    recorder = Recorder()
    with smtp_server(recorder) as port:
        settings = make_settings(port, dkim_selector="brief2026", dkim_key_path=str(key_path))
        deliver(store, brief_id, mails, settings)

    assert len(recorder.messages()) == 3
    for got in recorder.messages():
        assert got.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(got.data, dnsfunc=dns)
        signed = got.message["DKIM-Signature"].replace(" ", "").replace("\t", "")
        assert "list-unsubscribe:" in signed and "list-unsubscribe-post" in signed
        tampered = got.data.replace(b"unsubscribe%20", b"unsubscribe%20x", 1)
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_send_needs_the_unsubscribe_secret(store: Store, brief_and_mails) -> None:
    brief_id, mails = brief_and_mails
    with pytest.raises(DeliveryError, match="BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET"):
        deliver(store, brief_id, mails, make_settings(unsubscribe_secret=None))


# --- one sender per brief ------------------------------------------------------------------


def same_database(store: Store) -> Store:
    """Another Store on the same database: what a second process would open."""
    return Store(store.engine.url.render_as_string(hide_password=False))


def test_a_second_run_of_the_same_brief_is_refused_while_one_sends(
    store: Store, brief_and_mails
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 3)
    recorder = Recorder()
    with smtp_server(recorder) as port, same_database(store) as other:
        settings = make_settings(port, lock_wait_seconds=0.3)
        with lock.sending(other, brief_id):
            started = time.monotonic()
            with pytest.raises(DeliveryError, match="being sent by another run"):
                deliver(store, brief_id, mails, settings)
            assert time.monotonic() - started >= 0.3  # it waited for the other run first
            assert ledger.counts(store, brief_id) == Counter()  # and touched nothing
            elsewhere = deliver(store, "another-brief", mails, settings)  # not held up
        assert elsewhere.this_run["sent"] == 3
        after = deliver(store, brief_id, mails, settings)  # let go: this brief's turn

    assert after.this_run["sent"] == 3
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 2))


def test_the_send_lock_dies_with_a_killed_holder(store: Store, brief_and_mails) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, 2)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_LOCK,
            store.engine.url.render_as_string(hide_password=False),
            brief_id,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        recorder = Recorder()
        with smtp_server(recorder) as port:
            settings = make_settings(port, lock_wait_seconds=0.2)
            with pytest.raises(DeliveryError, match="being sent by another run"):
                deliver(store, brief_id, mails, settings)
            holder.kill()  # kill -9: no chance to let go of anything itself
            holder.wait(timeout=10)
            summary = deliver(store, brief_id, mails, make_settings(port, lock_wait_seconds=10))
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert summary.this_run["sent"] == 2


HOLD_LOCK = """
import sys, time
from briefcast.delivery import lock
from briefcast.store import Store
with lock.sending(Store(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


# --- the CLI: refusals (fast) and a real kill -9 part way (through Prefect) -----------------


def briefcast(*args: str | Path, cwd: Path, env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "briefcast.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill takes Prefect's server too
        **kw,
    )


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


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--send"], "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET is not set"),
        (["--resend-unknown"], "--resend-unknown only applies with --send"),
        (["--send", "--test-to", "a@example.org"], "choose one"),
        (["--test-to", "not-an-address"], "not an email address"),
    ],
)
def test_cli_refuses_in_one_line_before_anything_happens(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    proc = briefcast("publish", SEED, *args, cwd=tmp_path, env=cli_env(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_killed_mid_send_then_rerun_mails_exactly_those_left(tmp_path: Path, monkeypatch) -> None:
    """SIGKILL the CLI (and its Prefect server) part way; re-run: no second copies; the
    messages in flight at the kill are ``unknown`` (at most one per connection) and
    --resend-unknown completes them."""
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    add_subscribers(store, 60)
    add_subscribers(store, 3, status="unsubscribed", start=500)
    recorder = Recorder(Faults(delay=0.05))  # slow enough to kill part way
    pool = 3
    with smtp_server(recorder) as port:
        env = cli_env(tmp_path, port, BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET)
        args = ("publish", SEED, "--send", "--channels", "email", "--out", tmp_path / "out")
        proc = briefcast(*args, cwd=tmp_path, env=env)
        deadline = time.monotonic() + 120
        while len(recorder.messages()) < 12 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        time.sleep(0.3)  # let the server notice the dead connections
        before = recorder.count()
        assert 12 <= sum(before.values()) < 60, "the kill came too late to test anything"

        # A plain re-run through the CLI: mails the rest, nobody twice.
        rerun = briefcast(*args, cwd=tmp_path, env=env)
        out, err = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, err
        brief_id = ledger_brief_id(store)
        rows = ledger_rows(store, brief_id)
        unknown = {e for e, r in rows.items() if r["status"] == "unknown"}
        after = recorder.count()
        assert len(unknown) <= pool
        assert all(n == 1 for n in after.values())
        assert set(after) == active_emails(store) - {e for e in unknown if e not in before}
        assert {r["status"] for e, r in rows.items() if e not in unknown} == {"sent"}
        assert f"sent {60 - sum(before.values()) - len(unknown - set(before))}" in out
        assert all(email in out for email in unknown)  # listed in the summary

        # The editor resends what may not have arrived, with the CLI's own settings.
        for key, value in env.items():
            if key.startswith("BRIEFCAST_"):
                monkeypatch.setenv(key, value)
        settings = Settings()
        dated = pipeline.archive(pipeline.read([SEED], settings), settings, dry_run=False)
        mails = build_emails(dated[0], settings)
        resent = deliver(store, brief_id, mails, settings, resend_unknown=True)

    final = recorder.count()
    assert set(final) == active_emails(store)
    assert all(final[e] == 1 for e in final if e not in unknown)
    assert all(1 <= final[e] <= 2 for e in unknown)  # 2 only if it had arrived after all
    assert resent.this_run["sent"] == len(unknown) and resent.unknown == []
    assert ledger.counts(store, brief_id) == Counter({"sent": 60})
    store.engine.dispose()


def ledger_brief_id(store: Store) -> str:
    with store.engine.connect() as conn:
        (brief_id,) = conn.execute(select(deliveries.c.brief_id).distinct()).scalars().all()
    return brief_id
