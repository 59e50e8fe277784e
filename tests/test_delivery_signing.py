"""A DKIM-signed live send: the messages are made (token, body, signature) ahead of the
sending loop by a few threads, yet every subscriber gets one copy, of their own message, whose
signature dkimpy accepts; a claim is still durable before its body goes; a stop or a crash
part way leaves nobody mailed twice by the re-run. And the signer's shortcuts (canonical
parts made once per edition, the signature put before bytes already dot-stuffed) give the
same bytes as signing each message whole."""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from delivery_helpers import (
    SECRET,
    active_emails,
    add_subscribers,
    cli_env,
    ledger_rows,
    make_settings,
    subscriber_rows,
)
from hypothesis import given
from hypothesis import strategies as st
from smtp_servers import Faults, Received, Recorder, smtp_server
from sqlalchemy import select

from briefcast.config import Settings
from briefcast.delivery import deliver, ledger, pool, tokens
from briefcast.delivery import dkim as dkim_module
from briefcast.delivery.dkim import DkimSigner, canonical_body, canonical_headers, split
from briefcast.delivery.ledger import LedgerWriter
from briefcast.delivery.messages import Messages
from briefcast.delivery.prepared import PreparedEdition, dot_stuff
from briefcast.delivery.worker import COMMAND, spec_line
from briefcast.render.email import TO_PLACEHOLDER, TOKEN_PLACEHOLDER, EmailEdition
from briefcast.store import Store, deliveries, subscribers

SELECTOR = "brief2026"
DOMAIN = "example.org"
READERS = 300


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def dns(key_pem: bytes) -> Callable[..., bytes]:
    key = serialization.load_pem_private_key(key_pem, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record

    return lookup


@pytest.fixture
def key_path(tmp_path: Path, key_pem: bytes) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(key_pem)
    return path


def signed_settings(port: int, key_path: Path, **delivery: object) -> Settings:
    return make_settings(port, dkim_selector=SELECTOR, dkim_key_path=str(key_path), **delivery)


def message_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("briefcast-message")]


def check_signed(got: Received, store: Store, dns: Callable[..., bytes]) -> None:
    """Signed, verified, and made for this very row: the message's token, Message-ID and
    return path all name the recipient's subscriber and ledger row (the Message-ID opaque)."""
    assert got.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(got.data, dnsfunc=dns)
    msg = got.message
    assert msg["To"] == got.rcpt_to
    sub_id = subscriber_rows(store)[got.rcpt_to][0]
    token = tokens.sign(SECRET, sub_id)
    # The Message-ID is opaque (issue 16): it travels further than the message's links.
    assert token in msg["List-Unsubscribe"] and token.split(".")[1] not in msg["Message-ID"]
    delivery_id = tokens.verify_return(SECRET, got.mail_from.partition("@")[0].split("+")[1])
    with store.engine.connect() as conn:
        row = conn.execute(
            select(deliveries.c.subscriber_id, deliveries.c.message_id).where(
                deliveries.c.id == delivery_id
            )
        ).one()
    assert row.subscriber_id == sub_id and row.message_id == msg["Message-ID"]


def status_of(store: Store, email: str) -> tuple[str, str | None]:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(deliveries.c.status, deliveries.c.message_id)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(subscribers.c.email == email)
        ).one()
    return row.status, row.message_id


# --- the send ---------------------------------------------------------------------------------


def test_a_signed_send_mails_everyone_once_each_message_their_own_and_verified(
    store: Store, brief_and_mails, key_path: Path, dns: Callable[..., bytes]
) -> None:
    brief_id, mails = brief_and_mails
    add_subscribers(store, READERS)
    add_subscribers(store, 3, status="unsubscribed", start=1000)
    recorder = Recorder()
    states: list[tuple[str, str | None]] = []

    def at_data(rcpt: str) -> None:  # made ahead, but claimed and committed before its body
        states.append(status_of(store, rcpt))

    recorder.on_data = at_data
    with smtp_server(recorder) as port:
        settings = signed_settings(port, key_path, pool_size=4)
        summary = deliver(store, brief_id, mails, settings)
        again = deliver(store, brief_id, mails, settings)

    assert summary.this_run["sent"] == READERS and summary.error is None
    assert again.this_run["sent"] == 0 and again.skipped == READERS
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
    assert len(states) == READERS and all(s == "sending" and mid for s, mid in states)
    for got in recorder.messages():
        check_signed(got, store, dns)
    rows = ledger_rows(store, brief_id)
    assert {r["status"] for r in rows.values()} == {"sent"} and len(rows) == READERS
    assert {r["attempts"] for r in rows.values()} == {1}
    assert message_threads() == []  # the threads that made the messages are gone


