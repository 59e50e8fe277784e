"""Live delivery against a real SMTP server on loopback (aiosmtpd): every active subscriber
gets exactly one copy, in their language, with working headers, whatever the relay does
(defers, drops, stalls, bounces, STARTTLS and login, unreachable), DKIM-signed when asked;
``--test-to`` mails outside the ledger."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from delivery_helpers import (
    LANGUAGES,
    SECRET,
    active_emails,
    add_subscribers,
    ledger_rows,
    make_settings,
    subscriber_rows,
)
from smtp_servers import Faults, Received, Recorder, self_signed, smtp_server
from sqlalchemy import select, update

from briefcast.config import Settings
from briefcast.delivery import DeliveryError, deliver, ledger, send_test, tokens
from briefcast.delivery.prepared import PreparedEdition
from briefcast.render.email import EmailEdition
from briefcast.store import Store, deliveries


def parse_eml(data: bytes):
    return message_from_bytes(data, policy=policy.default)


CONTENT_LANGUAGE = {"en": "en", "it": "it", "both": "en, it"}


def check_message(got: Received, store: Store, mails: list[EmailEdition]) -> None:
    """Byte for byte the prepared edition for this subscriber, with working headers."""
    sub_id, language, _ = subscriber_rows(store)[got.rcpt_to]
    token = tokens.sign(SECRET, sub_id)
    edition = {m.edition: m for m in mails}[language]
    # Dated when the send began, not when the brief was written (the preview's Date).
    sent_at = parsedate_to_datetime(got.message["Date"])
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 300
    assert sent_at != parsedate_to_datetime(parse_eml(edition.eml)["Date"])
    prepared = PreparedEdition.from_edition(edition).dated(sent_at)
    assert got.data == prepared.render(got.rcpt_to, token)
    raw = got.data
    assert raw.count(b"\n") == raw.count(b"\r\n") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = got.message
    assert msg["To"] == got.rcpt_to
    # VERP: the envelope sender names this message's own ledger row, signed.
    local, _, domain = got.mail_from.partition("@")
    assert domain == "example.org" and local.startswith("bounces+")
    delivery_id = tokens.verify_return(SECRET, local.removeprefix("bounces+"))
    assert delivery_id is not None
    with store.engine.connect() as conn:
        owner = conn.execute(
            select(deliveries.c.subscriber_id).where(deliveries.c.id == delivery_id)
        ).scalar_one()
    assert owner == sub_id
    assert msg["Content-Language"] == CONTENT_LANGUAGE[language]
    assert msg["Precedence"] == "bulk"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = msg["List-Unsubscribe"]
    assert f"<https://briefs.example.org/unsubscribe/{token}>" in unsubscribe
    assert f"<mailto:unsubscribe@example.org?subject=unsubscribe%20{token}>" in unsubscribe
    assert tokens.verify(SECRET, token) == sub_id  # the link unsubscribes this reader only
    assert token.split(".")[1] not in msg["Message-ID"]  # opaque (issue 16)
    html = msg.get_body(("html",)).get_content()
    assert f"https://briefs.example.org/unsubscribe/{token}" in html
    assert "__BC_" not in msg.as_string()


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
        assert got.mail_from == "briefs@example.org"  # outside the ledger: no VERP
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