def test_a_signed_send_stopped_part_way_is_finished_by_its_rerun_without_second_copies(
    store: Store, brief_and_mails, key_path: Path, dns: Callable[..., bytes]
) -> None:
    """Stopped with hundreds of messages made ahead: none of those goes out, the rows not
    sent stay due, and the re-run mails exactly them."""
    brief_id, mails = brief_and_mails
    add_subscribers(store, READERS)
    recorder = Recorder()
    stop = threading.Event()

    def at_data(rcpt: str) -> None:
        if len(recorder.received) >= 40:
            stop.set()

    recorder.on_data = at_data
    with smtp_server(recorder) as port:
        settings = signed_settings(port, key_path)
        first = deliver(store, brief_id, mails, settings, stop=stop)
        before = recorder.count()
        assert first.error and "stopped" in first.error
        assert 40 <= sum(before.values()) < READERS
        assert first.this_run["sent"] == sum(before.values())
        assert ledger.counts(store, brief_id)["queued"] == READERS - sum(before.values())
        second = deliver(store, brief_id, mails, settings)

    assert second.this_run["sent"] == READERS - sum(before.values())
    assert recorder.count() == Counter(dict.fromkeys(active_emails(store), 1))
    for got in recorder.messages():
        check_signed(got, store, dns)
    assert message_threads() == []


def test_a_ledger_failure_mid_send_leaves_nobody_mailed_twice(
    store: Store, brief_and_mails, key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger fails part way (the run raises, as a crash would end it): what went out
    is sent or in doubt, nothing made ahead goes out after, the re-run mails the rest."""
    brief_id, mails = brief_and_mails
    add_subscribers(store, 120)
    flushes = 0
    real_flush = LedgerWriter.flush

    def failing_flush(self: LedgerWriter) -> None:
        nonlocal flushes
        flushes += 1
        if flushes == 15:
            raise RuntimeError("the database went away")
        real_flush(self)

    recorder = Recorder()
    with smtp_server(recorder) as port:
        settings = signed_settings(port, key_path)
        monkeypatch.setattr(LedgerWriter, "flush", failing_flush)
        with pytest.raises(RuntimeError, match="went away"):
            deliver(store, brief_id, mails, settings)
        monkeypatch.setattr(LedgerWriter, "flush", real_flush)
        assert message_threads() == []
        time.sleep(0.2)  # let the server finish with the dropped connections
        before = recorder.count()
        rerun = deliver(store, brief_id, mails, settings)

    rows = ledger_rows(store, brief_id)
    unknown = {e for e, r in rows.items() if r["status"] == "unknown"}
    assert len(unknown) <= settings.delivery.pool_size
    assert {r["status"] for e, r in rows.items() if e not in unknown} == {"sent"}
    after = recorder.count()
    assert all(n == 1 for n in after.values())  # nobody twice
    assert set(after) == active_emails(store) - (unknown - set(before))
    assert set(rerun.unknown) == unknown


def test_a_signed_send_killed_mid_send_is_finished_by_its_rerun_without_second_copies(
    store: Store,
    brief_and_mails,
    database_url: str,
    key_path: Path,
    tmp_path: Path,
    dns: Callable[..., bytes],
) -> None:
    """kill -9 of the sending process part way: at most a message per connection in doubt,
    nobody mailed twice by the re-run."""
    brief_id, mails = brief_and_mails
    add_subscribers(store, 60)
    recorder = Recorder(Faults(delay=0.05))  # slow enough to kill part way
    with smtp_server(recorder) as port:
        env = cli_env(
            tmp_path,
            port,
            BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET,
            BRIEFCAST_DATABASE__URL=database_url,
            BRIEFCAST_DELIVERY__DKIM_KEY_PATH=str(key_path),
            BRIEFCAST_DELIVERY__DKIM_SELECTOR=SELECTOR,
            BRIEFCAST_DELIVERY__DKIM_DOMAIN=DOMAIN,  # the From address's domain is another here
        )
        proc = subprocess.Popen(
            COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert proc.stdin is not None
        proc.stdin.write(spec_line(brief_id, mails, resend_unknown=False))
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while len(recorder.messages()) < 6 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.kill()
        proc.communicate(timeout=30)
        time.sleep(0.3)  # let the server notice the dead connections
        before = recorder.count()
        assert 6 <= sum(before.values()) < 60, "the kill came too late to test anything"
        in_flight = {e for e, r in ledger_rows(store, brief_id).items() if r["status"] == "sending"}
        assert len(in_flight) <= 3  # pool_size of cli_env
        rerun = deliver(store, brief_id, mails, signed_settings(port, key_path))

    rows = ledger_rows(store, brief_id)
    unknown = {e for e, r in rows.items() if r["status"] == "unknown"}
    assert unknown == in_flight and sorted(rerun.unknown) == sorted(unknown)
    assert {r["status"] for e, r in rows.items() if e not in unknown} == {"sent"}
    after = recorder.count()
    assert all(n == 1 for n in after.values())  # nobody twice
    assert set(after) == active_emails(store) - {e for e in unknown if e not in before}
    for got in recorder.messages():
        check_signed(got, store, dns)


# --- only signed sends make messages ahead ---------------------------------------------------


def test_only_a_signed_send_makes_its_messages_ahead(key_path: Path) -> None:
    with pool.Pool.from_settings(make_settings(), 2) as unsigned:
        assert unsigned._make_ahead == 0
    with pool.Pool.from_settings(signed_settings(25, key_path), 2) as signed:
        assert signed._make_ahead == pool.SIGNING_THREADS


def test_messages_made_ahead_keep_their_order_and_stay_bounded() -> None:
    read: list[int] = []

    def source() -> Iterator[int]:
        for i in range(1, 2001):
            read.append(i)
            yield i

    def message(job: int) -> tuple[str, str, bytes]:
        if job % 97 == 0:
            raise ValueError(f"cannot send {job}")
        return "bounces@example.org", f"r{job}@example.org", b"%d" % job

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as threads:
        made = pool._made_ahead(source(), message, threads)
        got: list[tuple[int, Any]] = []
        for item in made:
            got.append(item)
            # Jobs are read (and their messages made) at most AHEAD beyond the one taken.
            assert len(read) - len(got) <= pool.AHEAD
    assert [job for job, _ in got] == list(range(1, 2001))
    for job, result in got:
        if job % 97 == 0:
            assert isinstance(result, ValueError) and str(job) in str(result)
        else:
            assert result == ("bounces@example.org", f"r{job}@example.org", b"%d" % job)


def test_an_unexpected_error_making_a_message_is_raised_in_order() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def message(job: int) -> tuple[str, str, bytes]:
        if job == 50:
            raise RuntimeError("bug")
        return "s", "r", b""

    with ThreadPoolExecutor(2) as threads:
        made = pool._made_ahead(iter(range(100)), message, threads)
        assert [next(made)[0] for _ in range(50)] == list(range(50))
        with pytest.raises(RuntimeError, match="bug"):
            next(made)


# --- the bytes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(key_pem: bytes) -> DkimSigner:
    return DkimSigner(SELECTOR, DOMAIN, key_pem)


def test_signed_data_is_the_message_signed_whole_then_dot_stuffed(
    brief_and_mails: tuple[str, list[EmailEdition]],
    signer: DkimSigner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dkim_module.time, "time", lambda: 1_767_806_580.0)  # one t= for both
    _, mails = brief_and_mails
    editions = {m.edition: PreparedEdition.from_edition(m) for m in mails}
    messages = Messages(editions, signer)
    for i, edition in enumerate(editions, start=1):
        token = tokens.sign(SECRET, i)
        raw = editions[edition].render(f"reader{i}@example.net", token)
        expected = dot_stuff(signer.sign(raw) + raw)
        assert messages.data(edition, f"reader{i}@example.net", token) == expected


# Text around the placeholders that canonicalization changes: WSP runs, tabs, spaces before a
# line end, trailing empty lines, bare LF, and lines starting with "." (dot-stuffed).
_TEXT = ["a", "  ", "\t", " ", "\r\n", "\n", ".", "..x", "\r\n\r\n"]
_PIECES = st.lists(st.sampled_from([*_TEXT, TOKEN_PLACEHOLDER, TO_PLACEHOLDER]), max_size=30)
_FOLDED = _PIECES.map(lambda p: "".join(p).replace("\r", "").replace("\n", "\r\n "))


@given(body=_PIECES, subject=_FOLDED)
def test_canonical_parts_made_once_per_edition_are_the_message_s(
    signer: DkimSigner, body: list[str], subject: str
) -> None:
    eml = (
        f"From: Brief <briefs@example.org>\r\nTo:  {TO_PLACEHOLDER}\r\n"
        f"Subject: x{subject}\r\nMessage-ID: <{TOKEN_PLACEHOLDER}@example.org>\r\n"
        "\r\n" + "".join(body) + "\r\n"
    ).encode()
    prepared = PreparedEdition("en", eml)
    for to, token in (("reader@example.net", "7.tok_en-X"), ("ü@example.net", "1.x")):
        head, rest = split(prepared.render(to, token))
        assert prepared.signed_parts(to, token) == (canonical_headers(head), canonical_body(rest))
    # And what goes out: the signature header before the dot-stuffed bytes.
    data = Messages({"en": prepared}, signer).data("en", "reader@example.net", "7.tok")
    raw = prepared.render("reader@example.net", "7.tok")
    assert data.endswith(dot_stuff(raw)) and not data.startswith(b".")
    header = data[: -len(dot_stuff(raw))]
    assert not any(line.startswith(b".") for line in header.split(b"\r\n"))
